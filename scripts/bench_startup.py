"""CLI start-up: `dermdesk --version` and `dermdesk ls` against a bare interpreter, side by side.

    python scripts/bench_startup.py [--rounds 21] [--images 866]

Each round launches, in turn, a fresh process of: the baseline
``python -c "import numpy, PIL.Image, sqlite3"`` (what any dermdesk command must pay),
``dermdesk --version`` and ``dermdesk ls`` (a library of the reference images, idle:
nothing else running). Commands alternate within each round so drift in machine load
falls on all of them alike; the table gives the median wall time of each and its ratio
to the baseline's median. Goals (issue 12): --version <= 1.5x, ls <= 2.5x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _shared import SHARED_DATA  # noqa: E402

GOALS = {"dermdesk --version": 1.5, "dermdesk ls": 2.5}


def build_library(folder: Path, images: int) -> None:
    """A library of the first ``images`` reference images (no quality checks: ls does
    not need them, and building it is not what is measured)."""
    from dermdesk.exchange.datasets import plan_path
    from dermdesk.exchange.importer import run_import
    from dermdesk.library import Library

    items = []
    for name in ("pad_ufes_20", "ham10000", "fitzpatrick17k"):
        items += plan_path(SHARED_DATA / name).items
    with Library.open(folder, actor="bench") as lib:
        run_import(lib, items[:images], checks=False)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--images", type=int, default=866)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dermdesk-startup-"))
    try:
        library = work / "library"
        build_library(library, args.images)
        env = {**os.environ, "DERMDESK_HOME": str(library)}
        exe = sys.executable
        commands = {
            "baseline (import numpy, PIL.Image, sqlite3)": [
                exe,
                "-c",
                "import numpy, PIL.Image, sqlite3",
            ],
            "dermdesk --version": [exe, "-m", "dermdesk", "--version"],
            "dermdesk ls": [exe, "-m", "dermdesk", "ls"],
        }
        for argv in commands.values():  # warm the file cache once
            timed(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                times[name].append(timed(argv, env))
        base = statistics.median(next(iter(times.values())))
        print(f"{args.rounds} rounds, library of {args.images} images, medians:")
        print(f"{'command':<46} {'ms':>7} {'x baseline':>11}  goal")
        for name, values in times.items():
            median = statistics.median(values)
            goal = GOALS.get(name)
            verdict = (
                ""
                if goal is None
                else f"<= {goal}x: {'met' if median / base <= goal else 'NOT met'}"
            )
            print(f"{name:<46} {1000 * median:>7.1f} {median / base:>10.2f}x  {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
