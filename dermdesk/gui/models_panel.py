"""The models view: registered models, their lineage and metrics; choose the active one.

Metrics are shown per class, skin tone, device and domain as the training
side records them (any nesting of ``{section: {group: {metric: value}}}``).
Making a model active goes through a callable the main window provides (the
writer here; the model registry's promotion rule once issue 5 lands).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk.gui.table_model import Index, ListTableModel
from dermdesk.library import Library
from dermdesk.library.browse import flatten_metrics, lineage, model_rows

COLUMNS = ("Name", "Kind", "Architecture", "Status", "Created", "Trained on")


def _training_size(training_set: Any) -> str:
    if isinstance(training_set, dict):
        ids = training_set.get("image_ids") or training_set.get("ids") or []
        return f"{len(ids):,} images" if ids else ""
    if isinstance(training_set, list):
        return f"{len(training_set):,} images"
    return ""


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

    activated = Signal(str)

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
        self.metrics = QTableWidget()
        self.metrics.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.metrics.verticalHeader().setVisible(False)
        self.metrics.setAlternatingRowColors(True)
        self.activate_button = QPushButton("Make active model")
        self.activate_button.setEnabled(False)
        self.activate_button.clicked.connect(self._activate_selected)
        self._build()

    def _build(self) -> None:
        right = QWidget()
        v = QVBoxLayout(right)
        v.addWidget(self.title)
        v.addWidget(self.lineage)
        v.addWidget(
            QLabel("<b>Metrics</b> (overall, per class, per skin tone, per device, per domain)")
        )
        v.addWidget(self.metrics, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.activate_button)
        v.addLayout(row)
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
        self.activate_button.setEnabled(model_id is not None)
        if model_id is None:
            return
        m = next(r for r in self.model.rows if r["id"] == model_id)
        self.activate_button.setEnabled(m["status"] != "active")
        arch = m["architecture"] or "—"
        self.title.setText(
            f"<h3>{m['name']}</h3>{m['kind']} · {arch} · status <b>{m['status']}</b> · {m['id']}"
        )
        chain = lineage(self.lib, model_id)
        self.lineage.setText(
            "<b>Lineage</b>: "
            + " ← ".join(f"{c['name']} ({c['kind']})" for c in chain)
            + (f"<br><b>Parameters</b>: {m['params']}" if m["params"] else "")
        )
        self._show_metrics(m["metrics"])

    def _show_metrics(self, metrics: Any) -> None:
        flat = flatten_metrics(metrics)
        names = list(dict.fromkeys(metric for _, _, metric, _ in flat))
        groups = list(dict.fromkeys((section, group) for section, group, _, _ in flat))
        table = {(s, g, k): v for s, g, k, v in flat}
        self.metrics.clear()
        self.metrics.setColumnCount(2 + len(names))
        self.metrics.setHorizontalHeaderLabels(["Section", "Group", *names])
        self.metrics.setRowCount(len(groups))
        for i, (section, group) in enumerate(groups):
            self.metrics.setItem(i, 0, QTableWidgetItem(section))
            self.metrics.setItem(i, 1, QTableWidgetItem(group))
            for j, name in enumerate(names):
                value = table.get((section, group, name))
                text = (
                    ""
                    if value is None
                    else (f"{value:.3f}" if isinstance(value, float) else str(value))
                )
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.metrics.setItem(i, 2 + j, item)
        self.metrics.resizeColumnsToContents()

    def _activate_selected(self) -> None:
        model_id = self.selected_id()
        if model_id:
            self._activate(model_id)
            self.activated.emit(model_id)
