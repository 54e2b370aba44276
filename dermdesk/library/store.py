"""Content-addressed file store for originals, thumbnails and masks.

A file's path is derived from its SHA-256, so storing the same bytes twice is
a no-op and a stored original is never modified. Files are written to
``tmp/`` first and renamed into place, so a killed process leaves at worst a
stray temporary file, never a half-written original. Files are always written
before the database rows that name them; a file no row names (an *orphan*)
is harmless and is collected by ``verify --repair``.
"""

from __future__ import annotations

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
        self._made: set[Path] = set()

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
        target = self.root / rel
        if not overwrite and target.exists() and target.stat().st_size == len(data):
            return False
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        tmp = self.root / TMP / f"{target.name}.{secrets.token_hex(4)}.part"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def iter_files(self, sub: str) -> Iterator[Path]:
        folder = self.root / sub
        if folder.is_dir():
            yield from (p for p in folder.rglob("*") if p.is_file())

    def temp_files(self) -> list[Path]:
        return list(self.iter_files(TMP))
