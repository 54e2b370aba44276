"""Start the Qt application on a library folder.

The full workstation (gallery, viewer, annotation, capture, dashboard, jobs)
lands with the GUI issue; until then the window shows the library's contents.
Torch is never imported here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from dermdesk.gui.main_window import MainWindow
from dermdesk.library import Library


def run(library_dir: Path) -> int:
    """Open ``library_dir`` (created if needed) and run the event loop."""
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("dermdesk")
    app.setOrganizationName("dermdesk")
    lib = Library.open(library_dir)
    window = MainWindow(lib)
    window.show()
    # Smoke tests of the installed / packaged app close it by themselves.
    quit_after = os.environ.get("DERMDESK_QUIT_AFTER_MS")
    if quit_after:
        QTimer.singleShot(int(quit_after), app.quit)
    try:
        return int(app.exec())
    finally:
        lib.close()
