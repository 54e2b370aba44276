"""Decode once: the training-image cache in the library folder (numpy + Pillow, no torch).

``cache/train/<S>/`` holds every cached image decoded once, EXIF-upright, with its
shorter side resized to ``S`` px exactly as inference prepares it
(:func:`dermdesk.inference.preprocess.base_view` of a spec whose ``resize_to`` is
``S``) and its longer side cut centrally to at most :data:`MAX_ASPECT` x ``S``:

- ``pixels.u8``: the images' uint8 RGB pixels back to back (append-only);
- ``index.npy``: one record per image: id (the SHA-256 of the original), byte offset,
  height, width.

A training job memory-maps ``pixels.u8`` and slices images out of it: no JPEG decode
per epoch, and the operating system's page cache shares the pixels between workers.
Image ids are content hashes, so an entry can never go stale; ``verify`` reports entries
of images no longer in the library and ``verify --repair`` drops them. Deleting the whole
``cache/`` folder loses nothing: it is rebuilt on demand.

Why this format (measured by ``scripts/bench_train.py``): one flat file plus a small
index reads an image with one slice of a memory map, which beat one ``.npy`` file per
image (a file open per image per epoch) and needs no extra dependency (HDF5, LMDB).
Appending keeps a partly built cache valid: a killed build leaves unindexed bytes at
the end, cut off by the next build.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CACHE_DIR = "cache/train"
MAX_ASPECT = 3.0  # longer side kept: at most this times the shorter (photos are <= 2:1)
INDEX_DTYPE = np.dtype([("id", "S64"), ("offset", "<i8"), ("h", "<i4"), ("w", "<i4")])
FLUSH_EVERY = 256  # images decoded between index writes

ProgressFn = Callable[[int, int], None]


class CacheFull(OSError):
    """The disk filled up while caching; what was cached before is kept and indexed."""

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass
class CacheReport:
    size: int
    cached: int = 0  # decoded by this call
    present: int = 0  # already there
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image id, why)


class TrainCache:
    """The cached images of one shorter-side size ``size`` in library ``root``."""

    def __init__(self, root: Path, size: int) -> None:
        if not 16 <= size <= 1024:
            raise ValueError(f"cache size {size} px is out of range (16-1024)")
        self.size = size
        self.folder = Path(root) / CACHE_DIR / str(size)
        self._lock = threading.Lock()
        self._index: dict[str, tuple[int, int, int]] = {}
        self._pixels: np.memmap | None = None
        self._load_index()

    # -- reading --------------------------------------------------------------------------

    @property
    def pixels_path(self) -> Path:
        return self.folder / "pixels.u8"

    @property
    def index_path(self) -> Path:
        return self.folder / "index.npy"

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def ids(self) -> list[str]:
        return list(self._index)

    def get(self, image_id: str) -> np.ndarray:
        """The cached uint8 (h, w, 3) pixels of an image (a view into the memory map)."""
        offset, h, w = self._index[image_id]
        pixels = self._map()
        return pixels[offset : offset + h * w * 3].reshape(h, w, 3)

    def _map(self) -> np.memmap:
        if self._pixels is None or len(self._pixels) < self._end():
            self._pixels = np.memmap(self.pixels_path, dtype=np.uint8, mode="r")
        return self._pixels

    def _end(self) -> int:
        return max((o + h * w * 3 for o, h, w in self._index.values()), default=0)

    def _load_index(self) -> None:
        if not self.index_path.is_file():
            return
        try:
            records = np.load(self.index_path, allow_pickle=False)
        except (OSError, ValueError):
            return  # a damaged index: the cache is rebuilt (nothing of value is lost)
        if records.dtype != INDEX_DTYPE:
            return
        size = self.pixels_path.stat().st_size if self.pixels_path.is_file() else 0
        self._index = {
            r["id"].decode(): (int(r["offset"]), int(r["h"]), int(r["w"]))
            for r in records
            if int(r["offset"]) + int(r["h"]) * int(r["w"]) * 3 <= size
        }

    # -- building -------------------------------------------------------------------------

    def ensure(
        self,
        images: Sequence[tuple[str, Path]],
        *,
        workers: int | None = None,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> CacheReport:
        """Decode every (image id, original path) not cached yet and append it.

        Unreadable originals are reported, not raised; a full disk raises
        :class:`CacheFull` after indexing what fitted; ``should_stop`` ends early
        with everything decoded so far kept."""
        report = CacheReport(self.size)
        todo = [(i, p) for i, p in dict(images).items() if i not in self._index]
        report.present = len(images) - len(todo)
        if not todo:
            return report
        self.folder.mkdir(parents=True, exist_ok=True)
        with _build_lock(self.folder):
            # Another process (a DDP rank) may have built it while this one waited.
            self._index = {}
            self._load_index()
            todo = [(i, p) for i, p in dict(images).items() if i not in self._index]
            report.present = len(images) - len(todo)
            if todo:
                self._build(todo, len(images), report, workers, progress, should_stop)
        return report

    def _build(
        self,
        todo: list[tuple[str, Path]],
        total: int,
        report: CacheReport,
        workers: int | None,
        progress: ProgressFn | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self._truncate_to_index()
        workers = workers or os.cpu_count() or 1
        # Unbuffered: each image is written as it comes, so a full disk is met at the
        # image that does not fit, and everything before it is on disk to be indexed.
        with ThreadPoolExecutor(workers) as pool, open(self.pixels_path, "ab", buffering=0) as out:
            for start in range(0, len(todo), FLUSH_EVERY):
                if should_stop is not None and should_stop():
                    break
                chunk = todo[start : start + FLUSH_EVERY]
                for (image_id, _), result in zip(chunk, pool.map(self._decode, chunk), strict=True):
                    if isinstance(result, str):
                        report.failed.append((image_id, result))
                        continue
                    self._append(out, image_id, result)
                    report.cached += 1
                self._flush(out)
                if progress:
                    progress(report.present + start + len(chunk), total)

    def _decode(self, item: tuple[str, Path]) -> np.ndarray | str:
        from dermdesk.imaging.decode import ImageRejected, decode_rgb
        from dermdesk.inference.preprocess import resize_shorter

        try:
            rgb = decode_rgb(item[1], reduce_to=self.size)
        except (ImageRejected, OSError) as exc:
            return f"cannot read the original ({exc})"
        view = resize_shorter(rgb, self.size)
        h, w = view.shape[:2]
        longest = int(MAX_ASPECT * self.size)
        if h > longest:
            top = (h - longest) // 2
            view = view[top : top + longest]
        if w > longest:
            left = (w - longest) // 2
            view = view[:, left : left + longest]
        return np.ascontiguousarray(view, dtype=np.uint8)

    def _append(self, out: Any, image_id: str, view: np.ndarray) -> None:
        offset = out.tell()
        data = memoryview(view.tobytes())
        try:
            while data:  # a raw write may take only part of it
                data = data[out.write(data) :]
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            self._full(out, offset)
        self._index[image_id] = (offset, view.shape[0], view.shape[1])

    def _full(self, out: Any, good_end: int) -> None:
        """Out of space: give back the partial image, keep an index of what fitted."""
        with contextlib.suppress(OSError):
            out.truncate(good_end)
        for _ in range(8):  # the index needs room too: give back images until it fits
            try:
                self._write_index()
                break
            except OSError:
                if not self._index:
                    break
                last = max(self._index, key=lambda k: self._index[k][0])
                with contextlib.suppress(OSError):
                    out.truncate(self._index.pop(last)[0])
        raise CacheFull(
            errno.ENOSPC,
            f"the disk is full: {len(self._index)} images are cached in {self.folder}; "
            "free some space and resume the job",
        )

    def _flush(self, out: Any) -> None:
        """Pixels to disk first, then the index that names them (atomically)."""
        try:
            out.flush()
            os.fsync(out.fileno())
            self._write_index()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            self._full(out, self._end())

    def _write_index(self) -> None:
        size = self.pixels_path.stat().st_size
        live = {k: v for k, v in self._index.items() if v[0] + v[1] * v[2] * 3 <= size}
        self._index = live
        records = np.array(
            [(k.encode(), o, h, w) for k, (o, h, w) in live.items()], dtype=INDEX_DTYPE
        )
        tmp = self.index_path.with_name(f"index.{os.getpid()}.part.npy")
        try:
            np.save(tmp, records, allow_pickle=False)
            os.replace(tmp, self.index_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._pixels = None

    def _truncate_to_index(self) -> None:
        """A killed build leaves pixels no index entry names: cut them off."""
        if self.pixels_path.is_file() and self.pixels_path.stat().st_size > self._end():
            with open(self.pixels_path, "r+b") as fh:
                fh.truncate(self._end())

    # -- upkeep ---------------------------------------------------------------------------

    def stale(self, known: Iterable[str]) -> list[str]:
        """Cached ids that are no image of the library (any more)."""
        known_set = set(known)
        return [i for i in self._index if i not in known_set]

    def drop(self, image_ids: Iterable[str]) -> int:
        """Remove entries, rewriting the pixel file without them; returns how many."""
        gone = set(image_ids) & set(self._index)
        if not gone:
            return 0
        keep = [(i, self.get(i).copy()) for i in self._index if i not in gone]
        tmp = self.pixels_path.with_name("pixels.part.u8")
        with open(tmp, "wb") as out:
            index: dict[str, tuple[int, int, int]] = {}
            for image_id, view in keep:
                index[image_id] = (out.tell(), view.shape[0], view.shape[1])
                out.write(view.tobytes())
        self._pixels = None
        os.replace(tmp, self.pixels_path)
        self._index = index
        self._write_index()
        return len(gone)


def cache_sizes(root: Path) -> list[int]:
    """The sizes a library has caches of."""
    folder = Path(root) / CACHE_DIR
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """One builder at a time per cache folder, across processes: the ranks of a DDP job
    each open the cache, and two appending to one pixel file would interleave images.
    An advisory ``flock`` on POSIX; elsewhere (no DDP there) nothing to take."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / "build.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
