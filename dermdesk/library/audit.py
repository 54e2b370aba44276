"""Append-only, tamper-evident audit log.

Each entry stores the hash of the previous entry and its own hash over
(previous hash, time, actor, action, entity, before, after). Changing,
deleting or reordering any entry breaks the chain, which :func:`verify_chain`
reports with the first entry that does not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(
    prev_hash: str,
    at: str,
    actor: str,
    action: str,
    entity: str,
    entity_id: str | None,
    before: str | None,
    after: str | None,
) -> str:
    payload = json.dumps(
        [prev_hash, at, actor, action, entity, entity_id, before, after],
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def last_hash(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else GENESIS


class AuditWriter:
    """Appends entries inside the caller's write transaction, keeping the chain."""

    def __init__(self, conn: sqlite3.Connection, actor: str, at: str) -> None:
        self.conn = conn
        self.actor = actor
        self.at = at
        self._prev = last_hash(conn)
        self._rows: list[tuple[Any, ...]] = []

    def record(
        self,
        action: str,
        entity: str,
        entity_id: str | None,
        before: Any = None,
        after: Any = None,
    ) -> None:
        b, a = _dump(before), _dump(after)
        h = entry_hash(self._prev, self.at, self.actor, action, entity, entity_id, b, a)
        self._rows.append((self.at, self.actor, action, entity, entity_id, b, a, self._prev, h))
        self._prev = h

    def flush(self) -> int:
        """Write the entries recorded so far; returns how many."""
        n = len(self._rows)
        if n:
            self.conn.executemany(
                "INSERT INTO audit (at, actor, action, entity, entity_id, before, after, "
                "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._rows,
            )
            self._rows.clear()
        return n


# -- the chain head outside the database ---------------------------------------------------------

HEAD_FILE = "audit-head.json"


def write_head(root: Path, last_id: int, last_hash: str, *, force: bool = False) -> None:
    """Record the chain's last entry in a small file beside the database, after each
    committed transaction. A hash chain inside one file cannot show that its last
    entries were deleted, or that it was recomputed after an edit: this copy can.
    Never moved backwards (two processes may finish in either order)."""
    path = root / HEAD_FILE
    current = read_head(root)
    if current is not None and current[0] >= last_id and not force:
        return
    tmp = path.with_name(f"{HEAD_FILE}.{os.getpid()}.part")
    try:
        tmp.write_text(json.dumps({"last_id": last_id, "hash": last_hash}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a full disk or read-only media: the database is the record
        with contextlib.suppress(OSError):
            tmp.unlink()


def read_head(root: Path) -> tuple[int, str] | None:
    """(last entry id, its hash) from the head file, or None where there is none."""
    try:
        raw = json.loads((root / HEAD_FILE).read_text(encoding="utf-8"))
        return int(raw["last_id"]), str(raw["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_head(conn: sqlite3.Connection, root: Path) -> str | None:
    """A problem if the database's chain does not contain the recorded head."""
    head = read_head(root)
    if head is None:
        return None
    last_id, last_hash = head
    row = conn.execute("SELECT hash FROM audit WHERE id = ?", (last_id,)).fetchone()
    if row is None:
        top = conn.execute("SELECT max(id) FROM audit").fetchone()[0] or 0
        return (
            f"the audit log ends at entry {top}, but entry {last_id} was written "
            "(its last entries were deleted, or an older database was put back)"
        )
    if row[0] != last_hash:
        return (
            f"audit entry {last_id} differs from what was written (the log was edited "
            "and its hash chain recomputed)"
        )
    return None


def verify_chain(
    conn: sqlite3.Connection, known_breaks: set[int] | frozenset[int] = frozenset()
) -> tuple[int, str | None]:
    """Walk the chain; return (entries checked, first problem or None). ``known_breaks``
    are entries whose predecessors a rebuild of a damaged database recorded as lost:
    their link back is not checked, their own hash is."""
    prev = GENESIS
    count = 0
    cursor = conn.execute(
        "SELECT id, at, actor, action, entity, entity_id, before, after, prev_hash, hash "
        "FROM audit ORDER BY id"
    )
    for row in cursor:
        count += 1
        entry_id, at, actor, action, entity, entity_id, before, after, prev_hash, h = row
        if prev_hash != prev and entry_id not in known_breaks:
            return count, f"audit entry {entry_id}: previous-hash link broken (entry removed?)"
        prev = prev_hash
        expected = entry_hash(prev, at, actor, action, entity, entity_id, before, after)
        if h != expected:
            return count, f"audit entry {entry_id}: content does not match its hash (edited?)"
        prev = h
    return count, None


# -- what the log says -----------------------------------------------------------------------

# The image columns each audited action sets, so verify can compare the rows with the log
# and recover can rebuild a lost row from it.
TONE_COLUMNS = {"manual": ("fitzpatrick", "monk"), "estimated": ("fitzpatrick_est", "monk_est")}
_OLD_WITHDRAW_METHOD = {"skin_tone.clear": "manual", "skin_tone.withdraw": "estimated"}


def replay(conn: sqlite3.Connection, image_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Per image, the current values the audit log leads to: ``diagnosis`` and ``label``,
    the rated and estimated skin-tone columns, the image fields set at add or by
    ``image.update`` (modality, device, clinic...), ``patient_id`` / ``lesion_id``.

    Only values the log recorded appear; an image whose ``image.add`` entry is missing
    (the log was cut) is left out."""
    sql = "SELECT entity_id, action, after FROM audit WHERE entity = 'image'"
    params: tuple[Any, ...] = ()
    if image_id is not None:
        sql, params = sql + " AND entity_id = ?", (image_id,)
    state: dict[str, dict[str, Any]] = {}
    for entity_id, action, after_text in conn.execute(sql + " ORDER BY id", params):
        after = json.loads(after_text) if after_text else None
        if action == "image.add":
            state[entity_id] = {
                **(after or {}),
                "diagnosis": None,
                "label": None,
                **{c: None for cols in TONE_COLUMNS.values() for c in cols},
            }
            continue
        current = state.get(entity_id)
        if current is not None:
            _apply(current, action, after)
    return state


def _apply(current: dict[str, Any], action: str, after: Any) -> None:
    if action == "label.set":
        current["label"], current["diagnosis"] = after, after["diagnosis"]
    elif action in ("label.clear", "label.restore"):
        label = after if action == "label.restore" else None
        current["label"] = label
        current["diagnosis"] = label["diagnosis"] if label else None
    elif action in ("skin_tone.manual", "skin_tone.estimated"):
        method = action.split(".")[1]
        fitz_col, monk_col = TONE_COLUMNS[method]
        current[fitz_col], current[monk_col] = after["fitzpatrick"], after["monk"]
        current[f"{method}_tone"] = after  # with its rater and ITA
    elif action in ("skin_tone.clear", "skin_tone.withdraw", "skin_tone.restore"):
        method = (after or {}).get("method") or _OLD_WITHDRAW_METHOD.get(action, "manual")
        row = (after or {}).get("row") if action == "skin_tone.restore" else None
        fitz_col, monk_col = TONE_COLUMNS[method]
        current[fitz_col] = row["fitzpatrick"] if row else None
        current[monk_col] = row["monk"] if row else None
        current[f"{method}_tone"] = row
    elif action == "image.update" and isinstance(after, dict):
        current.update(after)
    elif action == "image.link" and isinstance(after, dict):
        current["patient_id"], current["lesion_id"] = after["patient_id"], after["lesion_id"]
