"""The keyboard shortcuts sheet, generated from the one table of actions."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk.gui.actions import ACTIONS, SECTIONS, ActionSpec, shortcut_text


class ShortcutsSheet(QDialog):
    """Every action with a shortcut, by section; type to filter."""

    def __init__(
        self, specs: tuple[ActionSpec, ...] = ACTIONS, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.specs = [s for s in specs if s.shortcuts]
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter, e.g. 'melanoma' or 'zoom'")
        self.search.textChanged.connect(self._fill)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(
            1, QHeaderView.ResizeMode.ResizeToContents
        )
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self._fill()
        self.resize(560, 720)

    def _fill(self) -> None:
        needle = self.search.text().strip().lower()
        rows: list[tuple[str, str, bool]] = []
        for section in SECTIONS:
            matches = [
                s
                for s in self.specs
                if s.section == section and needle in (s.text + s.name).lower()
            ]
            if matches:
                rows.append((section, "", True))
                rows += [(s.text.replace("&", ""), shortcut_text(s), False) for s in matches]
        self.table.setRowCount(len(rows))
        bold = QFont(self.font())
        bold.setBold(True)
        for i, (text, keys, heading) in enumerate(rows):
            item = QTableWidgetItem(text)
            if heading:
                item.setFont(bold)
            self.table.setItem(i, 0, item)
            key_item = QTableWidgetItem(keys)
            key_item.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(i, 1, key_item)

    def listed(self) -> list[str]:
        """Texts of the rows shown (for tests)."""
        items = (self.table.item(i, 0) for i in range(self.table.rowCount()))
        return [item.text() for item in items if item is not None]
