"""Reproduce a recorded study from a fresh library: a thin wrapper over the CLI.

    python scripts/reproduce.py gap|imbalance --profile cpu [--library DIR] [--data ../shared/data]
        [--seeds 3] [--arch resnet18] [--size 112] [--set KEY=VALUE ...] [--out gap-cpu.md]

Imports the shared data into the library (a new temporary one unless ``--library``
names one; images already there are skipped), runs ``dermdesk experiment run STUDY``
(each run a job, resumable: run the same command again after an interruption with
``--library`` and ``dermdesk experiment resume N``), then writes the tables with
``dermdesk experiment export`` and prints the total wall time. Everything it does is
what a user can type; it only saves the typing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dermdesk(library: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one dermdesk command on the library, its output passed through."""
    cmd = [sys.executable, "-m", "dermdesk", "--library", str(library), *args]
    print("$ dermdesk " + " ".join(args), flush=True)
    return subprocess.run(cmd, check=False, text=True, stdout=subprocess.PIPE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", choices=["gap", "imbalance"])
    ap.add_argument("--profile", default="smoke", choices=["smoke", "cpu", "full"])
    ap.add_argument("--library", type=Path, help="library folder (default: a new temporary one)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--arch")
    ap.add_argument("--size", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe value")
    ap.add_argument("--out", type=Path, help="write the Markdown tables here too")
    args = ap.parse_args()
    library = args.library or Path(tempfile.mkdtemp(prefix="dermdesk-reproduce-")) / "library"
    started = time.perf_counter()
    imported = dermdesk(library, "import", str(args.data), "--quiet")
    sys.stdout.write(imported.stdout)
    if imported.returncode not in (0, 1):  # 1: some files refused, the rest imported
        return imported.returncode
    extra = [
        f"--{name}={value}"
        for name, value in (("seeds", args.seeds), ("arch", args.arch), ("size", args.size))
        if value is not None
    ] + [f"--set={pair}" for pair in args.set]
    ran = dermdesk(library, "experiment", "run", args.study, "--profile", args.profile, *extra)
    sys.stdout.write(ran.stdout)
    if ran.returncode != 0:
        print(f"the experiment stopped (exit {ran.returncode}); library kept at {library}")
        return ran.returncode
    listed = dermdesk(library, "experiment", "list").stdout.splitlines()
    exp_id = next(
        line.split()[0] for line in listed[1:] if line.strip() and line.split()[0].isdigit()
    )
    if args.out:
        dermdesk(library, "experiment", "export", exp_id, "--format", "md", "--out", str(args.out))
    print(f"library {library}; total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
