"""Opening the library database: pragmas, migrations and clear errors.

Every connection runs in WAL mode with foreign keys on and a busy timeout, so
the GUI, the CLI and a background job can share one library. Connections are
in autocommit mode; writers open explicit ``BEGIN IMMEDIATE`` transactions
(see :mod:`dermdesk.library.library`).

These functions take a plain ``sqlite3.Connection`` (or a ``sqlite_utils.Database``,
whose ``conn`` they use): importing sqlite-utils costs more than the rest of a CLI
command's start-up, so the library opens plain connections and wraps one in
sqlite-utils only when asked (``Library.db``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from dermdesk.library.schema import LATEST_VERSION, MIGRATIONS

T = TypeVar("T")

DB_NAME = "library.sqlite"
DEFAULT_BUSY_TIMEOUT_S = 30.0


class LibraryError(Exception):
    """A library problem with a one-line explanation for the user."""


class LibraryBusyError(LibraryError):
    """Another process held the library's write lock for longer than the busy timeout."""


class LibraryDamaged(LibraryError):
    """The library's database file cannot be read: damaged, or not a database."""


class LibraryDiskFull(LibraryError):
    """The disk holding the library is full; the change that hit it was not written."""


# Ids per ``IN (?, ...)`` list: under SQLite's host-parameter limit (999 in older builds).
MAX_IDS_PER_QUERY = 900


def id_chunks(ids: Sequence[T]) -> Iterator[list[T]]:
    """``ids`` in lists short enough for one ``IN (?, ...)`` each, in order."""
    for start in range(0, len(ids), MAX_IDS_PER_QUERY):
        yield list(ids[start : start + MAX_IDS_PER_QUERY])


def connect(
    path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, readonly: bool = False
) -> sqlite3.Connection:
    """Open (creating if needed) the database file at ``path`` and migrate it."""
    conn: sqlite3.Connection | None = None
    try:
        if readonly:
            conn = _connect_readonly(path, busy_timeout_s)
        else:
            conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            version = schema_version(conn)
            if version != LATEST_VERSION:
                raise LibraryError(
                    f"{path}: schema version {version}, this dermdesk needs "
                    f"{LATEST_VERSION}; open it once read-write to upgrade"
                )
        else:
            _set_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
    except sqlite3.DatabaseError as exc:  # OperationalError and "file is not a database"
        if conn is not None:
            conn.close()
        raise translate_error(exc, path) from exc
    except LibraryError:
        if conn is not None:
            conn.close()
        raise
    return conn


def _connect_readonly(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open for reading, on read-only media too, never showing a stale view.

    Where the folder is writable SQLite reads as usual. On read-only media it cannot
    make its -shm index; a database without a -wal file (closed cleanly) is then read
    as 'immutable'. With a -wal file (changes not yet merged into the database file)
    'immutable' would ignore those changes without a word, so SQLite must read the WAL
    itself (3.22+, from the existing -shm/-wal); if it cannot, the library is refused."""
    uri = f"file:{quote(str(path))}?mode=ro"
    wal = path.with_name(path.name + "-wal")
    has_wal = wal.exists() and wal.stat().st_size > 0
    if not os.access(path.parent, os.W_OK) and not has_wal:
        uri += "&immutable=1"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        if has_wal:
            raise LibraryError(
                f"{path.parent}: the library was not closed cleanly (its -wal file holds "
                "changes) and they cannot be read on read-only media: copy the library "
                "folder to a writable disk and open the copy"
            ) from exc
        raise
    return conn


def _conn(db: Any) -> sqlite3.Connection:
    """The sqlite3 connection of ``db`` (a connection, or a sqlite-utils Database)."""
    conn: sqlite3.Connection = getattr(db, "conn", db)
    return conn


def _set_wal(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LibraryError(f"could not switch the library to WAL mode (got {mode})")


def schema_version(db: Any) -> int:
    return int(_conn(db).execute("PRAGMA user_version").fetchone()[0])


@contextmanager
def immediate(db: Any) -> Iterator[sqlite3.Connection]:
    """A write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
    conn = _conn(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise translate_error(exc, None) from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        _rollback(conn)
        raise translate_error(exc, None) from exc
    except BaseException:
        _rollback(conn)
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise translate_error(exc, None) from exc


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back unless SQLite already did (it does on SQLITE_FULL and some I/O errors:
    a second ROLLBACK would fail with "no transaction is active" and hide the cause)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def migrate(db: Any, target: int = LATEST_VERSION) -> int:
    """Apply the missing migrations up to ``target``; returns the resulting version."""
    current = schema_version(db)
    if current > LATEST_VERSION:
        raise LibraryError(
            f"library schema version {current} is newer than this dermdesk ({LATEST_VERSION}); "
            "upgrade dermdesk"
        )
    for version in range(current + 1, target + 1):
        with immediate(db) as conn:
            # Re-check inside the lock: another process may have migrated meanwhile.
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= version:
                continue
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
    return schema_version(db)


def damaged_message(path: Path | None, text: str) -> str:
    """One line: the database is damaged, the originals are not, and what to do."""
    from dermdesk.library.backup import last_backup  # lazy: a file read, errors only

    folder = path.parent if path is not None else None
    where = f"{folder}: " if folder else ""
    known = last_backup(folder) if folder else None
    backup = f"; the last backup made here is {known}" if known else ""
    return (
        f"{where}the library database is damaged ({text}); the originals are not{backup}. "
        "`dermdesk recover --database` rebuilds it from what can be read and the "
        "originals (the damaged file is kept)"
    )


def translate_error(exc: sqlite3.Error, path: Path | None) -> LibraryError:
    """Turn an sqlite3 error into a one-line LibraryError the user can act on."""
    text = str(exc)
    where = f"{path}: " if path else ""
    if "locked" in text or "busy" in text:
        return LibraryBusyError(
            f"{where}library is locked by another process (database is locked); "
            "wait for it to finish or close it, then try again"
        )
    if "readonly" in text or "read-only" in text:
        return LibraryError(f"{where}library is read-only: cannot write ({text})")
    if "unable to open" in text:
        return LibraryError(f"{where}cannot open the library database ({text})")
    if "disk is full" in text or "database or disk is full" in text:
        return LibraryDiskFull(f"{where}the disk is full: nothing of this change was written")
    if "malformed" in text or "not a database" in text:
        return LibraryDamaged(damaged_message(path, text))
    return LibraryError(f"{where}{text}")
