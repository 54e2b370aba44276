"""Library ▸ Export…: a de-identified dataset of the filtered images (CLI: ``dermdesk export``).

The dialog shows what will be exported before anything is written (images per split and
per diagnosis, what is left out and why, warnings), then exports on its own thread with
its own read-only library connection, with a progress bar and Cancel. The export itself
(:mod:`dermdesk.exchange.export`) writes beside the target and renames at the end, so a
cancel or an error leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dermdesk.exchange.export import FORMATS, ExportOptions, ExportPlan, plan_export, write_export
from dermdesk.gui.tasks import ThreadTask
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.split_store import splits

NO_SPLIT = "(no split: one folder)"


class ExportTask(ThreadTask):
    """Plan (``out`` None) or plan and write an export on a worker thread."""

    progress = Signal(int, int)
    planned = Signal(object, object)  # the task, its ExportPlan
    finished = Signal(object)  # ExportResult
    failed = Signal(object, str)  # the task, one line for the user

    def __init__(self, root: Path, options: ExportOptions, out: Path | None) -> None:
        super().__init__("export")
        self.root, self.options, self.out = root, options, out

    def _run(self) -> None:
        try:
            with Library.open(self.root, create=False, readonly=True) as lib:
                plan = plan_export(lib, self.options)
                self.planned.emit(self, plan)
                if self.out is None:
                    return
                result = write_export(
                    lib, plan, self.out, progress=self._progress, cancelled=self.cancel_event.is_set
                )
        except LibraryError as exc:  # ExportError included: one line for the user
            self.failed.emit(self, str(exc))
            return
        except Exception as exc:  # reported to the user, never lost in the thread
            self.failed.emit(self, f"export failed: {exc}")
            return
        self.finished.emit(result)

    def _progress(self, done: int, total: int) -> None:
        if self.progress_due(done, total):
            self.progress.emit(done, total)


def describe_plan(plan: ExportPlan) -> str:
    """The preview in words: counts per split and diagnosis, what is left out, warnings."""
    c = plan.counts()
    lines = [
        f"{c['images']} images: " + ", ".join(f"{k} {v}" for k, v in c["parts"].items()),
        "diagnosis: " + ", ".join(f"{k} {v}" for k, v in c["diagnosis"].items()),
    ]
    lines += [f"left out: {n} {reason}" for reason, n in c["left_out"].items()]
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)


class ExportDialog(QDialog):
    """Format, split, options and target; a preview of the counts; progress and Cancel."""

    exported = Signal(object)  # ExportResult

    def __init__(self, lib: Library, flt: ImageFilter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export a de-identified dataset")
        self.root, self.flt = lib.root, flt
        self.task: ExportTask | None = None
        self.preview_task: ExportTask | None = None
        self.outcome: object | None = None
        self._build([r["name"] for r in splits(lib)])
        self.resize(640, 480)
        self.refresh_preview()

    def _build(self, split_names: list[str]) -> None:
        form = QFormLayout()
        self.format = QComboBox()
        self.format.addItems(list(FORMATS))
        self.format.setToolTip(
            "isic: images/ + metadata.csv with ISIC Archive field names; imagefolder: "
            "split/class/ folders that torchvision and Hugging Face datasets load"
        )
        self.split = QComboBox()
        self.split.addItems([NO_SPLIT, *split_names])
        self.split.setToolTip("a stored split (dermdesk curate split); its parts become folders")
        self.synthetic = QCheckBox(
            "include synthetic images (flagged image_manipulation=synthetic)"
        )
        self.free_text = QCheckBox("include free-text labels and the datasets' extra columns")
        self.target = QLineEdit()
        self.target.setPlaceholderText("a new or empty folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.target, 1)
        row.addWidget(browse)
        query = QLabel(self.flt.describe() or "all images")
        query.setWordWrap(True)
        form.addRow("Images", query)
        form.addRow("Format", self.format)
        form.addRow("Split", self.split)
        form.addRow("", self.synthetic)
        form.addRow("", self.free_text)
        form.addRow("Folder", row)
        self.preview = QPlainTextEdit(readOnly=True)
        self.preview.setMaximumBlockCount(200)
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(3 * self.status.fontMetrics().height())
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Close")
        self.cancel_button.clicked.connect(self._cancel_or_close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("What will be exported:"))
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        for widget in (self.format, self.split):
            widget.currentIndexChanged.connect(self.refresh_preview)
        self.synthetic.toggled.connect(self.refresh_preview)

    def options(self) -> ExportOptions:
        split = self.split.currentText()
        return ExportOptions(
            self.format.currentText(),
            split=None if split == NO_SPLIT else split,
            flt=self.flt,
            include_synthetic=self.synthetic.isChecked(),
            include_free_text=self.free_text.isChecked(),
        )

    def refresh_preview(self) -> None:
        """Count what the options select, on a thread (the library may be large)."""
        self.preview.setPlainText("counting…")
        task = ExportTask(self.root, self.options(), None)
        task.planned.connect(self._show_plan)
        task.failed.connect(self._show_plan_error)
        self.preview_task = task
        task.start()

    def _show_plan(self, task: ExportTask, plan: ExportPlan) -> None:
        if task is self.preview_task:
            self.preview.setPlainText(describe_plan(plan))
            self.export_button.setEnabled(self.task is None)

    def _show_plan_error(self, task: ExportTask, message: str) -> None:
        if task is self.preview_task:
            self.preview.setPlainText(message)
            self.export_button.setEnabled(False)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into")
        if folder:
            self.target.setText(folder)

    def start(self) -> None:
        text = self.target.text().strip()
        if not text:
            self.status.setText("Choose a folder to export into.")
            return
        self.task = ExportTask(self.root, self.options(), Path(text).expanduser())
        self.task.progress.connect(self._progress)
        self.task.finished.connect(self._finished)
        self.task.failed.connect(self._failed)
        self.export_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        self.bar.setVisible(True)
        self.bar.setValue(0)
        self.status.setText("exporting…")
        self.task.start()

    def _progress(self, done: int, total: int) -> None:
        self.bar.setMaximum(max(total, 1))
        self.bar.setValue(done)
        self.status.setText(f"{done} of {total} images")

    def _finished(self, result: object) -> None:
        self.outcome = result
        self._idle()
        folder = getattr(result, "folder", "")
        self.status.setText(
            f"Exported {getattr(result, 'images', 0)} images to {folder}. "
            f"The data card is {Path(str(folder)) / 'DATACARD.md'}."
        )
        self.exported.emit(result)

    def _failed(self, task: ExportTask, message: str) -> None:
        self._idle()
        self.status.setText(message)

    def _idle(self) -> None:
        self.task = None
        self.bar.setVisible(False)
        self.export_button.setEnabled(True)
        self.cancel_button.setText("Close")

    def _cancel_or_close(self) -> None:
        if self.task is not None and self.task.running():
            self.task.cancel()
            self.status.setText("cancelling…")
        else:
            self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.task is not None and self.task.running():
            self.task.cancel()
            self.task.wait(30)
        super().closeEvent(event)
