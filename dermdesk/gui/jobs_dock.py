"""The jobs dock: every background job with progress, ETA, live log, cancel and result.

The dock talks to a :class:`JobsBackend`. The app uses
:class:`RunnerThreadBackend`: the job runner on its own thread (it writes job
rows, models and predictions, which must not happen on the GUI thread).
:class:`LibraryJobsBackend` only reads the ``job`` table (tests use it to show
jobs they wrote themselves). The dock polls every 100 ms; polling only reads
the latest list the backend published.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dermdesk.gui.table_model import Index, ListTableModel
from dermdesk.gui.tasks import LibraryWorker
from dermdesk.jobs.context import job_dir
from dermdesk.library import Library
from dermdesk.library.browse import job_rows
from dermdesk.library.edits import request_job_cancel

log = logging.getLogger(__name__)

POLL_MS = 100  # the job runner is drained at this pace; views change only when jobs do
ACTIVE = ("queued", "running", "cancelling")
COLUMNS = ("Job", "Status", "Progress", "ETA", "Message")


@dataclass
class JobView:
    """What the dock shows about one job."""

    id: int
    kind: str
    status: str
    progress: float = 0.0  # 0..1
    message: str | None = None
    log: str = ""
    result: dict[str, Any] | None = None
    model_id: str | None = None
    error: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    params: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def eta_seconds(self, now: datetime | None = None) -> float | None:
        """Remaining time extrapolated from progress so far (None until it means something)."""
        if self.status != "running" or not self.started_at or self.progress < 0.01:
            return None
        start = _parse_time(self.started_at)
        if start is None:
            return None
        elapsed = ((now or datetime.now(UTC)) - start).total_seconds()
        return max(0.0, elapsed * (1 - self.progress) / self.progress)

    def result_link(self) -> tuple[str, str] | None:
        """(kind, target) of what the job produced: a model, images, or a folder."""
        if self.model_id:
            return "model", self.model_id
        result = self.result or {}
        if result.get("model_id"):
            return "model", str(result["model_id"])
        if result.get("image_ids"):
            return "images", ",".join(result["image_ids"])
        for key in ("path", "export_dir", "folder"):
            if result.get(key):
                return "path", str(result[key])
        return None


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class JobsBackend(Protocol):
    """Where jobs come from. ``poll`` is called on the GUI thread and must be cheap."""

    def poll(self) -> Sequence[JobView]: ...

    def cancel(self, job_id: int) -> None: ...

    def resume(self, job_id: int) -> None: ...

    def submit(self, kind: str, params: dict[str, Any]) -> None: ...

    def take_errors(self) -> list[str]:
        """Messages of refused commands since the last call (each shown once)."""
        ...

    def close(self) -> None: ...


class LibraryJobsBackend:
    """Jobs as recorded in the library's ``job`` table (read: a bounded, indexed query)."""

    def __init__(self, lib: Library, writer: LibraryWorker, limit: int = 100) -> None:
        self.lib = lib
        self.library_dir = lib.root
        self.writer = writer
        self.limit = limit

    def poll(self) -> list[JobView]:
        return [_job_view(row) for row in job_rows(self.lib, self.limit)]

    def cancel(self, job_id: int) -> None:
        self.writer.run(lambda lib: request_job_cancel(lib, job_id))

    def resume(self, job_id: int) -> None:
        raise NotImplementedError("this view only reads jobs; the job runner resumes them")

    def submit(self, kind: str, params: dict[str, Any]) -> None:
        raise NotImplementedError("this view only reads jobs; the job runner starts them")

    def take_errors(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


class RunnerThreadBackend:
    """The job runner (:class:`dermdesk.jobs.runner.JobRunner`) on a thread of its own.

    The runner writes job rows and what jobs produce (models, predictions), so it
    must not run on the GUI thread. This thread owns the runner and its library
    connection, drains it every :data:`POLL_MS`, and publishes the job list; the
    dock's :meth:`poll` only reads that list. Commands (submit, cancel, resume)
    are queued to the thread. Closing cancels a running job, which checkpoints
    and can be resumed next time.
    """

    def __init__(self, library_dir: Path, actor: str | None = None, limit: int = 100) -> None:
        self.library_dir = library_dir
        self.actor = actor
        self.limit = limit
        self._commands: queue.SimpleQueue[Callable[[Any], object]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._jobs: list[JobView] = []
        self._errors: list[str] = []  # refused commands, until the dock takes them
        self._fatal: str | None = None  # the runner could not start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-runner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from dermdesk.jobs.runner import JobRunner  # torch-free; imported off the GUI thread

        try:
            runner = JobRunner(self.library_dir, actor=self.actor)
        except Exception as exc:
            self._fatal = str(exc)
            return
        try:
            while not self._stop.is_set():
                self._step(runner)
                self._stop.wait(POLL_MS / 1000)
        finally:
            runner.close()

    def _step(self, runner: Any) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                break
            try:
                command(runner)
            except Exception as exc:  # a refused command is shown to the user, not fatal
                with self._lock:
                    self._errors.append(str(exc))
        try:
            runner.poll()
            jobs = [_job_view(_decoded(row)) for row in runner.jobs(self.limit)]
        except Exception:  # e.g. the library is busy for a moment: try again next round
            log.debug("job runner poll failed", exc_info=True)
            return
        with self._lock:
            self._jobs = jobs

    def poll(self) -> list[JobView]:
        if self._fatal is not None and not self._thread.is_alive():
            raise RuntimeError(self._fatal)
        with self._lock:
            return list(self._jobs)

    def take_errors(self) -> list[str]:
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    def submit(self, kind: str, params: dict[str, Any]) -> None:
        self._commands.put(lambda runner: runner.submit(kind, params))

    def cancel(self, job_id: int) -> None:
        self._commands.put(lambda runner: runner.cancel(job_id))

    def resume(self, job_id: int) -> None:
        self._commands.put(lambda runner: runner.resume(job_id))

    def close(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("result", "params"):
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except ValueError:
                out[key] = None
    return out


def _job_view(row: dict[str, Any]) -> JobView:
    names = {f for f in JobView.__dataclass_fields__}
    values = {k: v for k, v in row.items() if k in names}
    values["log"] = values.get("log") or ""
    values["progress"] = float(values.get("progress") or 0.0)
    if not isinstance(values.get("result"), dict):
        values["result"] = None
    return JobView(**values)


class JobsModel(ListTableModel):
    """Jobs as table rows, updated in place as polls come in."""

    COLUMNS = COLUMNS

    @property
    def jobs(self) -> list[JobView]:
        return self.items

    def update(self, jobs: Sequence[JobView]) -> None:
        fresh = sorted(jobs, key=lambda j: -j.id)
        if [j.id for j in fresh] != [j.id for j in self.jobs]:
            self.beginResetModel()
            self.items = list(fresh)
            self.endResetModel()
            return
        for row, (old, new) in enumerate(zip(self.jobs, fresh, strict=True)):
            if old != new or new.status == "running":  # running rows: the ETA moves
                self.jobs[row] = new
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        job = self.item(index)
        if job is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (
                f"#{job.id} {job.kind}",
                job.status,
                f"{job.progress:.0%}",
                format_eta(job.eta_seconds()),
                job.error or job.message or "",
            )[column]
        if role == Qt.ItemDataRole.UserRole:
            return job.progress if column == 2 else job
        if role == Qt.ItemDataRole.ToolTipRole and column == 4:
            return job.error or job.message
        return None

    def job(self, row: int) -> JobView | None:
        return self.jobs[row] if 0 <= row < len(self.jobs) else None


class ProgressDelegate(QStyledItemDelegate):
    """Draws the progress column as a progress bar."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = round(float(index.data(Qt.ItemDataRole.UserRole) or 0) * 1000)
        bar.text = index.data(Qt.ItemDataRole.DisplayRole)
        bar.textVisible = True
        style = QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class JobsDock(QDockWidget):
    """Jobs table, the selected job's live log, cancel and a link to its result."""

    open_model = Signal(str)
    show_images = Signal(list)
    open_path = Signal(str)
    job_finished = Signal(object)  # JobView of a job that just left queued/running
    refused = Signal(str)  # a submit / cancel / resume the runner refused, with its reason

    def __init__(self, backend: JobsBackend, parent: QWidget | None = None) -> None:
        super().__init__("Jobs", parent)
        self.setObjectName("jobs_dock")
        self.backend = backend
        self._refused = ""  # the last refusal stays in the summary until the next command
        self.model = JobsModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(2, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(2, 160)
        header.setStretchLastSection(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("The selected job's log appears here as it runs.")
        self.cancel_button = QPushButton("Cancel job")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue a cancelled or failed job from its checkpoint")
        self.resume_button.clicked.connect(self.resume_selected)
        self.result_button = QPushButton("Open result")
        self.result_button.clicked.connect(self.open_result)
        self.summary = QLabel()
        # A pretraining job's latest reconstruction preview (original / masked / output).
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setToolTip(
            "Reconstruction preview at the latest evaluation: originals (top), the patches "
            "the encoder saw (middle), the decoder's reconstruction (bottom)"
        )
        self.preview.hide()
        self._preview_key: tuple[str, float] | None = None
        self._build()
        self.table.selectionModel().selectionChanged.connect(self._show_selected)
        self.timer = QTimer(self, interval=POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self.poll()

    def _build(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary, 1)
        buttons.addWidget(self.result_button)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.cancel_button)
        right = QWidget()
        v = QVBoxLayout(right)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.log, 1)
        v.addWidget(self.preview)
        v.addLayout(buttons)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(right)
        split.setSizes([620, 480])
        self.setWidget(split)

    def poll(self) -> None:
        try:
            jobs = self.backend.poll()
        except Exception as exc:  # a broken backend must not stop the app
            self.summary.setText(f"Jobs unavailable: {exc}")
            return
        refused = self.backend.take_errors()
        selected = self.selected_job()
        was_active = {j.id for j in self.model.jobs if j.active}
        self.model.update(jobs)
        for job in jobs:
            if job.id in was_active and not job.active:
                self.job_finished.emit(job)
        if selected is not None:
            self._reselect(selected.id)
        if refused:
            for message in refused:
                self.refused.emit(message)
            self._refused = f"Refused: {refused[-1]}"
        running = sum(1 for j in jobs if j.active)
        state = f"{running} running or queued" if running else "No job running"
        self.summary.setText(f"{self._refused} · {state}" if self._refused else state)
        self.summary.setToolTip(self._refused)
        self._show_selected()

    def _reselect(self, job_id: int) -> None:
        for row, job in enumerate(self.model.jobs):
            if job.id == job_id and self.table.currentIndex().row() != row:
                self.table.selectRow(row)

    def selected_job(self) -> JobView | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.job(rows[0].row()) if rows else None

    def _show_selected(self) -> None:
        job = self.selected_job()
        self.cancel_button.setEnabled(bool(job and job.active))
        self.resume_button.setEnabled(bool(job and job.status in ("cancelled", "failed")))
        link = job.result_link() if job else None
        self.result_button.setEnabled(bool(link) and bool(job) and not job.active)  # type: ignore[union-attr]
        self.result_button.setText(
            {"model": "Open model", "images": "Show images", "path": "Open folder"}.get(
                link[0] if link else "", "Open result"
            )
        )
        self._show_preview(job)
        text = (job.log + (f"\nERROR: {job.error}" if job.error else "")) if job else ""
        if text != self.log.toPlainText():
            at_end = (
                self.log.verticalScrollBar().value() >= self.log.verticalScrollBar().maximum() - 2
            )
            self.log.setPlainText(text)
            if at_end:  # follow the log like `tail -f`, unless the user scrolled up
                self.log.verticalScrollBar().setValue(self.log.verticalScrollBar().maximum())

    def preview_path(self, job: JobView | None) -> Path | None:
        """The latest reconstruction preview of a pretraining job, if it has one yet."""
        root = getattr(self.backend, "library_dir", None)
        if job is None or job.kind != "pretrain" or root is None:
            return None
        path = job_dir(Path(root), job.id) / "previews" / "latest.png"
        return path if path.is_file() else None

    def _show_preview(self, job: JobView | None) -> None:
        path = self.preview_path(job)
        if path is None:
            self.preview.hide()
            self._preview_key = None
            return
        key = (str(path), path.stat().st_mtime)
        if key != self._preview_key:  # reload only when a new evaluation wrote it
            self._preview_key = key
            pixmap = QPixmap(str(path))
            if not pixmap.isNull() and pixmap.width() < 480:  # small images: scale up, crisp
                factor = max(1, 480 // pixmap.width())
                pixmap = pixmap.scaledToWidth(
                    pixmap.width() * factor, Qt.TransformationMode.FastTransformation
                )
            elif pixmap.width() > 720:  # 8 images at 224 px: fit the dock
                pixmap = pixmap.scaledToWidth(720, Qt.TransformationMode.SmoothTransformation)
            self.preview.setPixmap(pixmap)
        self.preview.show()

    def cancel_selected(self) -> None:
        job = self.selected_job()
        if job and job.active:
            self._refused = ""
            self.backend.cancel(job.id)
            self.summary.setText(f"Cancelling job #{job.id}…")

    def resume_selected(self) -> None:
        job = self.selected_job()
        if job and job.status in ("cancelled", "failed"):
            self._refused = ""
            try:
                self.backend.resume(job.id)
            except NotImplementedError as exc:
                self.summary.setText(str(exc))
                return
            self.summary.setText(f"Resuming job #{job.id}…")

    def open_result(self) -> None:
        job = self.selected_job()
        link = job.result_link() if job else None
        if link is None:
            return
        kind, target = link
        if kind == "model":
            self.open_model.emit(target)
        elif kind == "images":
            self.show_images.emit(target.split(","))
        else:
            self.open_path.emit(target)
