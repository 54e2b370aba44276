"""GUI responsiveness on a large library, side by side with a bare QListView, in one run.

    python scripts/bench_gui.py [--data ../shared/data] [--keep DIR] [--quick] [--profile]

Issue 19's goals, each measured on the dermdesk window and, with the same probe, on a
bare ``QListView`` (a grid of the same number of items and tile size, one line of text
each, in a ``QTabWidget`` of empty tabs):

1. cold start: a fresh interpreter opens the library and shows the window; time from
   process launch to the window shown, to the first painted gallery page and to the
   first page with all its thumbnails (goal: first painted page < 1.5 s); whether torch
   got imported (it must not).
2. the longest GUI-thread stall (goal: none > 50 ms) while
   - scrolling from top to bottom, three pages a 16 ms frame (rows page in as it goes);
   - flinging: twelve frames of one page each from a random place, then stopping;
   - stepping with ``J`` (40 presses, 40 ms apart, like a held key) and then ``K``;
   - labelling: ``1`` (the first number key) then ``J``, twenty images;
   - opening each tab (Dashboard, Models, Experiments, Library) twice, after an edit
     made the dashboard stale, until its results are shown.
3. after each fling, the time from the last scroll step to the first paint that draws
   every visible tile with its thumbnail (goal: < 150 ms); the bare list has no
   thumbnails, so its figure is the time to its first paint after the stop.
4. importing 500 real images through the import dialog's task (dermdesk only), on a copy.

Stalls are measured by an event-loop latency probe: a 5 ms QTimer records the gaps
between its ticks; a gap of 5 ms + X means the GUI thread could not run for X ms.
``--profile`` also samples the GUI thread's Python stack whenever it has not ticked for
20 ms (a watchdog thread, ``sys._current_frames``), prints where the stalls were and
runs one more cold start under cProfile; ``--cprofile`` also runs each dermdesk
scenario under cProfile (the GUI thread only). Profiling slows the app, so take
figures from a run without either. Every scenario reports its longest garbage
collection (``gc.callbacks``).

How the big library is made (honestly): the 866 reference images of ../shared/data are
imported for real; then rows are cloned through the library's writer API
(``Library.add_images``, with audit entries) under new synthetic ids, each pointing at a
real original and a hard link of its real thumbnail, with its label and skin type
copied. Every clone gets a quality row (plain SQL, the current checker version,
verdicts cycling pass / pass / warn / fail) so the gallery's quality badges cost what
they will cost, and the window finds nothing stale to re-check in the background.
Clones are ``source='import'``; nothing distinguishes them from real rows for the GUI.
With ``--keep DIR`` libraries already built there are reused.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import hashlib
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
STALL_GOAL_MS = 50
FILL_GOAL_MS = 150
COLD_GOAL_S = 1.5
WINDOW = [1280, 800]  # the main window's size in the in-process scenarios (--window)
SAMPLE_AFTER_S = 0.02  # --profile: sample the GUI thread once it has not ticked for this


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


def make_library(work: Path, data: Path, size: int) -> Path:
    """``work/lib<size>``, built unless a finished one is there already."""
    folder = work / f"lib{size}"
    if (folder / ".bench-ready").exists():
        print(f"  {folder.name}: reused")
        return folder
    t = time.perf_counter()
    reference = work / "reference"
    if not (reference / ".bench-ready").exists():
        shutil.rmtree(reference, ignore_errors=True)
        import_reference(reference, data)
        (reference / ".bench-ready").touch()
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(reference, folder, copy_function=os.link)  # originals and thumbs shared
    (folder / "library.sqlite").unlink()
    shutil.copy(reference / "library.sqlite", folder / "library.sqlite")
    with Library.open(folder, actor="bench") as lib:
        clone_to(lib, size)
        print(f"  {folder.name}: {lib.count():,} images in {time.perf_counter() - t:.0f} s")
    (folder / ".bench-ready").touch()
    return folder


def migrated(folder: Path) -> Path:
    """Open once read-write, so a schema upgrade is not timed as a cold start."""
    Library.open(folder, actor="bench").close()
    return folder


def copy_library(folder: Path, dest: Path) -> Path:
    """A copy to change (files hard-linked, the database copied)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(folder, dest, copy_function=os.link)
    for name in ("library.sqlite", "library.sqlite-wal", "library.sqlite-shm", "audit-head.json"):
        if (dest / name).exists():
            (dest / name).unlink()
            shutil.copy(folder / name, dest / name)
    return dest


# -- 1. cold start (fresh interpreters) ------------------------------------------------------

CHILD_COMMON = r"""
import os, sys, time, json
T0 = float(os.environ["BENCH_T0"])
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, os.environ["BENCH_ROOT"])
marks = {}
def mark(name):
    marks.setdefault(name, round(time.time() - T0, 3))
"""

CHILD_DERMDESK = r"""
from PySide6.QtCore import QEvent, QObject, QSettings
from dermdesk.gui.app import freeze_startup_heap, make_app
from dermdesk.gui.library_actions import open_library_folder
from dermdesk.gui.main_window import MainWindow
from dermdesk.gui.settings import Settings
from dermdesk.gui.theme import apply_theme
from pathlib import Path
mark("imported")
class Painted(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            rows = window.gallery._visible_rows()
            if rows:
                mark("first_page")
                model, thumbs = window.gallery_model, window.gallery_model.thumbs
                if all(thumbs._cache.get(model.tile(r).id) is not None for r in rows):
                    mark("thumbs")
        return False
app = make_app([])
settings = Settings(QSettings(sys.argv[2], QSettings.Format.IniFormat))
apply_theme(app, settings.theme)
lib = open_library_folder(Path(sys.argv[1]))
mark("library")
window = MainWindow(lib, settings)
mark("window")
painted = Painted()  # keep a reference: a collected filter stops filtering
window.gallery.viewport().installEventFilter(painted)
window.show()
freeze_startup_heap()
mark("shown")
deadline = time.time() + 30
while "thumbs" not in marks and time.time() < deadline:
    app.processEvents()
    time.sleep(0.001)
marks["torch"] = "torch" in sys.modules
print(json.dumps(marks))
window.close()
"""

CHILD_BARE = r"""
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication
mark("imported")
class Painted(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            mark("first_page")
            mark("thumbs")
        return False
app = QApplication([])
window = BareWindow(int(sys.argv[1]))
mark("library")
mark("window")
painted = Painted()
window.view.viewport().installEventFilter(painted)
window.show()
mark("shown")
deadline = time.time() + 30
while "first_page" not in marks and time.time() < deadline:
    app.processEvents()
    time.sleep(0.001)
marks["torch"] = "torch" in sys.modules
print(json.dumps(marks))
window.close()
"""

CHILD_PROFILE = r"""
import cProfile, pstats, io, atexit
_prof = cProfile.Profile()
_prof.enable()
def _dump():
    _prof.disable()
    out = io.StringIO()
    pstats.Stats(_prof, stream=out).sort_stats("cumulative").print_stats(35)
    sys.stderr.write(out.getvalue())
atexit.register(_dump)
"""


def cold_start(kind: str, arg: str, runs: int, profile: bool = False) -> list[dict[str, Any]]:
    """``runs`` fresh interpreters of ``kind`` ("dermdesk" or "bare"); marks in seconds."""
    body = CHILD_DERMDESK if kind == "dermdesk" else BARE_CODE + CHILD_BARE
    code = CHILD_COMMON + (CHILD_PROFILE if profile else "") + body
    results = []
    for _ in range(runs):
        settings = Path(tempfile.mkdtemp()) / "s.ini"
        env = {**os.environ, "BENCH_ROOT": str(ROOT), "BENCH_T0": str(time.time())}
        out = subprocess.run(
            [sys.executable, "-c", code, arg, str(settings)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if profile:
            print("\n".join(out.stderr.splitlines()[:60]))
    return results


# -- the probe and the stall sampler ---------------------------------------------------------


class LatencyProbe:
    """Records the gaps between ticks of a 5 ms timer on the GUI thread; with
    ``sample`` a watchdog thread grabs the GUI thread's stack while it is stalled."""

    def __init__(self, interval_ms: int = 5, sample: bool = False) -> None:
        from PySide6.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.gaps: list[float] = []
        self.cpu: list[float] = []  # the GUI thread's CPU time in each gap
        self.runqueue: list[float] = []  # and its time waiting for a CPU
        try:  # opened on the GUI thread: "thread-self" is the thread that opens it
            self._sched: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._sched = None
        self.last = time.perf_counter()
        self.last_cpu = time.thread_time()
        self.last_queued = self._queued()
        self.timer = QTimer(interval=interval_ms)
        self.timer.timeout.connect(self.tick)
        self.sample = sample
        self.samples: collections.Counter[str] = collections.Counter()
        self._running = False
        self._main = threading.main_thread().ident
        self._gc_start = 0.0
        self.gc_pauses: list[tuple[int, float]] = []  # (generation, ms) of each collection
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if not self._running:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            pause = (time.perf_counter() - self._gc_start) * 1e3
            self.gc_pauses.append((info["generation"], pause))

    def start(self) -> None:
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()
        self.last_queued = self._queued()
        self.gaps.clear()
        self.cpu.clear()
        self.runqueue.clear()
        self.gc_pauses.clear()
        self.timer.start()
        self._running = True
        if self.sample:
            threading.Thread(target=self._watch, daemon=True).start()

    def tick(self) -> None:
        t, cpu, queued = time.perf_counter(), time.thread_time(), self._queued()
        self.gaps.append(t - self.last)
        self.cpu.append(cpu - self.last_cpu)
        self.runqueue.append(queued - self.last_queued)
        self.last, self.last_cpu, self.last_queued = t, cpu, queued

    def _queued(self) -> float:
        """Seconds the GUI thread has spent runnable but waiting for a CPU (Linux)."""
        if self._sched is None:
            return 0.0
        return int(os.pread(self._sched, 100, 0).split()[1]) / 1e9

    def _watch(self) -> None:
        while self._running:
            time.sleep(0.01)
            if time.perf_counter() - self.last > SAMPLE_AFTER_S:
                frame = sys._current_frames().get(self._main or 0)
                if frame is not None:
                    self.samples[_where(frame)] += 1

    def stop(self) -> dict[str, Any]:
        self.timer.stop()
        self._running = False
        stalls = sorted(max(0.0, g - self.interval) * 1000 for g in self.gaps)
        worst = max(range(len(self.gaps)), key=self.gaps.__getitem__, default=None)
        return {
            "ticks": len(stalls),
            "max_stall_ms": round(stalls[-1], 1) if stalls else 0.0,
            "p99_stall_ms": round(stalls[int(len(stalls) * 0.99) - 1], 1) if stalls else 0.0,
            "stalls_over_50ms": sum(1 for s in stalls if s > 50),
            "longest_gc_ms": round(max((ms for _, ms in self.gc_pauses), default=0.0), 1),
            # the GUI thread's own CPU time in the longest gap, and its time waiting for a
            # CPU (a busy machine): what is left of the gap was spent waiting for the GIL
            # or a lock
            "worst_cpu_ms": round(self.cpu[worst] * 1000, 1) if worst is not None else 0.0,
            "worst_runqueue_ms": round(self.runqueue[worst] * 1000, 1)
            if worst is not None
            else 0.0,
        }


def _where(frame: Any) -> str:
    """The innermost few frames, dermdesk's and Qt-wrapping ones, as one line."""
    stack = traceback.extract_stack(frame)
    ours = [f for f in stack if "/dermdesk/" in f.filename or "bench_gui" in f.filename]
    pick = (ours[-4:] if ours else []) + ([stack[-1]] if stack and stack[-1] not in ours else [])
    return " < ".join(f"{Path(f.filename).stem}:{f.name}:{f.lineno}" for f in reversed(pick))


def wait(app: Any, seconds: float, until: Callable[[], bool] | None = None) -> bool:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.001)
    return False


# -- the two subjects: the dermdesk window and a bare QListView ------------------------------


# The bare list, as source: the cold-start child runs it without importing dermdesk.
BARE_CODE = r"""
from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt
from PySide6.QtWidgets import QListView, QMainWindow, QTabWidget, QWidget


class BareModel(QAbstractListModel):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else self.n

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        return f"image {index.row()}" if role == Qt.ItemDataRole.DisplayRole else None


class BareWindow(QMainWindow):
    # A QListView laid out as a grid of the gallery tile size, in tabs.

    def __init__(self, n, tile=(168, 196)):
        super().__init__()
        self.model_ = BareModel(n)
        view = self.view = QListView()
        view.setModel(self.model_)
        view.setFlow(QListView.Flow.LeftToRight)
        view.setWrapping(True)
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setUniformItemSizes(True)
        view.setGridSize(QSize(*tile))
        view.setVerticalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        self.tabs = QTabWidget()
        self.tabs.addTab(view, "Library")
        for name in ("Dashboard", "Models", "Experiments"):
            self.tabs.addTab(QWidget(), name)
        self.setCentralWidget(self.tabs)
        self.resize(1280, 800)
"""


def bare_window(n: int) -> Any:
    namespace: dict[str, Any] = {}
    exec(BARE_CODE, namespace)  # our own source, above
    return namespace["BareWindow"](n)


class Subject:
    """What the scenarios drive: a window with a grid view, keys and tabs."""

    name = ""
    app: Any
    window: Any
    view: Any

    def filled(self) -> bool:
        """Every visible tile has what it draws."""
        return True

    def all_rows(self) -> bool:
        return True

    def key_target(self) -> Any:
        return self.view

    def busy(self) -> bool:
        return False

    def close(self) -> None:
        self.window.close()


class Dermdesk(Subject):
    name = "dermdesk"

    def __init__(self, library: Path, work: Path) -> None:
        from PySide6.QtCore import QSettings

        import dermdesk.gui  # noqa: F401
        from dermdesk.gui.app import freeze_startup_heap, make_app
        from dermdesk.gui.main_window import MainWindow
        from dermdesk.gui.settings import Settings

        self.app = make_app([])
        self.lib = Library.open(library, actor="bench")
        ini = work / f"{library.name}.ini"
        ini.unlink(missing_ok=True)
        self.window = MainWindow(
            self.lib, Settings(QSettings(str(ini), QSettings.Format.IniFormat))
        )
        self.window.resize(*WINDOW)
        self.window.show()
        freeze_startup_heap()  # as dermdesk.gui.app.run does
        self.view = self.window.gallery
        self.model = self.window.gallery_model
        wait(self.app, 30, lambda: self.model.rowCount() > 0)
        wait(self.app, 2)

    def filled(self) -> bool:
        cache = self.model.thumbs._cache
        rows = self.view._visible_rows()
        return bool(rows) and all(cache.get(self.model.ids([r])[0]) is not None for r in rows)

    def all_rows(self) -> bool:
        return bool(self.model.rowCount() == self.model.total)

    def busy(self) -> bool:
        w = self.window
        return bool(w.reader.pending or w.writer.pending)

    def close(self) -> None:
        self.window.close()
        self.lib.close()


class BareList(Subject):
    name = "bare QListView"

    def __init__(self, n: int) -> None:
        from PySide6.QtWidgets import QApplication

        self.app = QApplication.instance() or QApplication([])
        self.window = bare_window(n)
        self.window.resize(*WINDOW)
        self.window.show()
        self.view = self.window.view
        wait(self.app, 1)


# -- 2. the scenarios ------------------------------------------------------------------------


class Paints:
    """Times of the view's paints, and whether every visible tile was filled at each."""

    def __init__(self, subject: Subject) -> None:
        from PySide6.QtCore import QEvent, QObject

        outer = self
        self.events: list[tuple[float, bool]] = []

        class Filter(QObject):
            def eventFilter(self, obj: Any, event: Any) -> bool:
                if event.type() == QEvent.Type.Paint:
                    outer.events.append((time.perf_counter(), subject.filled()))
                return False

        self.filter = Filter()
        subject.view.viewport().installEventFilter(self.filter)


def scroll(subject: Subject, probe: LatencyProbe) -> dict[str, Any]:
    """Top to bottom, three pages a 16 ms frame (a held Page Down, or a fast wheel)."""
    from PySide6.QtCore import QTimer

    bar = subject.view.verticalScrollBar()
    bar.setValue(0)
    wait(subject.app, 0.5)
    state = {"frames": 0, "done": False}

    def frame() -> None:
        state["frames"] += 1
        bar.setValue(bar.value() + 3 * bar.pageStep())
        if subject.all_rows() and bar.value() >= bar.maximum():
            state["done"] = True

    ticker = QTimer(interval=16)
    ticker.timeout.connect(frame)
    probe.start()
    t = time.perf_counter()
    ticker.start()
    wait(subject.app, 900, lambda: state["done"])
    ticker.stop()
    result = probe.stop()
    result["seconds"] = round(time.perf_counter() - t, 1)
    result["frames"] = state["frames"]
    return result


def flings(subject: Subject, probe: LatencyProbe, count: int, seed: int = 19) -> dict[str, Any]:
    """From ``count`` random places: twelve frames of a page each, then stop; how long
    until a paint draws every visible tile with its thumbnail."""
    from PySide6.QtCore import QTimer

    bar = subject.view.verticalScrollBar()
    paints = Paints(subject)
    rng = random.Random(seed)
    fills, worst = [], 0.0
    for _ in range(count):
        bar.setValue(rng.randrange(0, max(1, bar.maximum() - 20 * bar.pageStep())))
        wait(subject.app, 0.4)
        state = {"frames": 0}

        def frame(state: dict[str, int] = state) -> None:
            state["frames"] += 1
            bar.setValue(bar.value() + bar.pageStep())

        ticker = QTimer(interval=16)
        ticker.timeout.connect(frame)
        probe.start()
        ticker.start()
        wait(subject.app, 5, lambda state=state: state["frames"] >= 12)  # type: ignore[misc]
        ticker.stop()
        stopped = time.perf_counter()
        del paints.events[:]
        wait(subject.app, 3, lambda: any(ok for _, ok in paints.events))
        done = next((t for t, ok in paints.events if ok), None)
        wait(subject.app, 0.2)
        worst = max(worst, probe.stop()["max_stall_ms"])
        fills.append((done - stopped) * 1000 if done else float("inf"))
    return {
        "fill_median_ms": round(statistics.median(fills), 1),
        "fill_max_ms": round(max(fills), 1),
        "max_stall_ms": round(worst, 1),
    }


def press(subject: Subject, probe: LatencyProbe, keys: list[Any], gap_ms: int) -> dict[str, Any]:
    """``keys`` pressed on the view, ``gap_ms`` apart; then until the workers are idle."""
    from PySide6.QtCore import QTimer
    from PySide6.QtTest import QTest

    queue = list(keys)

    def next_key() -> None:
        if queue:
            QTest.keyClick(subject.key_target(), queue.pop(0))

    ticker = QTimer(interval=gap_ms)
    ticker.timeout.connect(next_key)
    probe.start()
    t = time.perf_counter()
    ticker.start()
    wait(subject.app, 120, lambda: not queue)
    ticker.stop()
    wait(subject.app, 0.3)
    wait(subject.app, 10, lambda: not subject.busy())
    wait(subject.app, 0.3)
    result = probe.stop()
    result["seconds"] = round(time.perf_counter() - t, 1)
    return result


def open_tabs(subject: Subject, probe: LatencyProbe, rounds: int) -> dict[str, Any]:
    """Each tab opened ``rounds`` times (for dermdesk also the image's info tabs and the
    Jobs panel); the worst stall from the click until its results are in (the workers
    idle) and 300 ms more."""
    tabs = subject.window.tabs
    opens: list[tuple[str, Callable[[], None]]] = [
        (tabs.tabText(i), lambda i=i: tabs.setCurrentIndex(i))  # type: ignore[misc]
        for i in [*range(1, tabs.count()), 0]
    ]
    if subject.name == "dermdesk":
        info, jobs = subject.window.viewer.info, subject.window.jobs
        opens += [
            (f"info: {info.tabText(i)}", lambda i=i: info.setCurrentIndex(i))  # type: ignore[misc]
            for i in [*range(1, info.count()), 0]
        ]
        opens.append(("Jobs panel", lambda: jobs.setVisible(not jobs.isVisible())))
    worst: dict[str, float] = {}
    for _ in range(rounds):
        for name, open_ in opens:
            if subject.name == "dermdesk":
                subject.window.dashboard.mark_stale()  # as after any edit
            probe.start()
            open_()
            wait(subject.app, 0.05)
            wait(subject.app, 20, lambda: not subject.busy())
            wait(subject.app, 0.3)
            worst[name] = max(worst.get(name, 0.0), probe.stop()["max_stall_ms"])
    return {"max_stall_ms": max(worst.values()), "per_tab": worst}


def run_scenarios(subject: Subject, args: argparse.Namespace) -> dict[str, Any]:
    from PySide6.QtCore import Qt

    probe = LatencyProbe(sample=args.profile)
    out: dict[str, Any] = {}
    steps = 20 if args.quick else 40
    scenarios: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("scroll", lambda: scroll(subject, probe)),
        ("fling", lambda: flings(subject, probe, 4 if args.quick else 10)),
        ("jk", lambda: press(subject, probe, [Qt.Key.Key_J] * steps + [Qt.Key.Key_K] * steps, 40)),
        ("label", lambda: press(subject, probe, [Qt.Key.Key_1, Qt.Key.Key_J] * 20, 150)),
        ("tabs", lambda: open_tabs(subject, probe, 2)),
    ]
    if subject.name != "dermdesk":  # Qt's list steps with the arrows; Ctrl does nothing
        scenarios[2] = (
            "jk",
            lambda: press(
                subject, probe, [Qt.Key.Key_Right] * steps + [Qt.Key.Key_Left] * steps, 40
            ),
        )
        scenarios[3] = (
            "label",
            lambda: press(subject, probe, [Qt.Key.Key_Control, Qt.Key.Key_Right] * 20, 150),
        )
    subject.view.setFocus()
    if args.only:
        scenarios = [(n, fn) for n, fn in scenarios if n in args.only.split(",")]
    for name, fn in scenarios:
        probe.samples.clear()
        profiler = cProfile.Profile() if args.cprofile and subject.name == "dermdesk" else None
        if profiler is not None:
            profiler.enable()
        out[name] = fn()
        print(f"  {subject.name} {name}: {out[name]}", flush=True)
        if profiler is not None:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
            print("\n".join("    " + line for line in text.getvalue().splitlines()[6:]))
        if probe.samples:
            print(f"    GUI thread while stalled > {SAMPLE_AFTER_S * 1000:.0f} ms (10 ms samples):")
            for where, n in probe.samples.most_common(10):
                print(f"    {n:4d}  {where}")
    return out


def filter_dispatch(subject: Dermdesk, n: int = 20_000) -> dict[str, float]:
    """What the chord keys' application event filter adds to every event of the app:
    ``n`` events sent to the gallery with and without it installed (µs per event)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    target, event = subject.view.viewport(), QEvent(QEvent.Type.User)

    def per_event() -> float:
        t = time.perf_counter()
        for _ in range(n):
            QCoreApplication.sendEvent(target, event)
        return (time.perf_counter() - t) / n * 1e6

    with_filter = min(per_event() for _ in range(3))
    subject.app.removeEventFilter(subject.window.chords)
    without = min(per_event() for _ in range(3))
    subject.app.installEventFilter(subject.window.chords)
    return {"with_us": round(with_filter, 2), "without_us": round(without, 2)}


def import_stall(
    library: Path, data: Path, work: Path, count: int, sample: bool = False
) -> dict[str, Any]:
    folder = work / "to_import"
    folder.mkdir(exist_ok=True)
    sources = sorted((data / "fitzpatrick17k_more" / "images").glob("*.jpg"))[:count]
    if not sources:
        raise SystemExit(f"no images to import under {data}/fitzpatrick17k_more: pass --data")
    for src in sources:
        shutil.copy(src, folder / src.name)
    subject = Dermdesk(copy_library(library, work / "import_copy"), work)
    probe = LatencyProbe(sample=sample)
    probe.start()
    t = time.perf_counter()
    dialog = subject.window.open_import([folder], start=True)
    wait(subject.app, 300, lambda: dialog.report is not None)
    wait(subject.app, 1.0)  # the gallery reload and repaint after the import
    result = probe.stop()
    result["seconds"] = round(time.perf_counter() - t, 1)
    result["added"] = len(dialog.report.added)
    for where, n in probe.samples.most_common(10):
        print(f"    {n:4d}  {where}")
    subject.close()
    shutil.rmtree(work / "import_copy", ignore_errors=True)
    return result


# -- main ------------------------------------------------------------------------------------


def _count_chord_filter() -> None:
    """Count the events the chord filter sees (patched before any window makes one)."""
    from dermdesk.gui import chords

    original = chords.ChordKeys.eventFilter
    totals = {"calls": 0}

    def counted(self: Any, obj: Any, event: Any) -> bool:
        totals["calls"] += 1
        return bool(original(self, obj, event))

    chords.ChordKeys.eventFilter = counted  # type: ignore[method-assign]
    chords.ChordKeys.bench_totals = totals  # type: ignore[attr-defined]
    chords.ChordKeys.bench_original = original  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--keep", type=Path, help="build libraries here, keep and reuse them")
    parser.add_argument("--quick", action="store_true", help="20,000 images, fewer repeats")
    parser.add_argument("--profile", action="store_true", help="where the GUI thread stalls")
    parser.add_argument("--cprofile", action="store_true", help="and cProfile each scenario")
    parser.add_argument("--no-import", action="store_true", help="skip the import stall")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold starts")
    parser.add_argument("--only", help="comma-separated scenarios (scroll,fling,jk,label,tabs)")
    parser.add_argument("--window", default="1280x800", help="window size of the scenarios")
    args = parser.parse_args()
    WINDOW[:] = [int(v) for v in args.window.split("x")]
    work = args.keep or Path(tempfile.mkdtemp(prefix="dermdesk-bench-gui-"))
    work.mkdir(parents=True, exist_ok=True)
    big = 20_000 if args.quick else 100_000
    print(f"libraries in {work}")
    library = migrated(make_library(work, args.data, big))
    runs = 2 if args.quick else 3

    cold: dict[str, list[dict[str, Any]]] = {}
    if not args.no_cold:
        print(f"\n1. cold start, {big:,} images ({runs} fresh interpreters each)")
        cold["dermdesk"] = cold_start("dermdesk", str(library), runs)
        cold["bare"] = cold_start("bare", str(big), runs)
        for kind, marks in cold.items():
            print(f"  {kind}: {marks}")
        if args.profile:
            cold_start("dermdesk", str(library), 1, profile=True)

    print(f"\n2. GUI-thread stalls and thumbnail fill, {big:,} images")
    _count_chord_filter()
    from dermdesk.gui import chords

    subject = Dermdesk(copy_library(library, work / "scenario_copy"), work)
    ours = run_scenarios(subject, args)
    subject.close()
    filter_totals = dict(chords.ChordKeys.bench_totals)  # type: ignore[attr-defined]
    chords.ChordKeys.eventFilter = chords.ChordKeys.bench_original  # type: ignore[attr-defined]
    subject = Dermdesk(copy_library(library, work / "scenario_copy"), work)
    filter_totals.update(filter_dispatch(subject))
    print(f"  chord filter: {filter_totals}")
    subject.close()
    shutil.rmtree(work / "scenario_copy", ignore_errors=True)
    bare_subject = BareList(big)
    bare = run_scenarios(bare_subject, args)
    bare_subject.close()

    imp = None
    if not args.no_import:
        print(f"\n3. GUI-thread stalls while importing 500 images ({big:,}-image library)")
        imp = import_stall(library, args.data, work, 500, args.profile)
        print(f"  {imp}")

    if cold and not args.only:
        print_table(cold, ours, bare, imp, filter_totals, big)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r.get(key, float("nan"))) for r in runs)


def print_table(
    cold: dict[str, list[dict[str, Any]]],
    ours: dict[str, Any],
    bare: dict[str, Any],
    imp: dict[str, Any] | None,
    filter_totals: dict[str, float],
    big: int,
) -> None:
    def stall(r: dict[str, Any]) -> str:
        if "p99_stall_ms" not in r:
            return f"{r['max_stall_ms']} ms"
        return (
            f"{r['max_stall_ms']} ms (p99 {r['p99_stall_ms']}; worst: {r['worst_cpu_ms']} CPU, "
            f"{r['worst_runqueue_ms']} run queue)"
        )

    d, b = cold["dermdesk"], cold["bare"]
    rows = [
        (
            f"cold start to first painted page, {big:,} images (median)",
            f"{_median(d, 'first_page'):.2f} s",
            f"{_median(b, 'first_page'):.2f} s",
            f"< {COLD_GOAL_S} s",
        ),
        (
            "... to window shown / all its thumbnails",
            f"{_median(d, 'shown'):.2f} / {_median(d, 'thumbs'):.2f} s",
            f"{_median(b, 'shown'):.2f} s / -",
            "",
        ),
        ("torch imported at start-up", str(any(r["torch"] for r in d)), "-", "False"),
        (
            f"longest stall, scrolling top to bottom ({ours['scroll']['seconds']} s)",
            stall(ours["scroll"]),
            stall(bare["scroll"]),
            f"< {STALL_GOAL_MS} ms",
        ),
        (
            "longest stall, flinging and stopping",
            stall(ours["fling"]),
            stall(bare["fling"]),
            f"< {STALL_GOAL_MS} ms",
        ),
        (
            "visible thumbnails painted after the stop (median / max)",
            f"{ours['fling']['fill_median_ms']} / {ours['fling']['fill_max_ms']} ms",
            f"{bare['fling']['fill_median_ms']} / {bare['fling']['fill_max_ms']} ms",
            f"< {FILL_GOAL_MS} ms",
        ),
        ("longest stall, J then K (arrows on bare)", stall(ours["jk"]), stall(bare["jk"]), ""),
        (
            "longest stall, labelling: 1 then J (Ctrl, Right on bare)",
            stall(ours["label"]),
            stall(bare["label"]),
            "",
        ),
    ]
    for tab, ms in ours["tabs"]["per_tab"].items():
        rows.append(
            (
                f"longest stall, opening {tab}",
                f"{ms} ms",
                f"{bare['tabs']['per_tab'][tab]} ms" if tab in bare["tabs"]["per_tab"] else "-",
                f"< {STALL_GOAL_MS} ms",
            )
        )
    if imp is not None:
        rows.append(
            (
                f"longest stall, importing {imp['added']} images ({imp['seconds']} s)",
                stall(imp),
                "-",
                "< 100 ms",
            )
        )
    f = filter_totals
    extra_us = max(0.0, f["with_us"] - f["without_us"])
    rows.append(
        (
            "chord-hint event filter: µs it adds to an event; events it saw in all scenarios",
            f"{extra_us:.2f} µs ({f['with_us']} vs {f['without_us']}); {int(f['calls']):,} "
            f"events, ~{extra_us * f['calls'] / 1000:.0f} ms in all",
            "-",
            "",
        )
    )
    print("\n| measure | dermdesk | bare QListView | goal |\n|---|---|---|---|")
    for measure, ours_, bare_, goal in rows:
        print(f"| {measure} | {ours_} | {bare_} | {goal} |")


if __name__ == "__main__":
    raise SystemExit(main())
