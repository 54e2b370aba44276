"""Content-addressed file store for originals, thumbnails and masks.

A file's path is derived from its SHA-256, so storing the same bytes twice is
a no-op and a stored original is never modified. Files are written to
``tmp/`` first and renamed into place, so a killed process leaves at worst a
stray temporary file, never a half-written original. Files are always written
before the database rows that name them; a file no row names (an *orphan*)
is harmless and is collected by ``verify --repair``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

ORIGINALS = "originals"
THUMBS = "thumbs"
MASKS = "masks"
TMP = "tmp"
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
        self._tmp_str = os.path.join(self._root_str, TMP)

    def ensure_dirs(self) -> None:
        for sub in (ORIGINALS, THUMBS, MASKS, TMP):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

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
        parent = os.path.dirname(target)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        tmp = os.path.join(self._tmp_str, f"{os.path.basename(target)}.{secrets.token_hex(4)}.part")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return True

    def iter_files(self, sub: str) -> Iterator[Path]:
        folder = self.root / sub
        if folder.is_dir():
            yield from (p for p in folder.rglob("*") if p.is_file())

    def temp_files(self) -> list[Path]:
        return list(self.iter_files(TMP))
