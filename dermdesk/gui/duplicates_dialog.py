"""Library ▸ Review duplicates…: near-duplicate pairs side by side, decided one by one.

CLI twins: ``dermdesk curate duplicates`` lists the pairs, ``curate decide A B DECISION``
and ``curate undo N`` act on them. The pairs are found on the reader thread; decisions go
through the writer thread (:mod:`dermdesk.library.curation_store`), each a row with its
audit entries, and Undo takes the selected pair's decision back. The two images are shown
in a viewer of their own with linked zoom (Fit, 1:1, +, − apply to both sides).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk.gui.tasks import Background, LibraryWorker
from dermdesk.gui.viewer import ViewerPanel
from dermdesk.library import Library
from dermdesk.library import curation_store as cs

DECISION_BUTTONS = (
    ("same_lesion", "Same lesion, keep both", "Both stay: the right image joins the left's lesion"),
    ("merge", "Merge", "One picture: the right image joins the left's lesion and is excluded"),
    ("exclude", "Exclude right", "The right image is kept out of datasets (never deleted)"),
    ("not_duplicate", "Not duplicates", "Different pictures: splits stop joining them"),
)


class DuplicatesDialog(QDialog):
    """A table of pairs (nearest first) beside the selected pair, and the decisions."""

    decided = Signal()
    # a registered backbone's id: find near-copies by its features (the embed_duplicates job)
    embed_requested = Signal(str)

    def __init__(
        self,
        lib: Library,
        reader: LibraryWorker,
        writer: LibraryWorker,
        decoder: Background,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Review duplicates")
        self.reader, self.writer = reader, writer
        self.pairs: list[dict[str, Any]] = []
        self.viewer = ViewerPanel(lib, decoder)
        self.viewer.set_compare(True)
        self._build()
        self.resize(1200, 720)
        self.reload()

    def _build(self) -> None:
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["left", "right", "distance", "decision"])
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.undecided = QCheckBox("Undecided only")
        self.undecided.toggled.connect(self._fill)
        self.summary = QLabel("finding near-duplicate pairs…")
        self.backbones = QComboBox()
        self.backbones.setToolTip(
            "A registered MAE backbone (Models): near-copies by its features' cosine, beside "
            "the perceptual-hash pairs (CLI: dermdesk curate embed-duplicates)"
        )
        self.embed_button = QPushButton("Find with backbone")
        self.embed_button.clicked.connect(self._embed)
        self.embed_button.setEnabled(False)  # until the registered backbones are read
        embed_row = QHBoxLayout()
        embed_row.addWidget(self.backbones, 1)
        embed_row.addWidget(self.embed_button)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.summary)
        lv.addLayout(embed_row)
        lv.addWidget(self.undecided)
        lv.addWidget(self.table, 1)
        self.buttons: dict[str, QPushButton] = {}
        bar = QHBoxLayout()
        for decision, text, tip in DECISION_BUTTONS:
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, d=decision: self.decide(d))
            self.buttons[decision] = button
            bar.addWidget(button)
        self.undo_button = QPushButton("Undo decision")
        self.undo_button.clicked.connect(self.undo)
        bar.addStretch(1)
        bar.addWidget(self.undo_button)
        self.status = QLabel("")
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        self.viewer.buttons["compare"].hide()  # always side by side here
        self.viewer.compare_with.hide()
        rv.addWidget(self.viewer, 1)
        rv.addLayout(bar)
        rv.addWidget(self.status)
        self.viewer.splitter.setSizes([520, 140])  # the pictures first, details below
        left.setMinimumWidth(400)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addWidget(split)
        self._enable(False)

    # -- data ------------------------------------------------------------------------------

    def _alive(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """``callback`` unless the dialog was closed (and deleted) before a reply came."""

        def call(value: Any) -> None:
            if shiboken6.isValid(self):
                callback(value)

        return call

    def reload(self) -> None:
        self.reader.run(
            cs.duplicate_pairs,
            self._alive(self._loaded),
            self._alive(lambda exc: self.summary.setText(str(exc))),
        )
        self.reader.run(
            lambda lib: [(m["id"], m["name"]) for m in lib.models() if m["kind"] == "backbone"],
            self._alive(self._show_backbones),
        )

    def _show_backbones(self, backbones: list[tuple[str, str]]) -> None:
        self.backbones.clear()
        for model_id, name in backbones:
            self.backbones.addItem(f"{name} ({model_id})", model_id)
        if not backbones:
            self.backbones.addItem("no backbone yet (Models ▸ pretrain one)", None)
        self.embed_button.setEnabled(bool(backbones))

    def _embed(self) -> None:
        model_id = self.backbones.currentData()
        if model_id:
            self.embed_requested.emit(str(model_id))
            self.status.setText(f"finding near-copies with {model_id} (Jobs panel)…")

    def _loaded(self, pairs: list[dict[str, Any]]) -> None:
        keep = self.selected()
        self.pairs = pairs
        self._fill()
        if keep is not None:
            self.select_pair(keep["a"], keep["b"])

    def _fill(self) -> None:
        shown = [p for p in self.pairs if not (self.undecided.isChecked() and p["decision"])]
        undecided = sum(p["decision"] is None for p in self.pairs)
        self.summary.setText(f"{len(self.pairs)} near-duplicate pairs, {undecided} undecided")
        self.table.blockSignals(True)
        self.table.setRowCount(len(shown))
        for i, p in enumerate(shown):
            for j, value in enumerate(
                (p["a"][:12], p["b"][:12], _how_near(p), p["decision"] or "")
            ):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, p)
                self.table.setItem(i, j, item)
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()
        if shown and not self.table.selectedItems():
            self.table.selectRow(0)
        self._show_selected()

    def selected(self) -> dict[str, Any] | None:
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def select_pair(self, a: str, b: str) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            p = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
            if p is not None and (p["a"], p["b"]) == (a, b):
                self.table.selectRow(row)
                return

    def _show_selected(self) -> None:
        p = self.selected()
        self._enable(p is not None)
        if p is None:
            self.viewer.show_image(None)
            return
        self.viewer.show_image(p["a"], second=p["b"])
        self.undo_button.setEnabled(p["decision_id"] is not None)
        for button in self.buttons.values():
            button.setEnabled(p["decision_id"] is None)

    def _enable(self, on: bool) -> None:
        for button in [*self.buttons.values(), self.undo_button]:
            button.setEnabled(on)

    # -- decisions (on the writer thread) --------------------------------------------------

    def decide(self, decision: str) -> None:
        p = self.selected()
        if p is None:
            return
        self._enable(False)
        self.writer.run(
            lambda lib: cs.decide(lib, p["a"], p["b"], decision),
            self._alive(lambda n: self._done(f"decision {n}: {decision}")),
            self._alive(self._failed),
        )

    def undo(self) -> None:
        p = self.selected()
        if p is None or p["decision_id"] is None:
            return
        self._enable(False)
        decision_id = p["decision_id"]
        self.writer.run(
            lambda lib: cs.undo(lib, decision_id),
            self._alive(lambda _: self._done(f"decision {decision_id} undone")),
            self._alive(self._failed),
        )

    def _done(self, message: str) -> None:
        self.status.setText(message)
        self.decided.emit()
        self.reload()

    def _failed(self, exc: Exception) -> None:
        self.status.setText(str(exc))
        self._show_selected()


def _how_near(pair: dict[str, object]) -> str:
    """The perceptual-hash distance, and the embedding cosine where a backbone found it."""
    parts = []
    if pair.get("distance") is not None:
        parts.append(str(pair["distance"]))
    if pair.get("cosine") is not None:
        parts.append(f"cos {float(pair['cosine']):.3f}")  # type: ignore[arg-type]
    return " · ".join(parts)
