"""The training-image cache: decoded once, exactly what inference sees, never stale."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dermdesk.inference.preprocess import PreprocessSpec, eval_view, load_rgb
from dermdesk.ml.image_cache import CacheFull, TrainCache, cache_sizes


@pytest.fixture
def photos(shared_data: Path) -> list[tuple[str, Path]]:
    import hashlib

    files = sorted((shared_data / "ham10000" / "images").glob("*.jpg"))[:6]
    files += sorted((shared_data / "pad_ufes_20" / "images").glob("*.jpg"))[:6]
    return [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p in files]


def test_cached_views_are_the_inference_views_pixel_for_pixel(
    tmp_path: Path, photos: list[tuple[str, Path]]
) -> None:
    spec = PreprocessSpec(size=112)
    cache = TrainCache(tmp_path, spec.resize_to)
    report = cache.ensure(photos)
    assert report.cached == len(photos) and not report.failed
    from dermdesk.inference.preprocess import center_crop

    for image_id, path in photos:
        view = cache.get(image_id)
        assert min(view.shape[:2]) == spec.resize_to
        assert np.array_equal(center_crop(view, spec.size), eval_view(load_rgb(path, spec), spec))
    again = TrainCache(tmp_path, spec.resize_to).ensure(photos)  # a new process, say
    assert again.cached == 0 and again.present == len(photos)
    assert cache_sizes(tmp_path) == [128]


def test_a_killed_build_is_cut_back_and_completed(
    tmp_path: Path, photos: list[tuple[str, Path]]
) -> None:
    cache = TrainCache(tmp_path, 64)
    cache.ensure(photos[:6])
    with open(cache.pixels_path, "ab") as fh:  # pixels written, index never updated
        fh.write(b"\x01" * 5000)
    fresh = TrainCache(tmp_path, 64)
    assert len(fresh) == 6
    report = fresh.ensure(photos)
    assert report.cached == 6 and report.present == 6
    assert fresh.pixels_path.stat().st_size == sum(
        fresh.get(i).nbytes for i, _ in photos
    )  # the stray bytes are gone


def test_unreadable_originals_are_reported_and_stale_entries_dropped(
    tmp_path: Path, photos: list[tuple[str, Path]]
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    cache = TrainCache(tmp_path, 64)
    report = cache.ensure([*photos[:3], ("f" * 64, broken)])
    assert report.cached == 3 and report.failed[0][0] == "f" * 64
    keep = photos[0][0]
    assert sorted(cache.stale([keep])) == sorted(i for i, _ in photos[1:3])
    before = cache.get(keep).copy()
    assert cache.drop(cache.stale([keep])) == 2
    again = TrainCache(tmp_path, 64)
    assert again.ids() == [keep] and np.array_equal(again.get(keep), before)


def test_verify_reports_and_repair_drops_entries_of_removed_images(
    lib: object, photos: list[tuple[str, Path]]
) -> None:
    from dermdesk.library import Library
    from dermdesk.library.verify import verify

    assert isinstance(lib, Library)
    TrainCache(lib.root, 64).ensure(photos[:2])  # images this library never had
    assert any("2 training-cache entries" in w for w in verify(lib, checksums=False).warnings)
    assert any("dropped 2 cache entries" in r for r in verify(lib, repair=True).repaired)
    assert verify(lib, checksums=False).warnings == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX")
def test_a_full_disk_while_caching_keeps_what_fitted(
    tmp_path: Path, photos: list[tuple[str, Path]]
) -> None:
    import sys

    from tests.helpers import in_private_mounts

    listing = tmp_path / "photos.txt"
    listing.write_text("\n".join(f"{i} {p}" for i, p in photos))
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    script = (
        "from pathlib import Path\n"
        "from dermdesk.ml.image_cache import CacheFull, TrainCache\n"
        f"lines = Path({str(listing)!r}).read_text().splitlines()\n"
        "items = [(i, Path(p)) for i, p in (line.split(' ', 1) for line in lines)]\n"
        f"cache = TrainCache(Path({str(mnt)!r}), 256)\n"
        "try:\n    cache.ensure(items)\n    print('NOT FULL')\n"
        "except CacheFull as exc:\n    print('FULL', exc)\n"
        f"print('KEPT', len(TrainCache(Path({str(mnt)!r}), 256)))\n"
    )
    proc = in_private_mounts(
        f'mount -t tmpfs -o size=1m tmpfs {mnt} || exit 77\n{sys.executable} -c "{script}"\n'
    )
    out = proc.stdout
    assert "FULL the disk is full" in out and "free some space and resume" in out, proc.stderr
    kept = int(out.split("KEPT ")[1].split()[0])
    assert 0 < kept < len(photos)
    assert CacheFull.__str__  # the message is the sentence, without an errno prefix


def _build_in_process(folder: str, items: list[tuple[str, str]]) -> int:
    """A spawned process (a DDP rank, say) building the cache (module level: picklable)."""
    from dermdesk.ml.image_cache import TrainCache as Cache

    return Cache(Path(folder), 64).ensure([(i, Path(p)) for i, p in items]).cached


def test_two_processes_building_one_cache_leave_it_consistent(
    tmp_path: Path, photos: list[tuple[str, Path]]
) -> None:
    import multiprocessing as mp

    items = [(i, str(p)) for i, p in photos]
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        cached = pool.starmap(_build_in_process, [(str(tmp_path), items)] * 2)
    assert sum(cached) == len(photos)  # one built it, the other found it built
    shared = TrainCache(tmp_path, 64)
    alone = TrainCache(tmp_path / "alone", 64)
    alone.ensure(photos)
    for image_id, _ in photos:
        assert np.array_equal(shared.get(image_id), alone.get(image_id))
    assert not list(tmp_path.glob("**/*.part.npy"))
