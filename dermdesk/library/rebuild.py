"""Rebuild a library database that SQLite reports damaged, from what it can still read.

``dermdesk recover --database``: the damaged file (with its -wal/-shm) is renamed, never
deleted; a fresh database is made; every table is copied row by row, stepping over
pages that cannot be read; values the history tables define are recomputed from them;
the originals no surviving row names are imported again (with what the audit log still
knows); and a ``library.rebuild`` audit entry records what was copied, where the hash
chain now has gaps, and which images' histories were cut, so ``verify`` reports those
as known losses (warnings) rather than as tampering.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dermdesk.library.audit import GENESIS, write_head
from dermdesk.library.db import DB_NAME, LibraryError, connect
from dermdesk.library.library import Library

# Parents before children, so a copied row finds what it refers to.
TABLES = (
    "patient",
    "lesion",
    "model",
    "image",
    "label",
    "skin_tone",
    "quality",
    "image_hash",
    "mask",
    "prediction",
    "job",
    "experiment",
    "experiment_run",
    "model_evaluation",
    "dataset_split",
    "dataset_split_image",
    "duplicate_decision",
    "exclusion",
    "audit",
)
PAGE = 256  # rows read per query
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class RebuildReport:
    damaged_file: str
    copied: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    gaps: dict[str, int] = field(default_factory=dict)  # table -> unreadable stretches skipped
    chain_breaks: list[int] = field(default_factory=list)
    recovered_images: int = 0
    header_repaired: bool = False

    def lines(self) -> list[str]:
        out = [f"the damaged database is kept as {self.damaged_file}"]
        if self.header_repaired:
            out.append("its header was damaged: read with a repaired copy of the header")
        for table, n in self.copied.items():
            gap = self.gaps.get(table, 0)
            out.append(f"  {table}: {n} rows" + (f" ({gap} unreadable stretches)" if gap else ""))
        if self.chain_breaks:
            out.append(
                f"the audit log lost entries before {len(self.chain_breaks)} point(s): "
                "recorded in a library.rebuild entry"
            )
        out.append(f"re-imported {self.recovered_images} originals whose rows were lost")
        return out


def rebuild_database(root: Path, *, actor: str | None = None) -> RebuildReport:
    """Rebuild ``root``'s database; the damaged one stays beside it, renamed.

    The new database is built in a file of its own and swapped in only when complete:
    an interrupted rebuild leaves the damaged database where it was, to try again."""
    root = Path(root).expanduser().resolve()
    current = root / DB_NAME
    if not current.is_file():
        raise LibraryError(f"{root}: no library database to rebuild")
    building = root / f"{DB_NAME}.rebuilding"
    for suffix in ("", "-wal", "-shm"):  # a rebuild that was interrupted: start over
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    report = RebuildReport(damaged_file="")
    source, report.header_repaired = _open_damaged(current)
    try:
        target = connect(building)
        try:
            _copy_all(source, target, report)
            _recompute_current_values(target)
            report.chain_breaks = _chain_breaks(target)
            target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            target.close()
    finally:
        source.close()
        fixed = current.with_name(current.name + ".header-fixed")
        for suffix in ("", "-wal", "-shm"):  # our repaired copy; the damaged file stays
            Path(f"{fixed}{suffix}").unlink(missing_ok=True)
    report.damaged_file = _set_aside(root).name
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{building}{suffix}").exists():
            os.replace(f"{building}{suffix}", root / (DB_NAME + suffix))
    with contextlib.suppress(OSError):
        current.chmod(0o600)  # patient data, as a new library's database
    with Library.open(root, actor=actor) as lib:
        _record_rebuild(lib, report)
        from dermdesk.library.recover import recover_originals

        report.recovered_images = len(recover_originals(lib).recovered)
        _note_unverifiable(lib, report)
    return report


def _set_aside(root: Path) -> Path:
    """Rename the damaged database and its -wal/-shm together (SQLite pairs them by name)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    damaged = root / f"{DB_NAME}.damaged-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        if (root / (DB_NAME + suffix)).exists():
            os.replace(root / (DB_NAME + suffix), root / (damaged.name + suffix))
    return damaged


def _open_damaged(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection to the damaged file; if its header is what is damaged,
    to a copy with the header's magic and page size put right."""
    conn = _readonly(path)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn, False
    except sqlite3.DatabaseError:
        conn.close()
    fixed = path.with_name(path.name + ".header-fixed")
    shutil.copyfile(path, fixed)
    wal = path.with_name(path.name + "-wal")
    if wal.is_file():  # its changes belong to the copy now
        shutil.copyfile(wal, fixed.with_name(fixed.name + "-wal"))
    with open(fixed, "r+b") as fh:
        head = bytearray(fh.read(100))
        head[:16] = SQLITE_MAGIC
        page = int.from_bytes(head[16:18], "big")
        if page != 1 and (page < 512 or page & (page - 1)):
            head[16:18] = (4096).to_bytes(2, "big")  # SQLite's (and dermdesk's) default
        fh.seek(0)
        fh.write(head)
    conn = _readonly(fixed)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise LibraryError(
            f"{path.name}: SQLite cannot read any of it ({exc}); the originals are intact: "
            "make a new library and `dermdesk recover` it from them"
        ) from exc
    return conn, True


def _readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None)


def _copy_all(
    source: sqlite3.Connection, target: sqlite3.Connection, report: RebuildReport
) -> None:
    target.execute("PRAGMA foreign_keys = OFF")  # rows may point to rows that were lost
    try:
        for table in TABLES:
            columns, alias = _columns(target, table)
            names = columns if alias else ["rowid", *columns]
            marks = ", ".join("?" * len(names))
            sql = f"INSERT OR IGNORE INTO {table} ({', '.join(names)}) VALUES ({marks})"
            copied = gaps = 0
            target.execute("BEGIN")
            for rows, skipped in _readable_rows(source, table, columns):
                target.executemany(sql, [r[1:] for r in rows] if alias else rows)
                copied += len(rows)
                gaps += skipped
            target.execute("COMMIT")
            report.copied[table], report.gaps[table] = copied, gaps
        _drop_dangling(target)
    finally:
        target.execute("PRAGMA foreign_keys = ON")


def _columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], bool]:
    """The table's columns, and whether one of them is its rowid (INTEGER PRIMARY KEY)."""
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    keys = [r for r in info if r[5]]
    alias = len(keys) == 1 and str(keys[0][2]).upper() == "INTEGER"
    return [r[1] for r in info], alias


def _readable_rows(
    source: sqlite3.Connection, table: str, columns: list[str]
) -> Iterator[tuple[list[tuple[Any, ...]], int]]:
    """(rows, unreadable stretches skipped) pages of ``table`` in rowid order, stepping
    over what cannot be read; columns a damaged schema lacks come back as NULL."""
    have: set[str] = set()
    with contextlib.suppress(sqlite3.DatabaseError):
        have = {r[1] for r in source.execute(f"PRAGMA table_info({table})")}
    if not have:
        return
    select = ", ".join(c if c in have else "NULL" for c in columns)
    sql = f"SELECT rowid, {select} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?"
    last, batch = -(2**63), PAGE
    while True:
        try:
            rows = source.execute(sql, (last, batch)).fetchall()
        except sqlite3.DatabaseError:
            if batch > 1:  # narrow down to the row that cannot be read
                batch = 1
                continue
            resume = _next_readable(source, table, select, last)
            if resume is None:
                return
            yield [], 1
            last = resume - 1
            continue
        if not rows:
            return
        yield [tuple(r) for r in rows], 0
        last, batch = rows[-1][0], PAGE


def _next_readable(source: sqlite3.Connection, table: str, select: str, after: int) -> int | None:
    """The first rowid past ``after`` whose whole row can be read, trying ever larger
    jumps over the damaged stretch (every query costs one B-tree descent)."""
    base, step = max(after, 0), 1
    while step < 2**62:
        try:
            row = source.execute(
                f"SELECT rowid, {select} FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1",
                (base + step,),
            ).fetchone()
        except sqlite3.DatabaseError:
            step *= 2
            continue
        return None if row is None else int(row[0])
    return None


def _drop_dangling(conn: sqlite3.Connection) -> None:
    """Rows whose image, patient or lesion did not survive cannot stay."""
    for table in ("label", "skin_tone", "quality", "image_hash", "mask", "prediction"):
        conn.execute(f"DELETE FROM {table} WHERE image_id NOT IN (SELECT id FROM image)")
    conn.execute("DELETE FROM prediction WHERE model_id NOT IN (SELECT id FROM model)")
    conn.execute(
        "UPDATE image SET patient_id = NULL WHERE patient_id NOT IN (SELECT id FROM patient)"
    )
    conn.execute("UPDATE image SET lesion_id = NULL WHERE lesion_id NOT IN (SELECT id FROM lesion)")
    conn.execute(
        "UPDATE lesion SET patient_id = NULL WHERE patient_id NOT IN (SELECT id FROM patient)"
    )
    conn.execute("UPDATE job SET model_id = NULL WHERE model_id NOT IN (SELECT id FROM model)")


def _recompute_current_values(conn: sqlite3.Connection) -> None:
    """The denormalised columns from the history rows that survived (one label current)."""
    from dermdesk.library.query import device_name

    conn.executemany(
        "UPDATE image SET device = ? WHERE id = ?",
        [
            (device_name(make, model), image_id)
            for image_id, make, model in conn.execute(
                "SELECT id, device_make, device_model FROM image"
            ).fetchall()
        ],
    )
    conn.execute(
        "UPDATE label SET is_current = 0 WHERE is_current AND id NOT IN "
        "(SELECT max(id) FROM label WHERE is_current GROUP BY image_id)"
    )
    conn.execute(
        "UPDATE image SET diagnosis = (SELECT diagnosis FROM label l WHERE l.image_id = image.id "
        "AND l.is_current)"
    )
    for column, method, scale in (
        ("fitzpatrick", "manual", "fitzpatrick"),
        ("monk", "manual", "monk"),
        ("fitzpatrick_est", "estimated", "fitzpatrick"),
        ("monk_est", "estimated", "monk"),
    ):
        conn.execute(
            f"UPDATE image SET {column} = (SELECT t.{scale} FROM skin_tone t WHERE "
            f"t.image_id = image.id AND t.is_current AND t.method = '{method}' "
            "ORDER BY t.id DESC LIMIT 1)"
        )


def _chain_breaks(conn: sqlite3.Connection) -> list[int]:
    """Audit entry ids whose previous entry was lost (their prev_hash links to nothing)."""
    breaks, prev = [], GENESIS
    for entry_id, prev_hash, h in conn.execute("SELECT id, prev_hash, hash FROM audit ORDER BY id"):
        if prev_hash != prev:
            breaks.append(int(entry_id))
        prev = h
    return breaks


def _record_rebuild(lib: Library, report: RebuildReport) -> None:
    with lib.transaction() as txn:
        txn.record(
            "library.rebuild",
            "library",
            None,
            None,
            {
                "from": report.damaged_file,
                "rows": report.copied,
                "unreadable_stretches": {t: n for t, n in report.gaps.items() if n},
                "chain_breaks": report.chain_breaks,
            },
        )
    last = lib.conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    write_head(lib.root, int(last[0]), str(last[1]), force=True)


def _note_unverifiable(lib: Library, report: RebuildReport) -> None:
    """Images whose audit history the damage cut: recorded, so verify knows them."""
    from dermdesk.library.verify import audit_disagreements

    cut = sorted(image_id for image_id, _ in audit_disagreements(lib))
    if not cut:
        return
    with lib.transaction() as txn:
        txn.record(
            "library.rebuild.cut_histories",
            "library",
            None,
            None,
            {"from": report.damaged_file, "images": cut},
        )
