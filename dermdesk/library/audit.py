"""Append-only, tamper-evident audit log.

Each entry stores the hash of the previous entry and its own hash over
(previous hash, time, actor, action, entity, before, after). Changing,
deleting or reordering any entry breaks the chain, which :func:`verify_chain`
reports with the first entry that does not match.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
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

    def flush(self) -> None:
        self.conn.executemany(
            "INSERT INTO audit (at, actor, action, entity, entity_id, before, after, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._rows,
        )
        self._rows.clear()


def verify_chain(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """Walk the chain; return (entries checked, first problem or None)."""
    prev = GENESIS
    count = 0
    cursor = conn.execute(
        "SELECT id, at, actor, action, entity, entity_id, before, after, prev_hash, hash "
        "FROM audit ORDER BY id"
    )
    for row in cursor:
        count += 1
        entry_id, at, actor, action, entity, entity_id, before, after, prev_hash, h = row
        if prev_hash != prev:
            return count, f"audit entry {entry_id}: previous-hash link broken (entry removed?)"
        expected = entry_hash(prev, at, actor, action, entity, entity_id, before, after)
        if h != expected:
            return count, f"audit entry {entry_id}: content does not match its hash (edited?)"
        prev = h
    return count, None
