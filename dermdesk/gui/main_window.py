"""The main window. For now: the library's location and what it holds."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk import __version__, taxonomy
from dermdesk.library import Library


class MainWindow(QMainWindow):
    def __init__(self, lib: Library) -> None:
        super().__init__()
        self.lib = lib
        self.setWindowTitle(f"dermdesk {__version__} — {lib.root}")
        self.resize(1280, 800)
        body = QWidget(self)
        layout = QVBoxLayout(body)
        total = lib.count()
        self.summary = QLabel(
            f"<h2>Library</h2><p>{lib.root}</p><p><b>{total}</b> images. "
            "Import photos or datasets with <code>dermdesk import PATH</code>.</p>"
        )
        layout.addWidget(self.summary)
        self.table = self._counts_table()
        layout.addWidget(self.table)
        self.setCentralWidget(body)

    def _counts_table(self) -> QTableWidget:
        rows = self.lib.counts(["diagnosis", "modality"])
        table = QTableWidget(len(rows), 4, self)
        table.setHorizontalHeaderLabels(["Code", "Diagnosis", "Modality", "Images"])
        names = {code: d.name for code, d in taxonomy.diagnoses().items()}
        for i, r in enumerate(rows):
            code = r["diagnosis"] or ""
            for j, value in enumerate(
                (code, names.get(code, "unlabelled"), r["modality"], str(r["n"]))
            ):
                table.setItem(i, j, QTableWidgetItem(value))
        table.resizeColumnsToContents()
        return table
