"""Import files and folders (photos, phone exports, dataset folders) with progress.

The import runs :func:`dermdesk.exchange.datasets.plan_path` and
:func:`dermdesk.exchange.importer.run_import` on its own thread with its own
library connection (imports are long; edits keep flowing through the
writer meanwhile, and SQLite serializes the short batch transactions).
Progress reaches the GUI at most ten times a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.exchange.datasets import Plan, plan_path
from dermdesk.exchange.importer import ImportProgress, ImportReport, run_import
from dermdesk.exchange.tables import DatasetError
from dermdesk.gui.settings import Settings
from dermdesk.gui.tasks import ThreadTask
from dermdesk.library import Library

if TYPE_CHECKING:
    from dermdesk.gui.csv_import_dialog import CsvImportDialog


class ImportTask(ThreadTask):
    """One import on a worker thread; emits throttled progress and the final report."""

    progress = Signal(int, int, int, int)  # done, total, added, refused
    finished = Signal(object)  # ImportReport
    failed = Signal(str)

    def __init__(
        self,
        root: Path,
        actor: str,
        paths: list[Path],
        modality: str,
        workers: int | None = None,
        plans: list[Plan] | None = None,
    ) -> None:
        super().__init__("import")
        self.root, self.actor, self.paths, self.modality = root, actor, paths, modality
        self.workers = workers
        self.plans = list(plans or [])  # planned already (a mapped CSV)

    def _run(self) -> None:
        try:
            plan = Plan()
            for planned in self.plans:
                plan.merge(planned)
            for path in self.paths:
                try:
                    plan.merge(plan_path(path, self.modality))
                except DatasetError as exc:
                    plan.refused.append((str(path), str(exc)))
            self.progress.emit(0, len(plan.items), 0, 0)
            with Library.open(self.root, create=False, actor=self.actor) as lib:
                report = run_import(
                    lib,
                    plan.items,
                    workers=self.workers,
                    progress=self._progress,
                    cancel=self.cancel_event,
                )
            report.refused[:0] = plan.refused
            report.warnings[:0] = plan.warnings
        except Exception as exc:  # reported to the user, never lost in the thread
            self.failed.emit(str(exc))
            return
        self.finished.emit(report)

    def _progress(self, p: ImportProgress) -> None:
        if self.progress_due(p.done, p.total):
            self.progress.emit(p.done, p.total, p.added, p.refused)


class ImportDialog(QDialog):
    """Choose (or drop) files and folders, import them, see what was refused and why."""

    imported = Signal(object)  # ImportReport

    def __init__(
        self,
        root: Path,
        actor: str,
        modality: str = "clinical",
        parent: QWidget | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import images")
        self.setAcceptDrops(True)
        self.root, self.actor = root, actor
        self.settings = settings
        self.csv_plans: list[Plan] = []
        self.task: ImportTask | None = None
        self.report: ImportReport | None = None
        self._build(modality)
        self.resize(720, 520)

    def _build(self, modality: str) -> None:
        hint = QLabel(
            "Drop photos, a phone export or dataset folders here (PAD-UFES-20, HAM10000, "
            "Fitzpatrick17k, ISIC 2017, PH2 are recognised by their metadata files)."
        )
        hint.setWordWrap(True)
        self.paths = QListWidget()
        add_files = QPushButton("Add files…")
        add_files.clicked.connect(self._add_files)
        add_folder = QPushButton("Add folder…")
        add_folder.clicked.connect(self._add_folder)
        add_csv = QPushButton("Add a CSV…")
        add_csv.setToolTip(
            "A table of image paths and metadata in any layout: map its columns and values"
        )
        add_csv.clicked.connect(self._add_csv)
        self.modality = QComboBox()
        for m in taxonomy.MODALITIES:
            self.modality.addItem(f"Plain photos are {m}", m)
        self.modality.setCurrentIndex(max(0, self.modality.findData(modality)))
        row = QHBoxLayout()
        for w in (add_files, add_folder, add_csv, self.modality):
            row.addWidget(w)
        row.addStretch(1)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m files")
        self.status = QLabel("Nothing imported yet.")
        self.status.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("Files that were refused, and why, are listed here.")
        self.start_button = QPushButton("Import")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel import")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for w in (self.start_button, self.cancel_button, close):
            buttons.addWidget(w)
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addWidget(self.paths, 1)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.log, 1)
        layout.addLayout(buttons)

    # -- choosing what to import -----------------------------------------------------------

    def add_paths(self, paths: list[Path]) -> None:
        present = {self.paths.item(i).text() for i in range(self.paths.count())}
        for p in paths:
            if str(p) not in present:
                self.paths.addItem(str(p))

    def chosen_paths(self) -> list[Path]:
        texts = [self.paths.item(i).text() for i in range(self.paths.count())]
        return [Path(t) for t in texts if not t.startswith("CSV ")]

    def _add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Images to import")
        self.add_paths([Path(f) for f in files])

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder to import")
        if folder:
            self.add_paths([Path(folder)])

    def _add_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "CSV to import", "", "Tables (*.csv *.tsv *.txt)"
        )
        if path:
            self.open_csv(Path(path))

    def open_csv(self, path: Path) -> CsvImportDialog:
        """The mapping dialog for a CSV; a planned CSV joins the import list."""
        from dermdesk.gui.csv_import_dialog import CsvImportDialog

        dialog = CsvImportDialog(path, self.settings, self)
        dialog.accepted.connect(lambda: self.add_csv_plan(path, dialog.plan))
        dialog.show()
        self.csv_dialog = dialog
        return dialog

    def add_csv_plan(self, path: Path, plan: Plan | None) -> None:
        if plan is None:
            return
        self.csv_plans.append(plan)
        refused = f", {len(plan.refused)} rows refused" if plan.refused else ""
        self.paths.addItem(f"CSV {path.name}: {len(plan.items)} images{refused}")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self.add_paths(dropped_paths(event.mimeData()))
        event.acceptProposedAction()

    # -- running ---------------------------------------------------------------------------

    def start(self, workers: int | None = None) -> None:
        paths = self.chosen_paths()
        if not (paths or self.csv_plans) or (self.task and self.task.running()):
            return
        self.task = ImportTask(
            self.root,
            self.actor,
            paths,
            self.modality.currentData(),
            workers or None,
            plans=self.csv_plans,
        )
        self.csv_plans = []  # planned once, imported once
        self.task.progress.connect(self._progress)
        self.task.finished.connect(self._finished)
        self.task.failed.connect(self._failed)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Reading folders…")
        self.log.clear()
        self.task.start()

    def cancel(self) -> None:
        if self.task:
            self.task.cancel()
            self.status.setText("Cancelling (finished files are kept)…")

    def _progress(self, done: int, total: int, added: int, refused: int) -> None:
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(done)
        self.status.setText(f"{done:,} of {total:,} files: {added:,} added, {refused:,} refused")

    def _finished(self, report: ImportReport) -> None:
        self.report = report
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.setText(report.summary())
        lines = [f"{where}: refused: {reason}" for where, reason in report.refused]
        lines += [f"{where}: already in library" for where, _ in report.existing[:200]]
        lines += [f"warning: {w}" for w in report.warnings]
        self.log.setPlainText("\n".join(lines))
        self.imported.emit(report)

    def _failed(self, message: str) -> None:
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.setText(f"Import failed: {message}")

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.task and self.task.running():
            self.task.cancel()
            self.task.wait(10)
        super().closeEvent(event)


def dropped_paths(mime: QMimeData | None) -> list[Path]:
    """Local files and folders in a drag's data (remote URLs are ignored)."""
    if mime is None or not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
