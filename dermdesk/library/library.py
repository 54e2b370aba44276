"""The library: one folder holding a SQLite database and a content-addressed store.

:class:`Library` is the single writer API: every change goes through one of
its methods, runs inside one ``BEGIN IMMEDIATE`` transaction and appends to
the audit chain in the same transaction. Reads are plain queries returning
dicts. A ``Library`` object belongs to the thread that opened it (SQLite
connections are not shared across threads); open one per thread or process.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dermdesk import taxonomy
from dermdesk.library.audit import AuditWriter
from dermdesk.library.db import DB_NAME, LibraryError, connect, immediate, translate_error
from dermdesk.library.query import ORDERS, ImageFilter
from dermdesk.library.records import DEVICE_FIELDS, ImageRecord, LesionRef, PatientRef, SkinToneIn
from dermdesk.library.store import Store

EDITABLE_IMAGE_FIELDS = (*DEVICE_FIELDS, "modality", "clinic", "operator")


def now() -> str:
    """Current time as ISO-8601 UTC with milliseconds (sortable as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_actor() -> str:
    env = os.environ.get("DERMDESK_USER")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


class Library:
    """An open library folder. Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, root: Path, db: Any, actor: str, readonly: bool) -> None:
        self.root = root
        self.db = db
        self.store = Store(root)
        self.actor = actor
        self.readonly = readonly

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        *,
        create: bool = True,
        readonly: bool = False,
        actor: str | None = None,
        busy_timeout_s: float | None = None,
    ) -> Library:
        """Open the library in folder ``root``, creating an empty one if allowed.

        ``busy_timeout_s`` (default ``$DERMDESK_BUSY_TIMEOUT_S`` or 30 s) is how long a
        writer waits for another process's transaction before giving up with an error.
        """
        if busy_timeout_s is None:
            busy_timeout_s = float(os.environ.get("DERMDESK_BUSY_TIMEOUT_S", "30"))
        folder = Path(root).expanduser().resolve()
        db_path = folder / DB_NAME
        if not db_path.exists():
            if not create or readonly:
                raise LibraryError(f"{folder}: no library here (no {DB_NAME})")
            _make_folder(folder)
        if not readonly and not os.access(folder, os.W_OK):
            raise LibraryError(f"{folder}: library folder is read-only; cannot write to it")
        db = connect(db_path, busy_timeout_s=busy_timeout_s, readonly=readonly)
        lib = cls(folder, db, actor or default_actor(), readonly)
        if not readonly:
            try:
                lib.store.ensure_dirs()
            except OSError as exc:
                db.conn.close()
                raise LibraryError(f"{folder}: cannot create library folders ({exc})") from exc
        return lib

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = self.db.conn
        return conn

    def _write(self) -> Any:
        if self.readonly:
            raise LibraryError(f"{self.root}: library was opened read-only")
        return immediate(self.db)

    # -- adding images ---------------------------------------------------------------------

    def add_images(self, records: Sequence[ImageRecord]) -> list[tuple[str, str]]:
        """Add images in one transaction. Returns (status, image id) per record,
        status ``added`` or ``exists`` (the same bytes are already in the library)."""
        results: list[tuple[str, str]] = []
        at = now()
        with self._write() as conn:
            audit = AuditWriter(conn, self.actor, at)
            for rec in records:
                sha = rec.stored.sha256
                if conn.execute("SELECT 1 FROM image WHERE id = ?", (sha,)).fetchone():
                    results.append(("exists", sha))
                    continue
                self._insert_image(conn, audit, rec, at)
                results.append(("added", sha))
            audit.flush()
        return results

    def _insert_image(
        self, conn: sqlite3.Connection, audit: AuditWriter, rec: ImageRecord, at: str
    ) -> None:
        patient_id = self._patient_id(conn, audit, rec.patient, at) if rec.patient else None
        lesion_id = self._lesion_id(conn, audit, rec.lesion, patient_id, at) if rec.lesion else None
        if lesion_id and not patient_id:
            owner = conn.execute("SELECT patient_id FROM lesion WHERE id = ?", (lesion_id,))
            patient_id = owner.fetchone()[0]
        s = rec.stored
        row: dict[str, Any] = {
            "id": s.sha256,
            "file": s.file,
            "format": s.format,
            "width": s.width,
            "height": s.height,
            "bytes": s.bytes,
            "mode": s.mode,
            "orientation": s.orientation,
            "modality": rec.modality,
            "source": rec.source,
            "dataset": rec.dataset,
            "dataset_image_id": rec.dataset_image_id,
            "original_name": rec.original_name,
            "patient_id": patient_id,
            "lesion_id": lesion_id,
            "clinic": rec.clinic,
            "operator": rec.operator,
            "imported_at": at,
            "extra": json.dumps(rec.extra, sort_keys=True) if rec.extra else None,
        }
        row.update({k: v for k, v in s.device.items() if k in DEVICE_FIELDS})
        # A new image has no earlier label or tone: its current values go straight into
        # its row, and the label/tone rows are plain inserts (half the statements of the
        # edit path, which first reads and retires the current values).
        tones = _fresh_tones(rec.skin_tones)
        row["diagnosis"] = rec.label.diagnosis if rec.label else None
        row["fitzpatrick"], row["monk"] = tones[-1][1] if tones else (None, None)
        _insert(conn, "image", row)
        audit.record(
            "image.add",
            "image",
            s.sha256,
            None,
            {
                k: row[k]
                for k in (
                    "file",
                    "modality",
                    "source",
                    "dataset",
                    "dataset_image_id",
                    "patient_id",
                    "lesion_id",
                )
            },
        )
        if rec.label:
            lab = rec.label
            after = {
                "diagnosis": lab.diagnosis,
                "certainty": lab.certainty,
                "free_text": lab.free_text,
                "annotator": lab.annotator,
            }
            _insert(
                conn, "label", {"image_id": s.sha256, "created_at": at, "is_current": 1, **after}
            )
            audit.record("label.set", "image", s.sha256, None, after)
        before: tuple[int | None, int | None] = (None, None)
        for tone, effective, current in tones:
            _insert(conn, "skin_tone", _tone_row(s.sha256, tone, at, current))
            audit.record(*_tone_audit(s.sha256, tone, before))
            before = effective
        if rec.mask_file:
            _insert(
                conn,
                "mask",
                {
                    "image_id": s.sha256,
                    "kind": "lesion",
                    "file": rec.mask_file,
                    "source": rec.dataset or "import",
                    "created_at": at,
                },
            )
        if s.quality is not None:
            from dermdesk.library.quality_store import insert_assessment  # lazy: pixel stack

            insert_assessment(self, conn, audit, s.sha256, s.quality)

    def _patient_id(
        self, conn: sqlite3.Connection, audit: AuditWriter, ref: PatientRef, at: str
    ) -> str:
        found = conn.execute(
            "SELECT id FROM patient WHERE source = ? AND external_id = ?",
            (ref.source, ref.external_id),
        ).fetchone()
        if found:
            return str(found[0])
        pid = _new_id("P")
        _insert(
            conn,
            "patient",
            {"id": pid, "source": ref.source, "external_id": ref.external_id, "created_at": at},
        )
        audit.record("patient.add", "patient", pid, None, {"source": ref.source})
        return pid

    def _lesion_id(
        self,
        conn: sqlite3.Connection,
        audit: AuditWriter,
        ref: LesionRef,
        patient_id: str | None,
        at: str,
    ) -> str:
        found = conn.execute(
            "SELECT id FROM lesion WHERE source = ? AND external_id = ?",
            (ref.source, ref.external_id),
        ).fetchone()
        if found:
            return str(found[0])
        return _add_lesion(conn, audit, patient_id, ref.source, ref.external_id, ref.body_site, at)

    # -- edits -----------------------------------------------------------------------------

    def set_label(
        self,
        image_ids: Iterable[str],
        diagnosis: str,
        *,
        certainty: str = "single_expert",
        free_text: str | None = None,
        annotator: str | None = None,
    ) -> None:
        """Give images a new current diagnosis; earlier labels stay in the history."""
        if diagnosis not in taxonomy.diagnoses():
            raise LibraryError(f"unknown diagnosis code {diagnosis!r}")
        if certainty not in taxonomy.certainty_codes():
            raise LibraryError(f"unknown certainty {certainty!r}")
        ids = self._existing(image_ids)
        with self._write() as conn:
            audit = AuditWriter(conn, self.actor, now())
            self._insert_label(
                conn, audit, ids, diagnosis, certainty, annotator or self.actor, free_text, audit.at
            )
            audit.flush()

    def clear_label(self, image_ids: Iterable[str]) -> None:
        """Make images unlabelled (the history keeps every earlier label)."""
        ids = self._existing(image_ids)
        with self._write() as conn:
            audit = AuditWriter(conn, self.actor, now())
            for image_id in ids:
                before = _current_label(conn, image_id)
                conn.execute(
                    "UPDATE label SET is_current = 0 WHERE image_id = ? AND is_current", (image_id,)
                )
                conn.execute("UPDATE image SET diagnosis = NULL WHERE id = ?", (image_id,))
                audit.record("label.clear", "image", image_id, before, None)
            audit.flush()

    def _insert_label(
        self,
        conn: sqlite3.Connection,
        audit: AuditWriter,
        ids: Sequence[str],
        diagnosis: str,
        certainty: str,
        annotator: str,
        free_text: str | None,
        at: str,
    ) -> None:
        for image_id in ids:
            before = _current_label(conn, image_id)
            conn.execute(
                "UPDATE label SET is_current = 0 WHERE image_id = ? AND is_current", (image_id,)
            )
            after = {
                "diagnosis": diagnosis,
                "certainty": certainty,
                "free_text": free_text,
                "annotator": annotator,
            }
            _insert(
                conn, "label", {"image_id": image_id, "created_at": at, "is_current": 1, **after}
            )
            conn.execute("UPDATE image SET diagnosis = ? WHERE id = ?", (diagnosis, image_id))
            audit.record("label.set", "image", image_id, before, after)

    def set_skin_tone(self, image_ids: Iterable[str], tone: SkinToneIn) -> None:
        """Record a manual or estimated skin tone; manual values win over estimates."""
        if tone.method not in ("manual", "estimated"):
            raise LibraryError(f"unknown skin-tone method {tone.method!r}")
        ids = self._existing(image_ids)
        with self._write() as conn:
            audit = AuditWriter(conn, self.actor, now())
            for image_id in ids:
                self._insert_tone(conn, audit, image_id, tone, audit.at)
            audit.flush()

    def _insert_tone(
        self, conn: sqlite3.Connection, audit: AuditWriter, image_id: str, tone: SkinToneIn, at: str
    ) -> None:
        before = conn.execute(
            "SELECT fitzpatrick, monk FROM image WHERE id = ?", (image_id,)
        ).fetchone()
        conn.execute(
            "UPDATE skin_tone SET is_current = 0 WHERE image_id = ? AND method = ? AND is_current",
            (image_id, tone.method),
        )
        _insert(conn, "skin_tone", _tone_row(image_id, tone, at, True))
        fitz, monk = _effective_tone(conn, image_id)
        conn.execute(
            "UPDATE image SET fitzpatrick = ?, monk = ? WHERE id = ?", (fitz, monk, image_id)
        )
        audit.record(*_tone_audit(image_id, tone, before))

    def update_image(self, image_id: str, **changes: Any) -> None:
        """Edit device metadata, modality, clinic or operator of one image."""
        bad = set(changes) - set(EDITABLE_IMAGE_FIELDS)
        if bad:
            raise LibraryError(f"fields not editable: {', '.join(sorted(bad))}")
        if "modality" in changes and changes["modality"] not in taxonomy.MODALITIES:
            raise LibraryError(f"unknown modality {changes['modality']!r}")
        (image_id,) = self._existing([image_id])
        with self._write() as conn:
            audit = AuditWriter(conn, self.actor, now())
            cols = ", ".join(changes)
            before = dict(
                zip(
                    changes,
                    conn.execute(f"SELECT {cols} FROM image WHERE id = ?", (image_id,)).fetchone(),
                    strict=True,
                )
            )
            sets = ", ".join(f"{c} = ?" for c in changes)
            conn.execute(f"UPDATE image SET {sets} WHERE id = ?", (*changes.values(), image_id))
            audit.record("image.update", "image", image_id, before, changes)
            audit.flush()

    def _existing(self, image_ids: Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            return []
        found = {
            r[0]
            for r in self.conn.execute(
                f"SELECT id FROM image WHERE id IN ({', '.join('?' * len(ids))})", ids
            )
        }
        missing = [i for i in ids if i not in found]
        if missing:
            raise LibraryError(f"no such image: {missing[0]}")
        return ids

    # -- reads -----------------------------------------------------------------------------

    def known_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM image")}

    def count(self, flt: ImageFilter | None = None) -> int:
        where, params = (flt or ImageFilter()).where()
        return int(
            self.conn.execute(f"SELECT count(*) FROM image WHERE {where}", params).fetchone()[0]
        )

    def images(
        self,
        flt: ImageFilter | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        order: str = "imported",
    ) -> list[dict[str, Any]]:
        """Image rows matching a filter, a page at a time."""
        where, params = (flt or ImageFilter()).where()
        sql = f"SELECT * FROM image WHERE {where} ORDER BY {ORDERS[order]}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = [*params, limit, offset]
        return list(self.db.query(sql, params))

    def image(self, id_or_prefix: str) -> dict[str, Any]:
        """One image by id or unique id prefix (at least 6 characters)."""
        key = id_or_prefix.strip().lower()
        if len(key) < 6:
            raise LibraryError("give at least 6 characters of the image id")
        rows = list(self.db.query("SELECT * FROM image WHERE id LIKE ? LIMIT 2", [key + "%"]))
        if not rows:
            raise LibraryError(f"no image with id {id_or_prefix}")
        if len(rows) > 1:
            raise LibraryError(f"image id prefix {id_or_prefix} is ambiguous")
        return rows[0]

    def current_label(self, image_id: str) -> dict[str, Any] | None:
        rows = list(
            self.db.query("SELECT * FROM label WHERE image_id = ? AND is_current", [image_id])
        )
        return rows[0] if rows else None

    def label_history(self, image_id: str) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM label WHERE image_id = ? ORDER BY id", [image_id]))

    def skin_tones(self, image_id: str) -> list[dict[str, Any]]:
        return list(
            self.db.query("SELECT * FROM skin_tone WHERE image_id = ? ORDER BY id", [image_id])
        )

    def patient(self, patient_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM patient WHERE id = ?", [patient_id]))
        return rows[0] if rows else None

    def lesion(self, lesion_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM lesion WHERE id = ?", [lesion_id]))
        return rows[0] if rows else None

    def masks(self, image_id: str) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM mask WHERE image_id = ?", [image_id]))

    def quality(self, image_id: str) -> list[dict[str, Any]]:
        """Quality findings of one image (one row per check)."""
        return list(
            self.db.query(
                "SELECT * FROM quality WHERE image_id = ? ORDER BY check_name", [image_id]
            )
        )

    def predictions(self, image_id: str) -> list[dict[str, Any]]:
        """Stored predictions of one image, newest model first, probabilities decoded."""
        rows = list(
            self.db.query(
                "SELECT p.*, m.name AS model_name, m.status AS model_status FROM prediction p "
                "JOIN model m ON m.id = p.model_id WHERE p.image_id = ? ORDER BY p.created_at DESC",
                [image_id],
            )
        )
        for row in rows:
            row["probabilities"] = json.loads(row["probabilities"])
        return rows

    def models(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM model ORDER BY created_at DESC"))

    def jobs(self, limit: int = 200) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM job ORDER BY id DESC LIMIT ?", [limit]))

    def audit_entries(self, entity_id: str | None = None) -> list[dict[str, Any]]:
        if entity_id is None:
            return list(self.db.query("SELECT * FROM audit ORDER BY id"))
        return list(
            self.db.query("SELECT * FROM audit WHERE entity_id = ? ORDER BY id", [entity_id])
        )

    def counts(
        self, columns: Sequence[str], flt: ImageFilter | None = None
    ) -> list[dict[str, Any]]:
        """Image counts grouped by image columns (e.g. diagnosis, fitzpatrick, modality)."""
        allowed = {
            "diagnosis",
            "fitzpatrick",
            "monk",
            "modality",
            "dataset",
            "source",
            "device_make",
            "device_model",
        }
        if not columns or set(columns) - allowed:
            raise LibraryError(f"can group by {', '.join(sorted(allowed))}")
        where, params = (flt or ImageFilter()).where()
        cols = ", ".join(columns)
        return list(
            self.db.query(
                f"SELECT {cols}, count(*) AS n FROM image WHERE {where} "
                f"GROUP BY {cols} ORDER BY {cols}",
                params,
            )
        )

    def original_path(self, image: dict[str, Any]) -> Path:
        return self.store.path(image["file"])

    def thumbnail_path(self, image_id: str) -> Path:
        return self.store.path(self.store.thumb_rel(image_id))


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LibraryError(f"{folder}: cannot create the library folder ({exc.strerror})") from exc


def _add_lesion(
    conn: sqlite3.Connection,
    audit: AuditWriter,
    patient_id: str | None,
    source: str,
    external_id: str | None,
    body_site: str | None,
    at: str,
) -> str:
    """Insert a new lesion row with a fresh pseudonymous id, audited; returns the id."""
    lid = _new_id("L")
    _insert(
        conn,
        "lesion",
        {
            "id": lid,
            "patient_id": patient_id,
            "source": source,
            "external_id": external_id,
            "body_site": body_site,
            "created_at": at,
        },
    )
    audit.record(
        "lesion.add", "lesion", lid, None, {"patient_id": patient_id, "body_site": body_site}
    )
    return lid


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    marks = ", ".join("?" * len(row))
    try:
        conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
    except sqlite3.IntegrityError as exc:
        raise LibraryError(f"cannot add {table} row: {exc}") from exc
    except sqlite3.OperationalError as exc:
        raise translate_error(exc, None) from exc


def _current_label(conn: sqlite3.Connection, image_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT diagnosis, certainty, free_text, annotator FROM label "
        "WHERE image_id = ? AND is_current",
        (image_id,),
    ).fetchone()
    if row is None:
        return None
    return dict(zip(("diagnosis", "certainty", "free_text", "annotator"), row, strict=True))


def _tone_row(image_id: str, tone: SkinToneIn, at: str, current: bool) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "method": tone.method,
        "fitzpatrick": tone.fitzpatrick,
        "monk": tone.monk,
        "ita": tone.ita,
        "confidence": tone.confidence,
        "rater": tone.rater,
        "note": tone.note,
        "created_at": at,
        "is_current": int(current),
    }


def _tone_audit(
    image_id: str, tone: SkinToneIn, before: Sequence[int | None]
) -> tuple[str, str, str, dict[str, Any], dict[str, Any]]:
    """The audit entry of a skin-tone record: the image's effective values before it."""
    return (
        f"skin_tone.{tone.method}",
        "image",
        image_id,
        {"fitzpatrick": before[0], "monk": before[1]},
        {"fitzpatrick": tone.fitzpatrick, "monk": tone.monk, "ita": tone.ita, "rater": tone.rater},
    )


def _fresh_tones(
    tones: Sequence[SkinToneIn],
) -> list[tuple[SkinToneIn, tuple[int | None, int | None], bool]]:
    """A new image's tone records in order, each with the effective (Fitzpatrick, Monk)
    after it and whether it stays current (a later record of its method retires it)."""
    last = {tone.method: i for i, tone in enumerate(tones)}
    current: dict[str, tuple[int | None, int | None]] = {}
    out = []
    for i, tone in enumerate(tones):
        current[tone.method] = (tone.fitzpatrick, tone.monk)
        effective = _manual_wins(current.get("manual"), current.get("estimated"))
        out.append((tone, effective, last[tone.method] == i))
    return out


def _manual_wins(
    manual: Sequence[int | None] | None, estimated: Sequence[int | None] | None
) -> tuple[int | None, int | None]:
    """Effective (Fitzpatrick, Monk): a manual value wins over an estimate, per scale."""
    m, e = manual or (None, None), estimated or (None, None)
    return (m[0] if m[0] is not None else e[0], m[1] if m[1] is not None else e[1])


def _effective_tone(conn: sqlite3.Connection, image_id: str) -> tuple[int | None, int | None]:
    """Current Fitzpatrick and Monk: a manual value wins over an estimate, per scale."""
    rows = dict(
        (method, (fitz, monk))
        for method, fitz, monk in conn.execute(
            "SELECT method, fitzpatrick, monk FROM skin_tone WHERE image_id = ? AND is_current",
            (image_id,),
        )
    )
    return _manual_wins(rows.get("manual"), rows.get("estimated"))
