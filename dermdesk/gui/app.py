"""Start the Qt application on a library folder.

Torch is never imported here (nor by anything the main window imports):
training runs in job worker processes.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from dermdesk.gui.library_actions import open_library_folder
from dermdesk.gui.main_window import MainWindow
from dermdesk.gui.settings import Settings
from dermdesk.gui.theme import apply_theme
from dermdesk.library import LibraryError


def make_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created once), named so QSettings finds the app's settings."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    # Fractional scale factors (125 %, 150 %) as they are, not rounded: crisp on high-DPI.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        QGuiApplication.highDpiScaleFactorRoundingPolicy().PassThrough
    )
    app = QApplication(argv if argv is not None else sys.argv)
    app.setApplicationName("dermdesk")
    app.setOrganizationName("dermdesk")
    app.setApplicationDisplayName("dermdesk")
    return app


def freeze_startup_heap() -> None:
    """Exempt the objects made at start-up from the cyclic garbage collector's full passes.

    Modules, classes and the window built at start-up live as long as the app; left in
    the collector's oldest generation, every full collection walks them all, which
    scripts/bench_gui.py measured as 70-190 ms GUI-thread stalls while scrolling 100,000
    images. ``gc.freeze()`` (CPython 3.7+) moves them aside; reference counting still
    frees them as usual. (No ``gc.collect()`` first: that alone would pause ~100 ms.)
    """
    gc.freeze()


def run(library_dir: Path) -> int:
    """Open ``library_dir`` (created if needed) and run the event loop."""
    app = make_app()
    settings = Settings()
    apply_theme(app, settings.theme)
    # A library on read-only media (a DVD, a write-protected share) opens read-only:
    # browsing works, editing is off and the title bar says so.
    try:
        lib = open_library_folder(Path(library_dir))
    except LibraryError as exc:
        QMessageBox.critical(None, "dermdesk", str(exc))
        raise
    window = MainWindow(lib, settings)
    window.show()
    freeze_startup_heap()
    # Smoke tests of the installed / packaged app close it by themselves.
    quit_after = os.environ.get("DERMDESK_QUIT_AFTER_MS")
    if quit_after:
        QTimer.singleShot(int(quit_after), window.close)
        QTimer.singleShot(int(quit_after) + 50, app.quit)
    try:
        return int(app.exec())
    finally:
        lib.close()
