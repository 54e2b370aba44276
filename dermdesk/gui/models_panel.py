"""The models view: registered models, their lineage and metrics; choose the active one.

The metrics are the report a fine-tuning run records (``library.browse.model_report``
reads it): the headline figures with their 95 % intervals, a bar chart with intervals
per skin type, device, modality and domain, per-class sensitivity, and the parameters
as a table. Making a model active goes through a callable the main window provides
(the promotion rule, off the GUI thread).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk.gui.charts import IntervalChart
from dermdesk.gui.table_model import Index, ListTableModel
from dermdesk.library import Library, model_store
from dermdesk.library.browse import (
    REPORT_GROUPINGS,
    ModelReport,
    lineage,
    model_report,
    model_rows,
    readable_params,
    training_size,
)

COLUMNS = ("Name", "Kind", "Architecture", "Status", "Created", "Trained on")


def _training_size(training_set: Any) -> str:
    n = training_size(training_set)
    return f"{n:,} images" if n else ""


class ModelsTableModel(ListTableModel):
    COLUMNS = COLUMNS

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.items

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self.items = rows
        self.endResetModel()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        m = self.item(index)
        if m is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            values = (
                m["name"],
                m["kind"],
                m["architecture"] or "",
                m["status"],
                (m["created_at"] or "")[:16],
                _training_size(m["training_set"]),
            )
            return values[index.column()]
        if role == Qt.ItemDataRole.FontRole and m["status"] == "active":
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.UserRole:
            return m["id"]
        return None


class ModelsPanel(QWidget):
    """Models on the left; the chosen one's lineage, parameters and metrics on the right."""

    readonly = False  # a read-only library: no promotion

    activated = Signal(str)
    evaluate_requested = Signal(str)  # score this model on the gallery's filtered images

    def __init__(
        self, lib: Library, activate: Callable[[str], None], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.lib = lib
        self._activate = activate
        self.model = ModelsTableModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(self._show_selected)
        self.title = QLabel(
            "No models registered yet. Train one from the Jobs menu or the command line."
        )
        self.title.setWordWrap(True)
        self.lineage = QLabel()
        self.lineage.setWordWrap(True)
        self.lineage.setTextFormat(Qt.TextFormat.RichText)
        self.split = QComboBox()
        # Evaluations are told apart by name and date: show them whole.
        self.split.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.split.addItem("held-out test split", "test")
        self.split.addItem("validation split", "val")
        self.split.currentIndexChanged.connect(lambda _: self._show_report())
        self.headline = QLabel()
        self.headline.setWordWrap(True)
        self.headline.setTextFormat(Qt.TextFormat.RichText)
        self.charts = {grouping: IntervalChart() for grouping, _ in REPORT_GROUPINGS}
        self.per_class = _table(["Class", "Sensitivity", "Specificity", "Images"])
        self.params = _table(["Parameter", "Value"])
        self.activate_button = QPushButton("Make active model")
        self.activate_button.setEnabled(False)
        self.activate_button.clicked.connect(self._activate_selected)
        self.evaluate_button = QPushButton("Evaluate on the filtered images")
        self.evaluate_button.setToolTip(
            "Score this model on the labelled images matching the Library tab's filters; "
            "the report is kept with the model and listed under 'Metrics on the'"
        )
        self.evaluate_button.setEnabled(False)
        self.evaluate_button.clicked.connect(self._evaluate_selected)
        # Off by default: a model scored on its own training images flatters itself (the
        # CLI twin is `models evaluate --include-seen`).
        self.include_seen = QCheckBox("Include its own training images")
        self.include_seen.setToolTip(
            "Also score the images this model or its parents trained or were validated on "
            "(optimistic; the report says how many). Off: they are left out."
        )
        self._metrics: dict[str, Any] = {}
        self._build()

    def _build(self) -> None:
        body = QWidget()
        v = QVBoxLayout(body)
        v.addWidget(self.title)
        v.addWidget(self.lineage)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("<b>Metrics</b> on the"))
        pick.addWidget(self.split)
        pick.addStretch(1)
        v.addLayout(pick)
        v.addWidget(self.headline)
        for grouping, title in REPORT_GROUPINGS:
            box = QGroupBox(f"{title}: balanced accuracy, 95 % interval")
            QVBoxLayout(box).addWidget(self.charts[grouping])
            v.addWidget(box)
        for title, table in (("Per class", self.per_class), ("Parameters", self.params)):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(table)
            v.addWidget(box)
        v.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        right = QWidget()
        r = QVBoxLayout(right)
        r.setContentsMargins(0, 0, 0, 0)
        r.addWidget(scroll, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.include_seen)
        row.addWidget(self.evaluate_button)
        row.addWidget(self.activate_button)
        r.addLayout(row)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(right)
        split.setSizes([520, 700])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

    def refresh(self) -> None:
        selected = self.selected_id()
        self.model.set_rows(model_rows(self.lib))
        if selected:
            self.select(selected)
        elif self.model.rows:
            self.table.selectRow(0)

    def select(self, model_id: str) -> None:
        for row, m in enumerate(self.model.rows):
            if m["id"] == model_id:
                self.table.selectRow(row)

    def selected_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.rows[rows[0].row()]["id"] if rows else None

    def _show_selected(self) -> None:
        model_id = self.selected_id()
        self.activate_button.setEnabled(model_id is not None and not self.readonly)
        if model_id is None:
            return
        m = next(r for r in self.model.rows if r["id"] == model_id)
        self.activate_button.setEnabled(m["status"] != "active" and not self.readonly)
        self.evaluate_button.setEnabled(bool(m["file"]) and not self.readonly)
        arch = m["architecture"] or "—"
        self.title.setText(
            f"<h3>{m['name']}</h3>{m['kind']} · {arch} · status <b>{m['status']}</b> · {m['id']}"
        )
        chain = lineage(self.lib, model_id)
        trained = _training_size(m["training_set"])
        self.lineage.setText(
            "<b>Lineage</b>: "
            + " ← ".join(f"{c['name']} ({c['kind']}, {c['id']})" for c in chain)
            + (f"<br><b>Images</b>: {trained} in its patient-grouped split" if trained else "")
        )
        self._fill_sources(m)
        self._show_report()
        _fill(self.params, [list(r) for r in readable_params(m["params"])])

    def _fill_sources(self, m: dict[str, Any]) -> None:
        """What the metrics can be read on: the model's own splits, then each stored
        evaluation on a library query (``models evaluate``), newest first."""
        chosen = self.split.currentData()
        metrics = dict(m["metrics"] or {})
        self.split.blockSignals(True)
        self.split.clear()
        self.split.addItem("held-out test split", "test")
        self.split.addItem("validation split", "val")
        for ev in model_store.evaluations(self.lib, m["id"]):
            key = f"evaluation {ev['id']}"
            metrics[key] = ev["report"]
            seen = ", with its training images" if ev["report"].get("includes_seen") else ""
            self.split.addItem(f"{ev['name']}{seen} ({ev['created_at'][:10]}, {key})", key)
        index = self.split.findData(chosen)
        self.split.setCurrentIndex(max(0, index))
        self.split.blockSignals(False)
        self._metrics = metrics

    def _show_report(self) -> None:
        self.show_report(model_report(self._metrics, self.split.currentData()))

    def show_report(self, report: ModelReport) -> None:
        """Headline figures, one interval chart per grouping and the per-class table."""
        if report.empty:
            self.headline.setText(f"No metrics recorded on the {report.split} split.")
        else:
            lines = [f"{f.label}: <b>{f.text()}</b>" for f in report.overall.values()]
            if report.note:
                lines.append(f"<i>{html.escape(report.note, quote=False)}</i>")
            self.headline.setText("<br>".join(lines))
        overall = report.overall.get("balanced_accuracy")
        for grouping, chart in self.charts.items():
            chart.set_rows(report.groups.get(grouping, []), overall.value if overall else None)
        _fill(
            self.per_class,
            [[code, _pct(sens), _pct(spec), str(n)] for code, sens, spec, n in report.per_class],
        )

    def _evaluate_selected(self) -> None:
        model_id = self.selected_id()
        if model_id:
            self.evaluate_requested.emit(model_id)

    def _activate_selected(self) -> None:
        model_id = self.selected_id()
        if model_id:
            self._activate(model_id)
            self.activated.emit(model_id)


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.setAlternatingRowColors(True)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            table.setItem(i, j, QTableWidgetItem(text))
    table.resizeColumnsToContents()
    height = table.horizontalHeader().height() + sum(table.rowHeight(i) for i in range(len(rows)))
    table.setFixedHeight(min(height + 4, 320))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"
