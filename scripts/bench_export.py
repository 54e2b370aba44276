"""Benchmark: the de-identified export against a plain copy of the same bytes, side by side.

    python scripts/bench_export.py [--library DIR] [--rounds 3]

On the real images of ../shared/data (PAD-UFES-20, Fitzpatrick17k and PH2, imported into a
throw-away library unless --library names one), per round:

(a) copy: ``shutil.copyfile`` of every original into a fresh folder (the floor: read and
    write the bytes, nothing else);
(b) export isic: the whole ``write_export`` (JPEG metadata cut from the byte stream,
    hashes, metadata.csv, data card with charts, dataset.json, manifest, rename);
(c) export imagefolder, the same with split folders.

Goal (issue 16): (b) within 3x of (a). Rounds alternate the three so machine drift falls on
all; the table gives medians. The page cache is warm for all three after the first round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _shared import SHARED_DATA

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.export import ExportOptions, plan_export, write_export
from dermdesk.exchange.importer import run_import
from dermdesk.library import Library

DATASETS = ("pad_ufes_20", "fitzpatrick17k", "ph2")


def build_library(folder: Path) -> Library:
    lib = Library.open(folder, actor="bench")
    items = [it for name in DATASETS for it in plan_path(SHARED_DATA / name).items]
    report = run_import(lib, items)
    print(f"library: {len(report.added)} images imported from {', '.join(DATASETS)}")
    return lib


def plain_copy(lib: Library, out: Path) -> int:
    out.mkdir()
    total = 0
    for row in lib.images(order="id"):
        src = lib.original_path(row)
        shutil.copyfile(src, out / src.name)
        total += row["bytes"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        work = Path(tmp)
        lib = Library.open(args.library) if args.library else build_library(work / "lib")
        n = lib.count()
        source_bytes = sum(r["bytes"] for r in lib.images())
        plans = {fmt: plan_export(lib, ExportOptions(fmt)) for fmt in ("isic", "imagefolder")}
        times: dict[str, list[float]] = {"copy": [], "isic": [], "imagefolder": []}
        written: dict[str, int] = {}
        for r in range(args.rounds):
            for name in times:
                out = work / f"{name}-{r}"
                start = time.perf_counter()
                if name == "copy":
                    written[name] = plain_copy(lib, out)
                else:
                    written[name] = write_export(lib, plans[name], out).bytes
                times[name].append(time.perf_counter() - start)
                shutil.rmtree(out)
        lib.close()
    copy = statistics.median(times["copy"])
    print(f"\n{n} images, {source_bytes / 1e6:.1f} MB of originals; median of {args.rounds} rounds")
    print(f"{'':<22}{'seconds':>9}{'images/s':>10}{'MB/s':>8}{'x copy':>8}")
    for name, label in (
        ("copy", "(a) plain copy"),
        ("isic", "(b) export isic"),
        ("imagefolder", "(c) export imagefolder"),
    ):
        t = statistics.median(times[name])
        print(f"{label:<22}{t:>9.2f}{n / t:>10.0f}{written[name] / 1e6 / t:>8.1f}{t / copy:>8.2f}")


if __name__ == "__main__":
    main()
