"""Map a CSV's columns and values before anything is written (``dermdesk import --csv``).

The user picks, for each library field, the CSV column that holds it (same-named columns
are picked already), up to two image columns each with its modality (one row per lesion
with a clinical and a dermoscopic photo), and sees every distinct diagnosis and body-site
value with what it will become; typing into the "becomes" column maps a value (checked
against the vocabulary). The choices are remembered per dataset name. Accepting plans
the import (:func:`dermdesk.exchange.csvmap.plan_csv`); the import dialog runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.exchange.csvmap import (
    FIELDS,
    check_target,
    distinct_values,
    plan_csv,
    preview_value,
    value_key,
)
from dermdesk.exchange.datasets import Plan
from dermdesk.exchange.tables import DatasetError, csv_columns
from dermdesk.gui.settings import Settings
from dermdesk.library.records import DEVICE_FIELDS

NONE = "(not in this file)"
PREVIEW_FIELDS = ("diagnosis", "body_site")


class CsvImportDialog(QDialog):
    """Column mapping, image columns and a value preview for one CSV file."""

    def __init__(
        self, csv_path: Path, settings: Settings | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Import {csv_path.name}")
        self.csv_path = csv_path
        self.settings = settings
        self.plan: Plan | None = None
        self.columns = csv_columns(csv_path)
        self.dataset = QLineEdit(csv_path.stem)
        self.dataset.editingFinished.connect(self._recall)
        self.fields: dict[str, QComboBox] = {}
        for fld in FIELDS:
            if fld == "file":
                continue
            self.fields[fld] = self._column_combo(fld if fld in self.columns else None)
            self.fields[fld].currentIndexChanged.connect(self.refresh_preview)
        self.images = [
            (self._column_combo(self._guess_image_column()), self._modality_combo("clinical")),
            (self._column_combo(None), self._modality_combo("dermoscopic")),
        ]
        self.preview = QTableWidget(0, 4)
        self.preview.setHorizontalHeaderLabels(["field", "value in the file", "rows", "becomes"])
        self.preview.horizontalHeader().setStretchLastSection(True)
        self.preview.itemChanged.connect(self._edited)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b3261e;")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Plan the import")
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        self.value_maps: dict[str, dict[str, str]] = {}
        self._layout()
        self._recall()
        self.resize(900, 640)

    # -- widgets --------------------------------------------------------------------------

    def _column_combo(self, chosen: str | None) -> QComboBox:
        combo = QComboBox()
        combo.addItem(NONE, None)
        for column in self.columns:
            combo.addItem(column, column)
        if chosen is not None:
            combo.setCurrentIndex(max(0, combo.findData(chosen)))
        return combo

    def _modality_combo(self, default: str) -> QComboBox:
        combo = QComboBox()
        for m in taxonomy.MODALITIES:
            combo.addItem(m, m)
        combo.setCurrentIndex(combo.findData(default))
        return combo

    def _guess_image_column(self) -> str | None:
        for name in ("file", "path", "image", "filename", "img_id", "image_id"):
            if name in self.columns:
                return name
        return self.columns[0] if self.columns else None

    def _layout(self) -> None:
        form = QFormLayout()
        main = QFormLayout()
        form.addRow("Dataset name", self.dataset)
        for k, (column, modality) in enumerate(self.images):
            row = QHBoxLayout()
            row.addWidget(column, 2)
            row.addWidget(QLabel("as"))
            row.addWidget(modality, 1)
            form.addRow("Image column" if k == 0 else "Second image column", row)
        # Device fields in a second column: the preview below needs the height.
        devices = QFormLayout()
        for fld, combo in self.fields.items():
            target = devices if fld in DEVICE_FIELDS else main
            target.addRow(fld.replace("_", " ").capitalize(), combo)
        columns = QHBoxLayout()
        columns.addLayout(main, 1)
        columns.addLayout(devices, 1)
        refresh = QPushButton("Refresh the preview")
        refresh.clicked.connect(self.refresh_preview)
        note = QLabel(
            "Every distinct diagnosis and body site in the file, and what it will be stored "
            "as. Type a code or a known word into 'becomes' to map a value; unknown values "
            "are kept as free text with a warning, never refused."
        )
        note.setWordWrap(True)
        v = QVBoxLayout(self)
        v.addLayout(form)
        v.addLayout(columns)
        v.addWidget(note)
        v.addWidget(self.preview, 1)
        v.addWidget(refresh, 0, Qt.AlignmentFlag.AlignLeft)
        v.addWidget(self.error)
        v.addWidget(self.buttons)

    # -- mapping ----------------------------------------------------------------------------

    def mapping(self) -> dict[str, str]:
        out = {fld: combo.currentData() for fld, combo in self.fields.items()}
        return {k: v for k, v in out.items() if v}

    def image_columns(self) -> list[tuple[str, str | None]]:
        return [
            (column.currentData(), modality.currentData())
            for column, modality in self.images
            if column.currentData()
        ]

    def refresh_preview(self) -> None:
        """Distinct values of the previewed fields, and what each becomes."""
        self.preview.blockSignals(True)
        try:
            self.preview.setRowCount(0)
            mapping = {**{f: "" for f in PREVIEW_FIELDS}, **self.mapping()}
            values = distinct_values(self.csv_path, mapping, PREVIEW_FIELDS)
            for fld in PREVIEW_FIELDS:
                for raw, n in sorted(values.get(fld, {}).items(), key=lambda kv: -kv[1]):
                    row = self.preview.rowCount()
                    self.preview.insertRow(row)
                    for col, text in enumerate(
                        (fld, raw, str(n), preview_value(fld, raw, self.value_maps))
                    ):
                        item = QTableWidgetItem(text)
                        if col < 3:
                            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                        self.preview.setItem(row, col, item)
            self.preview.resizeColumnsToContents()
        except DatasetError as exc:
            self.error.setText(str(exc))
        finally:
            self.preview.blockSignals(False)

    def _edited(self, item: QTableWidgetItem) -> None:
        """A 'becomes' cell typed in: a value map entry, checked now."""
        if item.column() != 3:
            return
        field_item, raw_item = self.preview.item(item.row(), 0), self.preview.item(item.row(), 1)
        if field_item is None or raw_item is None:
            return
        fld, raw = field_item.text(), raw_item.text()
        target = item.text().strip()
        try:
            check_target(fld, target, f"{fld} {raw!r}")
        except DatasetError as exc:
            self.error.setText(str(exc))
            return
        self.error.clear()
        self.value_maps.setdefault(fld, {})[value_key(raw)] = target
        self.refresh_preview()

    # -- remembering ------------------------------------------------------------------------

    def _recall(self) -> None:
        """The mapping last used for this dataset name, if any."""
        saved = self.settings.csv_mapping(self.dataset.text().strip()) if self.settings else {}
        for fld, column in (saved.get("fields") or {}).items():
            if fld in self.fields and column in self.columns:
                self.fields[fld].setCurrentIndex(self.fields[fld].findData(column))
        for (column_box, modality_box), (column, modality) in zip(
            self.images, saved.get("images") or [], strict=False
        ):
            if column in self.columns:
                column_box.setCurrentIndex(column_box.findData(column))
                modality_box.setCurrentIndex(max(0, modality_box.findData(modality)))
        self.value_maps = {k: dict(v) for k, v in (saved.get("value_maps") or {}).items()}
        self.refresh_preview()

    def remembered(self) -> dict[str, Any]:
        return {
            "fields": self.mapping(),
            "images": [list(pair) for pair in self.image_columns()],
            "value_maps": self.value_maps,
        }

    def _accept(self) -> None:
        images = self.image_columns()
        if not images:
            self.error.setText("choose the column that names the image files")
            return
        dataset = self.dataset.text().strip() or self.csv_path.stem
        try:
            self.plan = plan_csv(
                self.csv_path,
                self.mapping(),
                dataset=dataset,
                image_columns=images,
                value_maps=self.value_maps,
                modality=images[0][1] or "clinical",
                same_named=False,
            )
        except DatasetError as exc:
            self.error.setText(str(exc))
            return
        if self.settings is not None:
            self.settings.set_csv_mapping(dataset, self.remembered())
        self.accept()
