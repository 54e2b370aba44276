"""The About box: versions of dermdesk and everything it runs on, and the library in use."""

from __future__ import annotations

import platform
import sqlite3
import sys
from importlib import metadata

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk import __version__
from dermdesk.library import Library
from dermdesk.library.db import schema_version

# Read from package metadata, never imported: the About box must not load torch.
PACKAGES = (
    "numpy",
    "pillow",
    "pillow-heif",
    "opencv-python-headless",
    "sqlite-utils",
    "onnxruntime",
    "platformdirs",
    "torch",
    "timm",
)


def versions(lib: Library | None = None) -> list[tuple[str, str]]:
    rows = [
        ("dermdesk", __version__),
        ("Python", f"{platform.python_version()} ({sys.platform})"),
        ("Qt", qVersion()),
        ("PySide6", pyside_version),
        ("SQLite", sqlite3.sqlite_version),
    ]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    if lib is not None:
        rows.append(("Library", str(lib.root)))
        rows.append(("Library schema", str(schema_version(lib.db))))
    return rows


class AboutDialog(QDialog):
    def __init__(self, lib: Library | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About dermdesk")
        text = QLabel(
            f"<h2>dermdesk {__version__}</h2>"
            "<p>A workstation for clinical dermatology datasets: capture and import lesion "
            "photos, tag skin tone and device, check quality, annotate, and train models on "
            "the clinic's own images. Runs fully offline.</p>"
        )
        text.setWordWrap(True)
        rows = versions(lib)
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Component", "Version"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        for i, (name, version) in enumerate(rows):
            table.setItem(i, 0, QTableWidgetItem(name))
            table.setItem(i, 1, QTableWidgetItem(version))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(table, 1)
        layout.addWidget(buttons)
        self.resize(560, 560)
