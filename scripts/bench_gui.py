"""GUI responsiveness: cold start, first gallery page, and GUI-thread stalls.

    python scripts/bench_gui.py [--data ../shared/data] [--keep DIR] [--quick]

What it measures (offscreen Qt platform, this machine's CPU):
1. cold start: a fresh interpreter opens a 10,000-image library and shows the
   main window; time from process launch to the window shown, to the first
   painted gallery page (tiles drawn) and to the first page with all its
   thumbnails; and whether torch got imported (it must not).
2. the longest GUI-thread stall while importing 500 real images through the
   import dialog's task, and while scrolling the gallery of a 100,000-image
   library from top to bottom, a few pages per frame. Stalls are measured by
   an event-loop latency probe: a 5 ms QTimer records the gaps between its
   ticks; a gap of 5 ms + X means the GUI thread could not run for X ms.

How the big libraries are made (honestly): the 866 reference images of
../shared/data are imported for real; then rows are cloned through the
library's writer API (``Library.add_images``, with audit entries) under new
synthetic ids, each pointing at a real original and a hard link of its real
thumbnail, with its label and skin type copied. Every clone gets a quality
row (plain SQL, the current checker version, verdicts cycling pass / pass /
warn / fail) so the gallery's quality badges cost what they will cost, and the
window finds nothing stale to re-check in the background. Clones are ``source='import'``;
nothing distinguishes them from real rows for the GUI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _shared import import_datasets  # noqa: E402

from dermdesk.imaging.quality_config import CHECKER_VERSION  # noqa: E402
from dermdesk.library import Library  # noqa: E402
from dermdesk.library.library import now  # noqa: E402
from dermdesk.library.records import (  # noqa: E402
    ImageRecord,
    LabelIn,
    PatientRef,
    SkinToneIn,
    StoredFile,
)

REFERENCE = ("pad_ufes_20", "ham10000", "fitzpatrick17k")


# -- building libraries ----------------------------------------------------------------------


def import_reference(folder: Path, data: Path) -> None:
    with Library.open(folder, actor="bench") as lib:
        report = import_datasets(lib, data, REFERENCE)
    print(f"  reference import: {report.summary()}")


def clone_to(lib: Library, total: int, batch: int = 2000) -> None:
    """Add clones of the library's rows until it holds ``total`` images (see module doc)."""
    rows = lib.images(order="id")
    base = len(rows)
    records, quality = [], []
    for i in range(lib.count(), total):
        src = rows[i % base]
        generation = i // base
        sha = hashlib.sha256(f"{src['id']}:{generation}:{i}".encode()).hexdigest()
        thumb = lib.thumbnail_path(sha)
        thumb.parent.mkdir(parents=True, exist_ok=True)
        if not thumb.exists():
            os.link(lib.thumbnail_path(src["id"]), thumb)
        stored = StoredFile(
            sha, src["file"], src["format"], src["width"], src["height"], src["bytes"], src["mode"]
        )
        tones = (
            [SkinToneIn(fitzpatrick=src["fitzpatrick"], monk=src["monk"], rater="bench")]
            if src["fitzpatrick"]
            else []
        )
        records.append(
            ImageRecord(
                stored=stored,
                modality=src["modality"],
                dataset=src["dataset"],
                label=LabelIn(src["diagnosis"], "unknown", "bench") if src["diagnosis"] else None,
                skin_tones=tones,
                patient=PatientRef("bench", f"{src['patient_id']}-{generation}")
                if src["patient_id"]
                else None,
            )
        )
        verdict = ("pass", "pass", "warn", "fail")[i % 4]
        quality.append(
            (sha, "sharpness", 50.0, verdict, f"bench {verdict}", CHECKER_VERSION, now())
        )
        if len(records) >= batch:
            lib.add_images(records)
            records.clear()
    if records:
        lib.add_images(records)
    lib.conn.executemany("INSERT OR REPLACE INTO quality VALUES (?, ?, ?, ?, ?, ?, ?)", quality)


def make_libraries(work: Path, data: Path, sizes: list[int]) -> dict[int, Path]:
    reference = work / "reference"
    t = time.perf_counter()
    import_reference(reference, data)
    out = {}
    for size in sizes:
        folder = work / f"lib{size}"
        shutil.copytree(reference, folder, copy_function=os.link)  # originals and thumbs shared
        (folder / "library.sqlite").unlink()
        shutil.copy(reference / "library.sqlite", folder / "library.sqlite")
        with Library.open(folder, actor="bench") as lib:
            clone_to(lib, size)
            print(f"  {folder.name}: {lib.count():,} images")
        out[size] = folder
    print(f"  libraries ready in {time.perf_counter() - t:.0f} s")
    return out


# -- 1. cold start (a fresh interpreter) -----------------------------------------------------

CHILD = r"""
import os, sys, time, json
T0 = float(os.environ["BENCH_T0"])
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, os.environ["BENCH_ROOT"])
from PySide6.QtCore import QEvent, QObject, QSettings
from dermdesk.gui.app import make_app
from dermdesk.gui.gallery_model import ThumbRole
from dermdesk.gui.main_window import MainWindow
from dermdesk.gui.settings import Settings
from dermdesk.library import Library
marks = {}
class Painted(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            view = window.gallery
            rows = view._visible_rows()
            if rows and "first_page" not in marks:
                marks["first_page"] = time.time() - T0
            cache = window.gallery_model.thumbs._cache
            model = window.gallery_model
            if rows and "thumbs" not in marks and all(
                cache.get(model.tile(r).id) is not None for r in rows
            ):
                marks["thumbs"] = time.time() - T0
        return False
app = make_app([])
lib = Library.open(sys.argv[1])
window = MainWindow(lib, Settings(QSettings(sys.argv[2], QSettings.Format.IniFormat)))
painted = Painted()  # keep a reference: a collected filter stops filtering
window.gallery.viewport().installEventFilter(painted)
window.show()
app.processEvents()
marks["shown"] = time.time() - T0
deadline = time.time() + 30
while "thumbs" not in marks and time.time() < deadline:
    app.processEvents()
    time.sleep(0.002)
marks["torch"] = "torch" in sys.modules
print(json.dumps(marks))
window.close()
"""


def cold_start(library: Path, runs: int) -> list[dict[str, float]]:
    results = []
    for i in range(runs):
        settings = Path(tempfile.mkdtemp()) / "s.ini"
        env = {**os.environ, "BENCH_ROOT": str(ROOT), "BENCH_T0": str(time.time())}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(library), str(settings)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  run {i + 1}: {results[-1]}")
    return results


# -- 2. stalls (in this process) -------------------------------------------------------------


class LatencyProbe:
    """Records the gaps between ticks of a 5 ms timer on the GUI thread."""

    def __init__(self, interval_ms: int = 5) -> None:
        from PySide6.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.gaps: list[float] = []
        self.last = time.perf_counter()
        self.timer = QTimer(interval=interval_ms)
        self.timer.timeout.connect(self.tick)

    def start(self) -> None:
        self.last = time.perf_counter()
        self.gaps.clear()
        self.timer.start()

    def tick(self) -> None:
        t = time.perf_counter()
        self.gaps.append(t - self.last)
        self.last = t

    def stop(self) -> dict[str, float]:
        self.timer.stop()
        stalls = sorted(max(0.0, g - self.interval) * 1000 for g in self.gaps)
        return {
            "ticks": len(stalls),
            "max_stall_ms": round(stalls[-1], 1) if stalls else 0.0,
            "p99_stall_ms": round(stalls[int(len(stalls) * 0.99) - 1], 1) if stalls else 0.0,
            "median_stall_ms": round(statistics.median(stalls), 1) if stalls else 0.0,
            "stalls_over_50ms": sum(1 for s in stalls if s > 50),
            "stalls_over_100ms": sum(1 for s in stalls if s > 100),
        }


def open_window(library: Path, work: Path) -> tuple[object, object, object]:
    from PySide6.QtCore import QSettings

    import dermdesk.gui  # noqa: F401
    from dermdesk.gui.app import freeze_startup_heap, make_app
    from dermdesk.gui.main_window import MainWindow
    from dermdesk.gui.settings import Settings

    app = make_app([])
    lib = Library.open(library, actor="bench")
    window = MainWindow(
        lib, Settings(QSettings(str(work / f"{library.name}.ini"), QSettings.Format.IniFormat))
    )
    window.resize(1280, 800)
    window.show()
    freeze_startup_heap()  # as dermdesk.gui.app.run does
    wait(app, 30, lambda: window.gallery_model.rowCount() > 0)
    wait(app, 2)
    return app, window, lib


def wait(app: object, seconds: float, until: object = None) -> bool:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()  # type: ignore[attr-defined]
        if until is not None and until():  # type: ignore[operator]
            return True
        time.sleep(0.001)
    return False


def import_stall(library: Path, data: Path, work: Path, count: int) -> dict[str, float]:
    folder = work / "to_import"
    folder.mkdir(exist_ok=True)
    for src in sorted((data / "fitzpatrick17k_more" / "images").glob("*.jpg"))[:count]:
        shutil.copy(src, folder / src.name)
    app, window, lib = open_window(library, work)
    probe = LatencyProbe()
    probe.start()
    t = time.perf_counter()
    dialog = window.open_import([folder], start=True)  # type: ignore[attr-defined]
    wait(app, 300, lambda: dialog.report is not None)
    wait(app, 1.0)  # the gallery reload and repaint after the import
    result = probe.stop()
    result["seconds"] = round(time.perf_counter() - t, 1)
    result["added"] = len(dialog.report.added)
    window.close()  # type: ignore[attr-defined]
    lib.close()
    return result


def scroll_stall(library: Path, work: Path, pages_per_frame: int) -> dict[str, float]:
    from PySide6.QtCore import QTimer

    app, window, lib = open_window(library, work)
    model, bar = window.gallery_model, window.gallery.verticalScrollBar()  # type: ignore[attr-defined]
    state = {"frames": 0, "done": False}

    def frame() -> None:
        state["frames"] += 1
        bar.setValue(bar.value() + pages_per_frame * bar.pageStep())
        if model.rowCount() == model.total and bar.value() >= bar.maximum():
            state["done"] = True

    ticker = QTimer(interval=16)  # ~60 scroll steps a second, like a held Page Down
    ticker.timeout.connect(frame)
    probe = LatencyProbe()
    probe.start()
    t = time.perf_counter()
    ticker.start()
    wait(app, 900, lambda: state["done"])
    ticker.stop()
    result = probe.stop()
    result["seconds"] = round(time.perf_counter() - t, 1)
    result["frames"] = state["frames"]
    result["rows"] = model.rowCount()
    window.close()  # type: ignore[attr-defined]
    lib.close()
    return result


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--keep", type=Path, help="build libraries here and keep them")
    parser.add_argument(
        "--quick", action="store_true", help="20,000 instead of 100,000 for the scroll"
    )
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dermdesk-bench-gui-"))
    work.mkdir(parents=True, exist_ok=True)
    big = 20_000 if args.quick else 100_000
    print(f"building libraries in {work}")
    libs = make_libraries(work, args.data, [10_000, big])

    print("\n1. cold start, 10,000-image library (3 fresh interpreters)")
    runs = cold_start(libs[10_000], 3)
    print("\n2a. GUI-thread stalls while importing 500 images (10,000-image library)")
    imp = import_stall(libs[10_000], args.data, work, 500)
    print(f"  {imp}")
    print(f"\n2b. GUI-thread stalls while scrolling {big:,} images top to bottom (3 pages a frame)")
    scr = scroll_stall(libs[big], work, 3)
    print(f"  {scr}")

    keys = ("shown", "first_page", "thumbs")
    median = {k: statistics.median(r.get(k, float("nan")) for r in runs) for k in keys}
    rows = [
        (
            "cold start to shown window, 10k library (median of 3)",
            f"{median['shown']:.2f} s",
            "< 2 s",
        ),
        ("... to first painted gallery page", f"{median['first_page']:.2f} s", ""),
        ("... to first page with all its thumbnails", f"{median['thumbs']:.2f} s", ""),
        ("torch imported at start-up", str(any(r["torch"] for r in runs)), "False"),
        (
            f"longest stall, importing {imp['added']} images ({imp['seconds']} s)",
            f"{imp['max_stall_ms']} ms (p99 {imp['p99_stall_ms']} ms)",
            "< 100 ms",
        ),
        (
            f"longest stall, scrolling {scr['rows']:,} images "
            f"({scr['frames']} frames, {scr['seconds']} s)",
            f"{scr['max_stall_ms']} ms (p99 {scr['p99_stall_ms']} ms)",
            "< 100 ms",
        ),
    ]
    print("\n| measure | result | goal |\n|---|---|---|")
    for measure, result, goal in rows:
        print(f"| {measure} | {result} | {goal} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
