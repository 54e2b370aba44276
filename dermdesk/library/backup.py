"""Consistent backups: SQLite's online backup of the database, then the files it names.

Stored files are never modified, so copying the files named by the database
snapshot (after the snapshot) gives a consistent backup while the library
stays in use. Everything is written into a hidden temporary folder beside the
target and renamed to the target's name at the end: a backup that was killed or
failed never sits under the name of a backup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dermdesk.library.audit import write_head
from dermdesk.library.db import DB_NAME, LibraryError, translate_error
from dermdesk.library.library import Library
from dermdesk.library.store import Store


@dataclass(frozen=True)
class BackupResult:
    folder: Path
    images: int
    files: int
    bytes: int


# Called with (files copied, files to copy): at the start, after each file, at the end.
# It may raise (a cancel): the partial backup is removed and the exception goes on.
Progress = Callable[[int, int], None]


def check_target(root: Path, dest: str | Path) -> Path:
    """The resolved backup folder, or a LibraryError saying why it cannot be one (inside
    the library, not empty, a file); cheap enough to ask before a backup starts."""
    final = Path(dest).expanduser().resolve()
    if final == root or final.is_relative_to(root):
        raise LibraryError(f"{final}: a backup cannot go inside the library itself")
    if final.exists() and not final.is_dir():
        raise LibraryError(f"{final}: is a file, not a folder")
    if final.exists() and any(final.iterdir()):
        raise LibraryError(
            f"{final}: backup folder is not empty (choose an empty folder or a new one)"
        )
    return final


def backup(lib: Library, dest: str | Path, progress: Progress | None = None) -> BackupResult:
    """Back the library up into ``dest`` (a new or empty folder)."""
    final = check_target(lib.root, dest)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    except OSError as exc:
        raise LibraryError(f"{final}: cannot write the backup ({_why(exc)})") from exc
    try:
        result = _copy(lib, folder, progress)
        if final.exists():
            final.rmdir()  # empty (checked above): the finished backup takes its place
        os.replace(folder, final)
        _remember(lib.root, final, result.images)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)  # a copy only: the library is untouched
        if isinstance(exc, OSError):
            raise LibraryError(f"{final}: backup failed ({_why(exc)})") from exc
        if isinstance(exc, sqlite3.Error):
            raise LibraryError(f"{final}: backup failed ({translate_error(exc, None)})") from exc
        raise
    return BackupResult(final, result.images, result.files, result.bytes)


BACKUPS_FILE = "backups.json"  # beside the database: readable when the database is not


def _remember(root: Path, folder: Path, images: int) -> None:
    """Note a finished backup in the library folder (so a damaged database can say where
    the last good copy is); on read-only media there is nowhere to note it."""
    import json
    import time

    path = root / BACKUPS_FILE
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    except (OSError, ValueError):
        known = []
    entry = {"folder": str(folder), "images": images, "at": time.strftime("%Y-%m-%d %H:%M")}
    tmp = path.with_name(BACKUPS_FILE + ".part")
    try:
        tmp.write_text(json.dumps([*known[-19:], entry], indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # read-only media, a full disk: the backup itself is done
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def last_backup(root: Path) -> str | None:
    """'FOLDER (made AT, N images)' of the newest backup noted here that still exists."""
    import json

    try:
        known = json.loads((root / BACKUPS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for entry in reversed(known if isinstance(known, list) else []):
        try:
            if Path(entry["folder"], DB_NAME).is_file():
                return f"{entry['folder']} (made {entry['at']}, {entry['images']} images)"
        except (KeyError, TypeError):
            continue
    return None


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full; nothing was left under the backup's name"
    if exc.errno == errno.EROFS:
        return "the disk there is read-only; choose another folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "no permission to write there; choose another folder"
    return exc.strerror or str(exc)


def _copy(lib: Library, folder: Path, progress: Progress | None = None) -> BackupResult:
    """Database snapshot, then every file it names, into ``folder``."""
    target = sqlite3.connect(folder / DB_NAME)
    with target:
        lib.conn.backup(target)
    target.close()
    (folder / DB_NAME).chmod(0o600)  # the folder itself is 0700 (mkdtemp)
    snapshot = sqlite3.connect(folder / DB_NAME)
    named = "SELECT file FROM image UNION SELECT file FROM mask"
    rels = [r[0] for r in snapshot.execute(named)]
    ids = [r[0] for r in snapshot.execute("SELECT id FROM image")]
    model_ids = [r[0] for r in snapshot.execute("SELECT id FROM model")]
    head = snapshot.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    snapshot.close()
    if head is not None:  # the backup's own chain head, from the snapshot it holds
        write_head(folder, int(head[0]), str(head[1]))
    rels += [Store.thumb_rel(i) for i in ids if lib.thumbnail_path(i).is_file()]
    rels += model_files(lib.root, model_ids)
    total = 0
    if progress is not None:
        progress(0, len(rels))
    for done, rel in enumerate(rels, 1):
        out = folder / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.store.path(rel), out)
        total += out.stat().st_size
        if progress is not None:
            progress(done, len(rels))
    return BackupResult(folder, len(ids), len(rels), total)


def model_files(root: Path, model_ids: list[str]) -> list[str]:
    """Every file in the folders of registered models (weights, ONNX, int8, card)."""
    rels = []
    for model_id in model_ids:
        folder = root / "models" / model_id
        if folder.is_dir():
            rels += [p.relative_to(root).as_posix() for p in folder.iterdir() if p.is_file()]
    return rels
