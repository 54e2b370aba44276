"""Render every main view and dialog of the desktop app to PNG files (offscreen).

    python scripts/screenshots.py OUT_DIR [--library DIR] [--data ../shared/data]

Without ``--library`` a throw-away library is built from the real reference
images in ../shared/data (PAD-UFES-20, HAM10000, Fitzpatrick17k); a real small
fine-tuning job and a predict job run on it (a few minutes on a CPU), so the
Models tab and the viewer show what a real run writes. One *demo* job row,
named so, stands for a job still running. A library given with ``--library``
is shown as it is and is not written to.
Windows are 1280x800 (dialogs at their own size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _shared import import_datasets  # noqa: E402
from PySide6.QtCore import QItemSelectionModel, QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from dermdesk.gui.about import AboutDialog  # noqa: E402
from dermdesk.gui.app import make_app  # noqa: E402
from dermdesk.gui.capture_dialog import CaptureDialog  # noqa: E402
from dermdesk.gui.main_window import MainWindow  # noqa: E402
from dermdesk.gui.settings import Settings  # noqa: E402
from dermdesk.gui.settings_dialog import SettingsDialog  # noqa: E402
from dermdesk.gui.shortcuts_sheet import ShortcutsSheet  # noqa: E402
from dermdesk.gui.theme import apply_theme  # noqa: E402
from dermdesk.imaging.camera import GeneratedSource, frame_from_image  # noqa: E402
from dermdesk.library import Library  # noqa: E402
from dermdesk.library.library import now  # noqa: E402

DATASETS = ("pad_ufes_20", "ham10000", "fitzpatrick17k")


def pump(app: QApplication, seconds: float, until: Callable[[], bool] | None = None) -> None:
    """Run the event loop for a while (or until a condition holds)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        if until is not None and until():
            app.processEvents()
            return
        time.sleep(0.01)


def save(widget: QWidget, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    widget.grab().save(str(path))
    print(f"{path}  {widget.width()}x{widget.height()}")


def build_library(folder: Path, data: Path) -> None:
    with Library.open(folder, actor="screenshots") as lib:
        report = import_datasets(lib, data, DATASETS)
        print(f"library: {report.summary()}")
    train_real_model(folder)
    with Library.open(folder, actor="screenshots") as lib:
        add_demo_job(lib)


def train_real_model(folder: Path) -> None:
    """A real (small, fast) fine-tuning job and a predict job: the Models tab and the
    viewer show the report and probabilities a real run writes."""
    from dermdesk.jobs.runner import JobRunner

    runner = JobRunner(folder, actor="screenshots")
    try:
        params = {
            "arch": "resnet10t",
            "img_size": 64,
            "epochs": 6,
            "batch_size": 32,
            "micro_batch": 32,
            "n_boot": 200,
            "name": "clinic starter (screenshot run, 6 epochs at 64 px)",
        }
        row = runner.wait(runner.submit("finetune", params), timeout_s=1800)
        print(f"trained: {row['status']} {row['message']}")
        runner.wait(runner.submit("predict", {"model": row["model_id"]}), timeout_s=600)
    finally:
        runner.close()


def add_demo_job(lib: Library) -> None:
    """One *demo* job row that looks running (a real one would need a process kept
    alive for the screenshot); it says it is a demo."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 95))
    log = "".join(
        f"epoch {e}/12  step {e * 40}  loss {1.9 / e:.3f}  bal.acc {0.4 + e * 0.02:.3f}\n"
        for e in range(1, 5)
    )
    lib.conn.execute(
        # pid: this process, so the app's job runner treats the demo job as alive elsewhere
        "INSERT INTO job (kind, status, progress, message, log, created_at, started_at, pid) "
        "VALUES ('finetune (demo)', 'running', 0.34, 'epoch 4 of 12', ?, ?, ?, ?)",
        (log, now(), started + "Z", os.getpid()),
    )


def main_views(app: QApplication, window: MainWindow, out: Path) -> None:
    pump(app, 8, lambda: window.gallery_model.rowCount() > 0 and window.viewer.left.has_image())
    pump(app, 1.5)  # thumbnails
    save(window, out, "01_library")
    model, selection = window.gallery_model, window.gallery.selectionModel()
    selection.setCurrentIndex(model.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    window.viewer.info.setCurrentIndex(1)
    pump(app, 2, window.viewer.left.has_image)
    save(window, out, "02_viewer_quality")
    window.viewer.info.setCurrentIndex(2)
    pump(app, 0.3)
    save(window, out, "03_viewer_prediction")
    window.viewer.info.setCurrentIndex(3)
    pump(app, 0.3)
    save(window, out, "04_viewer_history")
    window.viewer.info.setCurrentIndex(0)
    selection.select(model.index(4), QItemSelectionModel.SelectionFlag.Select)
    window.actions_["compare"].setChecked(True)
    pump(app, 3, lambda: window.viewer.right.has_image())
    save(window, out, "05_viewer_compare")
    window.actions_["compare"].setChecked(False)
    for r in range(1, 6):
        selection.select(model.index(r), QItemSelectionModel.SelectionFlag.Select)
    pump(app, 0.5)
    save(window, out, "06_batch_selection")
    window.filters.group.setCurrentIndex(window.filters.group.findData("diagnosis"))
    pump(app, 5, lambda: model.query.group == "diagnosis" and not model.is_fetching)
    pump(app, 1.5)
    save(window, out, "07_gallery_grouped")
    window.filters.set_state({"fitzpatrick": [5, 6], "modality": ["clinical"]})
    pump(app, 5, lambda: model.query.filter.fitzpatrick == [5, 6] and not model.is_fetching)
    pump(app, 1.5)
    save(window, out, "08_filters")
    window.filters.clear()
    window.jobs.show()
    window.jobs.table.selectRow(0)
    pump(app, 1.0)
    save(window, out, "09_jobs_dock")
    window.jobs.hide()
    window.tabs.setCurrentWidget(window.dashboard)
    pump(app, 8, lambda: window.dashboard.stats is not None)
    pump(app, 0.5)
    save(window, out, "10_dashboard")
    window.tabs.setCurrentWidget(window.models)
    window.models.refresh()
    pump(app, 0.5)
    save(window, out, "11_models")
    window.tabs.setCurrentIndex(0)


def dialogs(app: QApplication, window: MainWindow, data: Path, out: Path) -> None:
    frame = frame_from_image(next((data / "ham10000" / "images").glob("*.jpg")))
    capture = CaptureDialog(
        window.writer,
        sources=[
            ("Demo camera (a HAM10000 image)", lambda: GeneratedSource([frame], name="Demo camera"))
        ],
        operator=window.settings.annotator,
        parent=window,
    )
    capture.show()
    pump(app, 3, lambda: capture.frame is not None)
    capture.patient.setText("MRN-0042")
    capture.lesion.setText("back-mole-1")
    capture.site.setCurrentIndex(capture.site.findData("back"))
    pump(app, 0.3)
    save(capture, out, "12_capture")
    capture.close()
    blurred = __import__("cv2").GaussianBlur(frame, (0, 0), 6)
    capture = CaptureDialog(
        window.writer,
        sources=[("Demo camera, out of focus", lambda: GeneratedSource([blurred]))],
        parent=window,
    )
    capture.show()
    pump(app, 3, lambda: capture.frame is not None)
    capture.override.setChecked(True)
    pump(app, 0.3)
    save(capture, out, "13_capture_blocked")
    capture.close()
    folder = Path(tempfile.mkdtemp(prefix="dermdesk-import-"))
    for src in sorted((data / "fitzpatrick17k_more" / "images").glob("*.jpg"))[:40]:
        shutil.copy(src, folder / src.name)
    (folder / "IMG_0007.jpg").write_bytes(b"\xff\xd8 truncated")
    dialog = window.open_import([folder], start=True)
    pump(app, 60, lambda: dialog.report is not None)
    save(dialog, out, "14_import")
    dialog.close()
    shutil.rmtree(folder, ignore_errors=True)
    for name, widget in (
        ("15_shortcuts", ShortcutsSheet(parent=window)),
        ("16_settings", SettingsDialog(window.settings, window)),
        ("17_about", AboutDialog(window.lib, window)),
    ):
        widget.show()
        pump(app, 0.3)
        save(widget, out, name)
        widget.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--library", type=Path, help="render this library (not written to)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dermdesk-shots-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    library = args.library
    if library is None:
        library = work / "library"
        build_library(library, args.data)
    app = make_app([])
    for theme in ("light", "dark"):
        apply_theme(app, theme)
        settings = Settings(QSettings(str(work / f"{theme}.ini"), QSettings.Format.IniFormat))
        settings.theme = theme
        lib = Library.open(library, actor="screenshots")
        window = MainWindow(lib, settings)
        window.resize(1280, 800)
        window.show()
        if theme == "light":
            main_views(app, window, args.out)
            if args.library is None:
                dialogs(app, window, args.data, args.out)
        else:
            pump(
                app,
                8,
                lambda w=window: w.gallery_model.rowCount() > 0 and w.viewer.left.has_image(),
            )
            pump(app, 1.5)
            save(window, args.out, "18_library_dark")
            window.tabs.setCurrentWidget(window.dashboard)
            pump(app, 8, lambda w=window: w.dashboard.stats is not None)
            pump(app, 0.5)
            save(window, args.out, "19_dashboard_dark")
        # The demo "running" job is a row, not a process: retire it so closing does
        # not stop to ask whether to cancel it.
        lib.conn.execute("UPDATE job SET status = 'done' WHERE kind = 'finetune (demo)'")
        pump(app, 5, lambda w=window: not any(j.active for j in w.jobs.model.jobs))
        window.close()
        lib.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
