"""Benchmark: importing real images vs bare decoding, full-scale import, listing speed.

    python scripts/bench_import.py [--data ../shared/data] [--rows 100000]

1. The 866 reference images (manifest.csv) into a fresh library (hash, EXIF,
   DCT-scaled decode, thumbnail, rows), and in the same run a bare Pillow
   open+load of the same files; prints both and the ratio (goal <= 1.5x), the
   median of several alternating rounds. Where /dev/shm exists, each round also
   imports with the library in memory, which separates the code's own cost from
   the disk's (file creation on the CI VM's disk costs 0.03-0.7 ms of kernel
   time per file, depending on how recently files were deleted).
2. All 6,237 images (both manifests): images/s and library size on disk.
3. A library of N synthetic rows: filtered listing latency (goal < 50 ms).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import ImageFilter, Library
from dermdesk.library.records import ImageRecord, LabelIn, SkinToneIn, StoredFile

RAM_DISK = Path("/dev/shm")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def manifest_files(data: Path, name: str) -> list[Path]:
    with open(data / name, newline="") as fh:
        return [data / row["file"] for row in csv.DictReader(fh)]


def bare_decode(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        with Image.open(path) as img:
            img.load()
    return time.perf_counter() - start


def settle_disk() -> None:
    """Flush earlier writes first, so one contender does not pay for another's (on this
    VM, file creation right after a large write or delete is several times slower)."""
    os.sync()
    time.sleep(2.0)


def timed_import(
    data: Path, folders: list[str], workdir: Path, checks: bool = True
) -> tuple[float, Library, int]:
    items = []
    for folder in folders:
        items += plan_path(data / folder).items
    lib = Library.open(workdir, actor="bench")
    settle_disk()
    start = time.perf_counter()
    report = run_import(lib, items, checks=checks)
    elapsed = time.perf_counter() - start
    assert not report.refused, report.refused[:3]
    return elapsed, lib, len(report.added)


def folder_size(folder: Path) -> int:
    """Bytes on disk, counting a hard-linked file (a small JPEG's thumbnail) once."""
    seen = {}
    for p in folder.rglob("*"):
        if p.is_file():
            st = p.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def reference_import(data: Path, tmp: Path, rounds: int) -> None:
    files = manifest_files(data, "manifest.csv")
    bare_decode(files[:50])  # warm the page cache for both contenders alike
    folders = ["pad_ufes_20", "ham10000", "fitzpatrick17k"]
    decode, disk, ram = [], [], []
    added = 0
    # Rounds alternate the contenders, and every library is kept until the end:
    # deleting files makes this VM's next file creations several times slower.
    with tempfile.TemporaryDirectory(dir=RAM_DISK if RAM_DISK.is_dir() else tmp) as ram_dir:
        for r in range(rounds):
            settle_disk()
            decode.append(bare_decode(files))
            elapsed, lib, added = timed_import(data, folders, tmp / f"ref-plain-{r}", checks=False)
            disk.append(elapsed)
            lib.close()
            if RAM_DISK.is_dir():  # the same import with the library in memory: our own cost
                elapsed, lib, _ = timed_import(data, folders, Path(ram_dir) / f"{r}", checks=False)
                ram.append(elapsed)
                lib.close()
    checked_s, lib, _ = timed_import(data, folders, tmp / "ref-checked", checks=True)
    lib.close()
    decode_s = statistics.median(decode)

    def row(name: str, times: list[float], note: str = "") -> None:
        t = statistics.median(times)
        spread = f"  [{min(times):.2f}-{max(times):.2f}]" if len(times) > 1 else ""
        print(
            f"{name:35s}: {t:6.2f} s  ({added / t:5.0f} img/s)  = {t / decode_s:5.2f}x decode"
            f"{note}{spread}"
        )

    print(f"## 1. Reference set: {len(files)} images, {os.cpu_count()} cores, median of {rounds}")
    print(
        f"{'bare Pillow open+load, serial':35s}: {decode_s:6.2f} s  "
        f"({len(files) / decode_s:5.0f} img/s)  [{min(decode):.2f}-{max(decode):.2f}]"
    )
    row("import: hash, EXIF, thumbnail, rows", disk, " (goal <= 1.5x)")
    if ram:
        row(f"  the same, library on {RAM_DISK}", ram, " (no disk: the code's own cost)")
    row("import + quality checks (default)", [checked_s])
    print()


def full_import(data: Path, tmp: Path, skip_checks: bool) -> None:
    folders = sorted(
        {
            f.relative_to(data).parts[0]
            for n in ("manifest.csv", "manifest_extra.csv")
            for f in manifest_files(data, n)
        }
    )
    source_bytes = sum(
        p.stat().st_size
        for n in ("manifest.csv", "manifest_extra.csv")
        for p in manifest_files(data, n)
    )
    import_s, lib, added = timed_import(data, folders, tmp / "full", checks=not skip_checks)
    size = folder_size(lib.root)
    lib.close()
    how = "without checks" if skip_checks else "with quality checks"
    print(
        f"## 2. All images ({how}): {added} imported in {import_s:.1f} s = "
        f"{added / import_s:.0f} img/s"
    )
    print(
        f"source files {source_bytes / 1e6:.0f} MB; library on disk {size / 1e6:.0f} MB "
        f"(originals + thumbnails + database)\n"
    )


def synthetic_rows(lib: Library, n: int) -> None:
    rng = random.Random(0)
    codes = ["MEL", "NEV", "BCC", "SCC", "ACK", "SEK", "DF", "VASC", "OTHER"]
    makes = [("Apple", "iPhone 13"), ("Samsung", "SM-G991B"), ("Canon", "EOS 80D"), (None, None)]
    batch = []
    for i in range(n):
        make, model = rng.choice(makes)
        stored = StoredFile(
            sha256=f"{i:064x}",
            file=f"originals/{i:064x}.jpg",
            format="JPEG",
            width=1024,
            height=768,
            bytes=200_000,
            mode="RGB",
            device={"device_make": make, "device_model": model},
        )
        batch.append(
            ImageRecord(
                stored=stored,
                modality=rng.choice(["clinical", "dermoscopic"]),
                dataset="synthetic-bench",
                original_name=f"IMG_{i:06d}.jpg",
                label=LabelIn(rng.choice(codes)) if i % 5 else None,
                skin_tones=[SkinToneIn(fitzpatrick=rng.randint(1, 6))] if i % 3 else [],
            )
        )
        if len(batch) == 5000:
            lib.add_images(batch)
            batch.clear()
    if batch:
        lib.add_images(batch)


def listing(tmp: Path, n: int) -> None:
    lib = Library.open(tmp / "rows", actor="bench")
    start = time.perf_counter()
    synthetic_rows(lib, n)
    build_s = time.perf_counter() - start
    queries = {
        "first page, no filter": ImageFilter(),
        "MEL on Fitzpatrick V-VI": ImageFilter(diagnosis=["MEL"], fitzpatrick=[5, 6]),
        "clinical, iPhone, unlabelled": ImageFilter(
            modality=["clinical"], device="iPhone", labelled=False
        ),
        "free text: file-name substring": ImageFilter(text="G_0421"),
        "free text: id prefix": ImageFilter(text=f"{4321:064x}"[:62]),
        "quality = unchecked": ImageFilter(quality="unchecked", diagnosis=["NEV"]),
    }
    print(f"## 3. Filtered listing on {n} rows (built in {build_s:.0f} s); page of 200 + count")
    for name, flt in queries.items():
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            rows = lib.images(flt, limit=200)
            total = lib.count(flt)
            times.append((time.perf_counter() - t0) * 1000)
        print(
            f"{name:32s}: median {statistics.median(times):6.1f} ms, max {max(times):6.1f} ms "
            f"({len(rows)} rows of {total})"
        )
    lib.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="import rounds (medians)")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--full-without-checks", action="store_true")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path.home() / ".cache",
        help="where the scratch libraries go (default ~/.cache: the disk a user library "
        "lives on; /tmp on the CI VM creates files ~7x slower than the same disk elsewhere)",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="dermdesk-bench-", dir=args.workdir))
    print(f"scratch libraries in {tmp}")
    try:
        reference_import(args.data, tmp, args.rounds)
        if not args.skip_full:
            full_import(args.data, tmp, args.full_without_checks)
        listing(tmp, args.rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
