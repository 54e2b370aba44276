"""Content-addressed file store for originals, thumbnails and masks.

A file's path is derived from its SHA-256, so storing the same bytes twice is
a no-op and a stored original is never modified. Files are written to a
``*.part`` file beside their target and renamed into place, so a killed process
leaves at worst a stray temporary file, never a half-written original. Files are
always written before the database rows that name them. An original no row names
is never deleted by the app: ``verify`` reports it (unless an import that may still
add its row is running: see :meth:`Store.writing`), ``verify --repair`` moves it to
``quarantine/`` and ``dermdesk recover`` imports it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ORIGINALS = "originals"
THUMBS = "thumbs"
MASKS = "masks"
TMP = "tmp"
QUARANTINE = "quarantine"  # originals and masks no row names, kept for `dermdesk recover`
ACTIVE = "active"  # one small file per running writer of originals (import, capture)
PART = ".part"  # suffix of a file being written; a killed process may leave one
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class Store:
    """Files of one library folder, addressed by SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Folders known to exist: mkdir on an existing folder costs a failing syscall
        # per file, which is measurable on some file systems (overlayfs).
        self._made: set[str] = set()
        self._root_str = str(root)

    def ensure_dirs(self) -> None:
        """Create the library's folders; a new library also gets its 2 x 256 shard
        folders for originals and thumbnails now, once, rather than one by one during
        its first import (a folder costs ~0.7 ms of kernel time on some disks, and the
        first 866-image import made 512 of them)."""
        new = not (self.root / ORIGINALS).is_dir()
        for sub in (ORIGINALS, THUMBS, MASKS, TMP):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if new:
            for sub in (ORIGINALS, THUMBS):
                for shard in range(256):
                    os.makedirs(os.path.join(self._root_str, sub, f"{shard:02x}"), exist_ok=True)

    @staticmethod
    def original_rel(sha: str, ext: str) -> str:
        return f"{ORIGINALS}/{sha[:2]}/{sha}.{ext}"

    @staticmethod
    def thumb_rel(sha: str) -> str:
        return f"{THUMBS}/{sha[:2]}/{sha}.jpg"

    @staticmethod
    def mask_rel(sha: str, kind: str) -> str:
        return f"{MASKS}/{sha[:2]}/{sha}.{kind}.png"

    def path(self, rel: str) -> Path:
        return self.root / rel

    def put(self, rel: str, data: bytes, *, overwrite: bool = False) -> bool:
        """Write ``data`` at ``rel`` atomically. Returns False if an intact copy was there."""
        # Plain os.path strings: this runs twice per imported file, holding the GIL,
        # and pathlib's object churn was a tenth of the per-file Python time.
        target = os.path.join(self._root_str, rel)
        if not overwrite:
            try:
                if os.stat(target).st_size == len(data):
                    return False
            except FileNotFoundError:
                pass
        self._make_parent(target)
        # The temporary file goes beside its target, not into one shared folder: the
        # kernel serialises file creation per folder, and imports write from several
        # threads at once (measured: 2 threads in one folder were no faster than one).
        tmp = f"{target}.{secrets.token_hex(4)}{PART}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return True

    def _make_parent(self, target: str) -> None:
        parent = os.path.dirname(target)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Mark this process as writing originals whose rows may come later (an import):
        ``verify`` does not call such files lost while the mark's process lives."""
        from dermdesk.processes import process_started

        folder = os.path.join(self._root_str, ACTIVE)
        os.makedirs(folder, exist_ok=True)
        mark = os.path.join(folder, f"{what}-{os.getpid()}-{secrets.token_hex(3)}.json")
        info = {"pid": os.getpid(), "pid_started": process_started(os.getpid())}
        with open(mark, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({**info, "what": what, "since": time.time()}))
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(mark)

    def running_writers(self) -> list[dict[str, Any]]:
        """The marks of :meth:`writing` whose process is still alive."""
        from dermdesk.processes import pid_alive

        found = []
        for path in self.iter_files(ACTIVE):
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
                if pid_alive(int(info["pid"]), info.get("pid_started")):
                    found.append(info)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a mark being written, or garbage: not a running writer
        return found

    def quarantine(self, path: Path) -> Path:
        """Move an original or mask no row names to quarantine/ (same relative path)."""
        dest = self.root / QUARANTINE / path.relative_to(self.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return dest

    def iter_files(self, sub: str) -> Iterator[Path]:
        folder = self.root / sub
        if folder.is_dir():
            yield from (p for p in folder.rglob("*") if p.is_file())

    def temp_files(self) -> list[Path]:
        """Files a killed writer left half-written (removed by ``verify --repair``)."""
        found = list(self.iter_files(TMP))  # where libraries before 2026-11 wrote them
        for sub in (ORIGINALS, THUMBS, MASKS):
            found += [p for p in self.iter_files(sub) if p.name.endswith(PART)]
        return found
