"""Ingest one file: hash, check, read device EXIF, store original and thumbnail.

This is the per-file work an import fans out across cores. It writes only
content-addressed files (idempotent, atomic) and returns plain data; the
database rows are written afterwards by the library's single writer.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermdesk.imaging.decode import (
    FORMAT_EXT,
    ImageRejected,
    displayed_size,
    exif_orientation,
    is_own_thumbnail,
    load,
    open_image,
    thumbnail_jpeg,
    thumbnail_jpeg_rgb,
)
from dermdesk.imaging.exif import device_metadata
from dermdesk.imaging.jpeg_segments import NotAJpeg, strip_metadata
from dermdesk.library.records import StoredFile
from dermdesk.library.store import Store

THUMB_SIZE = 256


class StoreFull(ImageRejected):
    """The library's disk is full: this file (and any after it) cannot be stored."""


@dataclass(frozen=True)
class AlreadyStored:
    """The file's bytes are already an image of the library."""

    sha256: str


MAX_FILE_BYTES = 512 * 1024 * 1024  # larger than any photo; beyond it a file is refused unread
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def read_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes. A pipe, device or socket is refused without reading
    from it (opened non-blocking, checked after opening: a FIFO named .jpg or a link
    to /dev/zero would otherwise hang or read without end), and so is a file over
    ``limit`` bytes."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise ImageRejected("file not found") from None
    except IsADirectoryError:
        raise ImageRejected("is a folder, not a file") from None
    except OSError as exc:
        raise ImageRejected(f"cannot read file ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageRejected("not a regular file (a pipe, device or socket): not read")
        if info.st_size > limit:
            raise ImageRejected(
                f"{info.st_size / 1e6:,.0f} MB: larger than any photo (limit {limit / 1e6:,.0f} MB)"
            )
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise ImageRejected(f"cannot read file ({exc.strerror})") from exc
    if len(data) > limit:  # it grew while we read it
        raise ImageRejected(f"larger than any photo (limit {limit / 1e6:,.0f} MB)")
    return data


def ingest_bytes(
    data: bytes,
    store: Store,
    known: set[str] | frozenset[str] = frozenset(),
    *,
    checks: bool = False,
    modality: str | None = None,
) -> StoredFile | AlreadyStored:
    """Check and store one image's bytes. Raises ImageRejected with the reason.

    With ``checks``, the quality checker runs on the same (DCT-reduced) decode
    that makes the thumbnail; its assessment rides along in ``StoredFile.quality``
    (``modality`` as recorded, or None to let the checker detect it)."""
    sha = hashlib.sha256(data).hexdigest()
    if sha in known:
        return AlreadyStored(sha)
    img = open_image(data)
    fmt = img.format or "?"
    mode = img.mode
    orientation = exif_orientation(img)
    width, height = displayed_size(img, orientation)
    device = device_metadata(img)
    own_thumb = is_own_thumbnail(img, orientation, THUMB_SIZE)
    assessment = None
    thumb = None
    # Every branch decodes the whole entropy-coded stream: truncation is caught here.
    if checks:
        # One decode, a little larger than the thumbnail needs, serves both.
        from dermdesk.imaging.quality import assess_decoded
        from dermdesk.imaging.working import decode_pil

        decoded = decode_pil(img)
        if not own_thumb:
            thumb = thumbnail_jpeg_rgb(decoded.rgb, THUMB_SIZE)
        assessment = assess_decoded(decoded, modality)
    elif own_thumb:
        load(img, reduce_to=1)  # pixels unused: the smallest DCT scale only validates
    else:
        load(img, long_side_to=THUMB_SIZE)
        thumb = thumbnail_jpeg(img, THUMB_SIZE)
    if thumb is None:
        thumb = own_thumbnail(data, img)
    rel = store.original_rel(sha, FORMAT_EXT[fmt])
    new_file = False
    try:
        new_file = store.put(rel, data)
        store.put(store.thumb_rel(sha), thumb)
    except OSError as exc:
        if new_file:  # the original went in, its thumbnail did not: take it back
            with contextlib.suppress(OSError):
                store.path(rel).unlink()
        if exc.errno == errno.ENOSPC:
            raise StoreFull("not stored: the disk holding the library is full") from exc
        raise ImageRejected(f"cannot write into the library ({exc.strerror or exc})") from exc
    return StoredFile(
        sha256=sha,
        file=rel,
        format=fmt,
        width=width,
        height=height,
        bytes=len(data),
        mode=mode,
        orientation=orientation,
        device=device,
        quality=assessment,
        new_file=new_file,
    )


def own_thumbnail(data: bytes, img: Any = None) -> bytes:
    """A small JPEG's thumbnail: its own bytes without the metadata segments (no GPS,
    serial numbers or owner names; pixels bit-identical, no re-encode), in a file of its
    own, so nothing that writes a thumbnail can reach the original."""
    try:
        return strip_metadata(data)
    except NotAJpeg:  # a stream the segment parser does not follow: re-encode instead
        img = img if img is not None else open_image(data)
        load(img, long_side_to=THUMB_SIZE)
        return thumbnail_jpeg(img, THUMB_SIZE)


def ingest_file(
    path: Path,
    store: Store,
    known: set[str] | frozenset[str] = frozenset(),
    *,
    checks: bool = False,
    modality: str | None = None,
) -> StoredFile | AlreadyStored:
    return ingest_bytes(read_file(path), store, known, checks=checks, modality=modality)


def ingest_mask(path: Path, image_sha: str, store: Store) -> str:
    """Store a lesion mask for an image; returns its relative path."""
    data = read_file(path)
    img = load(open_image(data))
    if img.mode not in ("1", "L", "P", "RGB", "RGBA", "LA"):
        raise ImageRejected(f"mask has unexpected mode {img.mode}")
    rel = store.mask_rel(image_sha, "lesion")
    store.put(rel, data)
    return rel
