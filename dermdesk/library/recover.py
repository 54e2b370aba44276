"""Bring back originals whose rows were lost, from the store and from quarantine/.

An original is named by the SHA-256 of its bytes, so a file without a row can always
be imported again. What the audit log still knows about the image (its ``image.add``
entry, labels, skin tones, links, edits) is restored with it: the row comes back as
it was, not as a bare photo. Nothing is deleted: a quarantined copy is removed only
once the library holds the same bytes under a committed row.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermdesk.library.audit import TONE_COLUMNS, check_head, read_head, replay, write_head
from dermdesk.library.library import Library
from dermdesk.library.records import ImageRecord, LabelIn, SkinToneIn
from dermdesk.library.store import ORIGINALS, PART, QUARANTINE

ProgressFn = Callable[[int, int], None]


@dataclass
class RecoverReport:
    recovered: list[str] = field(default_factory=list)  # image ids
    from_audit: int = 0  # of those, rows rebuilt with what the audit log knew
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    def summary(self) -> str:
        return (
            f"recovered {len(self.recovered)} images ({self.from_audit} with their labels, "
            f"skin tones and links from the audit log), {len(self.refused)} refused"
        )


def unlisted_originals(lib: Library) -> list[Path]:
    """Originals in the store or in quarantine/ that no image row names."""
    ids = {r[0] for r in lib.conn.execute("SELECT id FROM image")}
    found: dict[str, Path] = {}
    for sub in (ORIGINALS, f"{QUARANTINE}/{ORIGINALS}"):
        for path in lib.store.iter_files(sub):
            sha = path.name.split(".")[0]
            if not path.name.endswith(PART) and sha not in ids:
                found.setdefault(sha, path)  # the one in the store first
    return sorted(found.values())


def recover_originals(
    lib: Library, *, checks: bool = True, progress: ProgressFn | None = None
) -> RecoverReport:
    """Import every unlisted original again, with what the audit log knows about it."""
    from dermdesk.exchange.ingest import AlreadyStored, ingest_bytes
    from dermdesk.imaging.decode import ImageRejected

    report = RecoverReport()
    paths = unlisted_originals(lib)
    known = replay(lib.conn)
    with lib.store.writing("recover"):
        for n, path in enumerate(paths, 1):
            where = path.relative_to(lib.root).as_posix()
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            if not path.name.startswith(sha):
                report.refused.append((where, "its bytes do not match its name (damaged?)"))
                continue
            state = known.get(sha)
            try:
                stored = ingest_bytes(
                    data, lib.store, checks=checks, modality=(state or {}).get("modality")
                )
            except ImageRejected as exc:
                report.refused.append((where, str(exc)))
                continue
            if isinstance(stored, AlreadyStored):  # cannot happen: the row is missing
                continue
            fields = _record_fields(state)
            if state is None:  # a bare photo: what it looks like, marked as the detector's
                guess = stored.quality.modality if stored.quality is not None else None
                fields["modality"] = guess.modality if guess is not None else "clinical"
                fields["modality_method"] = "detected" if guess and guess.sure else "unsure"
            _add(lib, ImageRecord(stored=stored, **fields), state, where)
            if path.is_relative_to(lib.root / QUARANTINE):
                path.unlink()  # the store holds the same bytes under a committed row now
            report.recovered.append(sha)
            report.from_audit += state is not None
            if progress:
                progress(n, len(paths))
    return report


def accept_restored_database(lib: Library) -> str | None:
    """After an older database was put back on purpose, make its chain the recorded one.

    The head file still names entries the restored database never had; this records
    an ``audit.head_reset`` entry (what the head said, why) and moves the head to it.
    Returns the problem it resolved, or None when the head already matched."""
    problem = check_head(lib.conn, lib.root)
    if problem is None:
        return None
    was = read_head(lib.root)
    with lib.transaction() as txn:
        txn.record(
            "audit.head_reset",
            "library",
            None,
            {"last_id": was[0], "hash": was[1]} if was else None,
            {"reason": problem},
        )
    last = lib.conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    write_head(lib.root, int(last[0]), str(last[1]), force=True)
    return problem


def _record_fields(state: dict[str, Any] | None) -> dict[str, Any]:
    """ImageRecord fields from what the audit log knows (a bare photo when nothing)."""
    if state is None:
        return {"modality": "clinical", "source": "import"}
    label = state.get("label")
    tones = []
    for method in TONE_COLUMNS:
        tone = state.get(f"{method}_tone")
        if tone and (tone.get("fitzpatrick") is not None or tone.get("monk") is not None):
            tones.append(
                SkinToneIn(
                    fitzpatrick=tone.get("fitzpatrick"),
                    monk=tone.get("monk"),
                    method=method,
                    rater=tone.get("rater") or "unknown",
                    ita=tone.get("ita"),
                    note="recovered from the audit log",
                )
            )
    return {
        "modality": state.get("modality") or "clinical",
        # logged since schema version 12; older entries were recorded values
        "modality_method": state.get("modality_method") or "recorded",
        "source": state.get("source") or "import",
        "dataset": state.get("dataset"),
        "dataset_image_id": state.get("dataset_image_id"),
        "label": LabelIn(
            label["diagnosis"], label["certainty"], label["annotator"], label.get("free_text")
        )
        if label
        else None,
        "skin_tones": tones,
    }


def _add(lib: Library, record: ImageRecord, state: dict[str, Any] | None, where: str) -> None:
    with lib.transaction() as txn:
        txn.add_image(record)
        sha = record.stored.sha256
        patient = _existing(txn.conn, "patient", (state or {}).get("patient_id"))
        lesion = _existing(txn.conn, "lesion", (state or {}).get("lesion_id"))
        if patient or lesion:  # the pseudonymous rows survived: link the image again
            txn.link(sha, patient, lesion)
        txn.record(
            "image.recover",
            "image",
            sha,
            None,
            {"file": where, "from_audit": state is not None},
        )


def _existing(conn: sqlite3.Connection, table: str, key: str | None) -> str | None:
    if key and conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (key,)).fetchone():
        return key
    return None
