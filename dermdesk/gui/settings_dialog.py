"""The settings dialog (appearance, annotation defaults and number keys, import)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.gui.settings import THEMES, THUMB_SIZES, Settings


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.theme = QComboBox()
        for t in THEMES:
            self.theme.addItem(t.capitalize(), t)
        self.theme.setCurrentIndex(self.theme.findData(settings.theme))
        self.thumb = QComboBox()
        for size, name in zip(THUMB_SIZES, ("Small", "Medium", "Large"), strict=True):
            self.thumb.addItem(f"{name} ({size} px)", size)
        self.thumb.setCurrentIndex(self.thumb.findData(settings.thumb_size))
        self.annotator = QLineEdit(settings.annotator)
        self.annotator.setToolTip("Recorded with every label and in the audit log")
        self.certainty = QComboBox()
        for code, name in taxonomy.certainty_names().items():
            self.certainty.addItem(name, code)
        self.certainty.setCurrentIndex(max(0, self.certainty.findData(settings.certainty)))
        self.modality = QComboBox()
        for m in taxonomy.MODALITIES:
            self.modality.addItem(m, m)
        self.modality.setCurrentIndex(max(0, self.modality.findData(settings.import_modality)))
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Theme", self.theme)
        form.addRow("Thumbnails", self.thumb)
        form.addRow("Annotator name", self.annotator)
        form.addRow("Default certainty for new labels", self.certainty)
        form.addRow("Plain photos import as", self.modality)
        form.addRow(self._number_keys())
        form.addRow(buttons)

    def _number_keys(self) -> QGroupBox:
        """Which diagnosis each number key 1-9 gives (any entry of the vocabulary)."""
        box = QGroupBox("Number keys label as")
        grid = QGridLayout(box)
        self.keys: dict[str, QComboBox] = {}
        current = self.settings.diagnosis_keys()
        for i, digit in enumerate(current):
            combo = QComboBox()
            combo.addItem("(nothing)", "")
            for choice in taxonomy.label_choices():
                combo.addItem(choice.title, choice.key)
            combo.setCurrentIndex(max(0, combo.findData(current[digit])))
            combo.setAccessibleName(f"Key {digit}")
            row, col = i % 5, 2 * (i // 5)
            grid.addWidget(QLabel(digit), row, col)
            grid.addWidget(combo, row, col + 1)
            self.keys[digit] = combo
        return box

    def accept(self) -> None:
        s = self.settings
        s.theme = self.theme.currentData()
        s.thumb_size = self.thumb.currentData()
        s.annotator = self.annotator.text()
        s.certainty = self.certainty.currentData()
        s.import_modality = self.modality.currentData()
        s.set_diagnosis_keys({digit: combo.currentData() for digit, combo in self.keys.items()})
        s.sync()
        super().accept()
