"""Models ▸ Review label issues: the label review queue, worked through one image at a time.

The queue is :func:`dermdesk.exchange.label_review.review_queue`, built on the reader
thread: the active model's label issues in cleanlab's rank order (given label, the model's
top class, its probabilities), then the images whose annotators disagree. Picking a row
shows the image in a viewer of its own with the model's probabilities and every
annotator's label; *Confirm* and *Relabel* go through the main window's
:class:`~dermdesk.gui.editing.Editor`, the undoable, audited label path the annotation panel
uses (Ctrl+Z in the main window undoes them too). A confirmation is a label row by the
reviewer with the same diagnosis and wording, so the audit log says who looked.

CLI twin: ``dermdesk curate label-review`` (``--json`` for the same rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.exchange.label_review import review_queue
from dermdesk.gui.editing import Editor
from dermdesk.gui.tasks import Background, LibraryWorker
from dermdesk.gui.viewer import ViewerPanel
from dermdesk.library import Library

COLUMNS = (
    "#",
    "image",
    "why",
    "label",
    "model says",
    "p(label)",
    "p(model)",
    "reviewed",
    "annotators",
)
WHY = {"model": "model doubts", "annotators": "annotators differ"}
ROW_H = 20


class ProbabilityBars(QWidget):
    """The model's probabilities, one bar per class on a 0-1 scale, the given label marked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, float]] = []
        self.given: str | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_probabilities(self, probabilities: dict[str, float], given: str | None) -> None:
        self.rows = sorted(probabilities.items(), key=lambda kv: -kv[1])
        self.given = given
        self.setFixedHeight(self.sizeHint().height())
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(300, ROW_H * max(1, len(self.rows)) + 6)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        pal = self.palette()
        if not self.rows:
            painter.setPen(pal.placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no model probabilities")
            return
        label_w, value_w = 90, 52
        bar_w = max(20, self.width() - label_w - value_w)
        for i, (code, p) in enumerate(self.rows):
            y = 3 + i * ROW_H
            name = f"{code} (label)" if code == self.given else code
            painter.setPen(pal.text().color())
            painter.drawText(
                QRect(0, y, label_w - 6, ROW_H),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                name,
            )
            colour = QColor("#e69138") if code == self.given else QColor("#4a86e8")
            painter.fillRect(QRect(label_w, y + 4, round(bar_w * p), ROW_H - 8), colour)
            painter.drawText(
                QRect(label_w + bar_w + 4, y, value_w, ROW_H),
                Qt.AlignmentFlag.AlignVCenter,
                f"{p:.0%}",
            )
        painter.end()


class LabelReviewDialog(QDialog):
    """The ranked queue beside the picked image, its probabilities and the decisions."""

    message = Signal(str)  # the summary, for the main window's status bar
    show_ids = Signal(list)  # "Show in gallery": the queue's images

    def __init__(
        self,
        lib: Library,
        reader: LibraryWorker,
        editor: Editor,
        decoder: Background,
        certainty: Callable[[], str],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Review label issues")
        self.reader, self.editor, self.certainty = reader, editor, certainty
        self.rows: list[dict[str, Any]] = []
        self.readonly = lib.readonly  # a read-only library is reviewed, never relabelled
        self.viewer = ViewerPanel(lib, decoder)
        self._build()
        self.editor.edited.connect(self._edited)
        self.editor.failed.connect(self.status.setText)
        self.resize(1250, 760)
        self.reload()

    def _build(self) -> None:
        self.summary = QLabel("building the review queue…")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.gallery_button = QPushButton("Show in gallery")
        self.gallery_button.setToolTip("Filter the gallery to the images of this queue")
        self.gallery_button.clicked.connect(
            lambda: self.show_ids.emit([r["image_id"] for r in self.rows])
        )
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.summary)
        lv.addWidget(self.table, 1)
        lv.addWidget(self.gallery_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.bars = ProbabilityBars()
        self.annotators = QLabel("")
        self.annotators.setWordWrap(True)
        self.confirm_button = QPushButton("Confirm label")
        self.confirm_button.setToolTip("Keep the given label, recorded as reviewed by you")
        self.confirm_button.clicked.connect(self.confirm)
        self.accept_button = QPushButton("Relabel as the model says")
        self.accept_button.clicked.connect(self.relabel_as_model)
        self.choice = QComboBox()
        for code, dx in taxonomy.diagnoses().items():
            self.choice.addItem(f"{code} — {dx.name}", code)
        self.relabel_button = QPushButton("Relabel")
        self.relabel_button.clicked.connect(lambda: self.relabel(self.choice.currentData()))
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last edit (the main window's undo)")
        self.undo_button.clicked.connect(self.editor.stack.undo)
        self.editor.stack.canUndoChanged.connect(self.undo_button.setEnabled)
        self.undo_button.setEnabled(self.editor.stack.canUndo())
        bar = QHBoxLayout()
        for w in (self.confirm_button, self.accept_button, self.choice, self.relabel_button):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.undo_button)
        self.status = QLabel("")
        self.viewer.buttons["compare"].hide()
        self.viewer.compare_with.hide()
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.viewer, 1)
        rv.addWidget(QLabel("<b>Model probabilities</b>"))
        rv.addWidget(self.bars)
        rv.addWidget(self.annotators)
        rv.addLayout(bar)
        rv.addWidget(self.status)
        self.viewer.splitter.setSizes([520, 120])
        left.setMinimumWidth(520)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 3)
        split.setSizes([640, 610])  # the queue's columns readable, the picture beside them
        QVBoxLayout(self).addWidget(split)
        self._enable(None)

    # -- the queue (read on the reader thread) ---------------------------------------------

    def reload(self) -> None:
        self.reader.run(lambda lib: review_queue(lib, "auto", 500), self._loaded, self._load_failed)

    def _load_failed(self, exc: Exception) -> None:
        self.summary.setText(str(exc))
        self.message.emit(str(exc))

    def _loaded(self, report: dict[str, Any]) -> None:
        self.rows = report["rows"]
        for row in self.rows:
            row["reviewed"] = row["label_by"] == self.reader.actor
        model_rows = sum(r["why"] == "model" for r in self.rows)
        parts = []
        if report["unavailable"]:
            parts.append(f"Model issues unavailable: {report['unavailable']}")
        else:
            parts.append(
                f"{model_rows} label issues (confident learning on {report['held_out']} "
                f"held-out predictions of the active model {report['model']})"
            )
        parts.append(f"{len(self.rows) - model_rows} more images whose annotators disagree")
        self.summary.setText("; ".join(parts))
        self.message.emit(parts[0])
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            self._fill_row(i, row)
        self.table.resizeColumnsToContents()
        self.gallery_button.setEnabled(bool(self.rows))
        if self.rows:
            self.table.selectRow(0)

    def _fill_row(self, i: int, row: dict[str, Any]) -> None:
        def pct(p: float | None) -> str:
            return "" if p is None else f"{p:.0%}"

        annotators = ", ".join(f"{a}: {c}" for a, c in sorted(row["annotators"].items()))
        why = WHY[row["why"]]
        if row["why"] == "model" and row["annotators"]:
            why = "both"
        values = (
            str(row["rank"]),
            row["image_id"][:12],
            why,
            row["label"] or "unlabelled",
            row["model_says"] or "",
            pct(row["p_label"]),
            pct(row["p_model"]),
            "✓ you" if row.get("reviewed") else "",
            annotators,
        )
        for j, value in enumerate(values):
            item = QTableWidgetItem(value)
            item.setData(Qt.ItemDataRole.UserRole, i)
            if COLUMNS[j] == "annotators":
                item.setToolTip(annotators)
            self.table.setItem(i, j, item)

    def selected(self) -> dict[str, Any] | None:
        items = self.table.selectedItems()
        return self.rows[items[0].data(Qt.ItemDataRole.UserRole)] if items else None

    def select_image(self, image_id: str) -> None:
        for i, row in enumerate(self.rows):
            if row["image_id"] == image_id:
                self.table.selectRow(i)
                return

    def _show_selected(self) -> None:
        row = self.selected()
        self._enable(row)
        if row is None:
            self.viewer.show_image(None)
            self.bars.set_probabilities({}, None)
            self.annotators.setText("")
            return
        self.viewer.show_image(row["image_id"])
        self.bars.set_probabilities(row["probabilities"], row["label"])
        labels = "; ".join(f"{a}: {c}" for a, c in sorted(row["annotators"].items()))
        self.annotators.setText(f"<b>Annotators</b>: {labels}" if labels else "")

    def _enable(self, row: dict[str, Any] | None) -> None:
        if self.readonly:
            row = None
        label = row["label"] if row else None
        model = row["model_says"] if row else None
        self.confirm_button.setEnabled(bool(label))
        self.accept_button.setEnabled(bool(model and model != label))
        self.accept_button.setText(f"Relabel as {model}" if model else "Relabel as the model says")
        self.relabel_button.setEnabled(row is not None)
        suggested = model or label
        if suggested in taxonomy.diagnoses():
            self.choice.setCurrentIndex(self.choice.findData(suggested))

    # -- decisions (through the undoable label path) ---------------------------------------

    def confirm(self) -> None:
        row = self.selected()
        if row is None or not row["label"]:
            return
        self._label(row, row["label"], row.get("free_text"), f"confirmed {row['label']}")

    def relabel_as_model(self) -> None:
        row = self.selected()
        if row is not None and row["model_says"]:
            self.relabel(row["model_says"])

    def relabel(self, code: str) -> None:
        row = self.selected()
        if row is not None:
            self._label(row, code, None, f"relabelled {row['label'] or 'unlabelled'} → {code}")

    def _label(self, row: dict[str, Any], code: str, free_text: str | None, what: str) -> None:
        self.editor.set_label([row["image_id"]], code, self.certainty(), free_text)
        self.status.setText(f"{row['image_id'][:12]}: {what} (Undo takes it back)")
        current = self.table.currentRow()
        if current + 1 < self.table.rowCount():
            self.table.selectRow(current + 1)  # on to the next in the queue

    def _edited(self, ids: list[str]) -> None:
        """Re-read the edited rows' current label and who gave it (an undo included)."""
        mine = [r["image_id"] for r in self.rows if r["image_id"] in set(ids)]
        if mine:
            self.reader.run(lambda lib: _current(lib, mine), self._refreshed, self._load_failed)

    def _refreshed(self, current: dict[str, dict[str, Any]]) -> None:
        for i, row in enumerate(self.rows):
            if row["image_id"] in current:
                row.update(current[row["image_id"]])
                self._fill_row(i, row)
        if self.selected() is not None:
            self._enable(self.selected())


def _current(lib: Library, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per image: its current diagnosis and wording, and whether this reviewer gave it."""
    out: dict[str, dict[str, Any]] = {}
    for image_id in ids:
        label = lib.current_label(image_id) or {}
        out[image_id] = {
            "label": label.get("diagnosis"),
            "free_text": label.get("free_text"),
            "reviewed": label.get("annotator") == lib.actor,
        }
    return out
