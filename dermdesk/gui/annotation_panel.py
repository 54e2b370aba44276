"""The annotation panel: diagnosis, certainty, skin type, patient/lesion, body site, device.

It shows the selection's current values (one image, or what a batch has in
common) and emits what the user chose; the main window hands that to the
:class:`~dermdesk.gui.editing.Editor`, which makes it an undoable edit. The
panel itself never writes.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.gui.link_fields import LinkFields
from dermdesk.gui.swatches import SwatchPicker, fitzpatrick_swatches, monk_swatches
from dermdesk.library import Library
from dermdesk.library.browse import current_tones

MAX_BATCH_READ = 400  # beyond this a batch shows its size, not its shared values
DEVICE_EDIT_FIELDS = (
    ("device_make", "Make"),
    ("device_model", "Model"),
    ("device_lens", "Lens"),
    ("device_software", "Software"),
)


class DiagnosisPicker(QComboBox):
    """An editable combo over the taxonomy: type any part of a code or name to find it."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)
        for d in taxonomy.diagnoses().values():
            self.addItem(f"{d.code} — {d.name}", d.code)
        completer = QCompleter(self.model(), self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.setCompleter(completer)
        self._edit().setPlaceholderText("type to search diagnoses…")
        self.setAccessibleName("Diagnosis")
        # Choosing in the completer's popup makes the combo emit `activated` itself.
        self.activated.connect(self._activated)

    def _activated(self, row: int) -> None:
        code = self.itemData(row)
        if code:
            self.chosen.emit(code)

    def set_number_keys(self, keys: dict[str, str]) -> None:
        """Show each code's number key ("MEL — Melanoma   [1]")."""
        digit_of = {key: digit for digit, key in keys.items()}
        for row in range(self.count()):
            d = taxonomy.diagnoses()[self.itemData(row)]
            key = f"   [{digit_of[d.code]}]" if d.code in digit_of else ""
            self.setItemText(row, f"{d.code} — {d.name}{key}")

    def show_code(self, code: str | None, mixed: bool = False) -> None:
        self.blockSignals(True)
        row = self.findData(code) if code else -1
        self.setCurrentIndex(row)
        self._edit().setCursorPosition(0)  # show the code, not the tail of a long name
        if row < 0:
            self.setEditText("")
            self._edit().setPlaceholderText("(mixed)" if mixed else "unlabelled — type to search…")
        self.blockSignals(False)

    def start_search(self) -> None:
        self.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self._edit().selectAll()

    def _edit(self) -> QLineEdit:
        edit = self.lineEdit()
        assert edit is not None  # the combo is editable
        return edit


class AnnotationPanel(QScrollArea):
    """Editors for the selected images; emits requests, shows current values."""

    label_chosen = Signal(str)
    search_requested = Signal()  # the diagnosis search over the whole vocabulary
    certainty_chosen = Signal(str)
    fitzpatrick_chosen = Signal(int)
    monk_chosen = Signal(int)
    tone_cleared = Signal()
    link_requested = Signal(object, object, object)  # patient, lesion, body site (or None)
    site_chosen = Signal(object)
    device_edited = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.ids: list[str] = []
        self._shown: dict[str, Any] = {}
        body = QWidget()
        layout = QVBoxLayout(body)
        self.title = QLabel("No image selected")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        layout.addWidget(self._label_box())
        layout.addWidget(self._tone_box())
        layout.addWidget(self._link_box())
        layout.addWidget(self._device_box())
        layout.addStretch(1)
        self.setWidget(body)
        self.setEnabled(False)

    # -- construction ----------------------------------------------------------------------

    def _label_box(self) -> QGroupBox:
        box = QGroupBox("Diagnosis")
        form = QFormLayout(box)
        self.diagnosis = DiagnosisPicker()
        self.diagnosis.chosen.connect(self.label_chosen)
        self.certainty = QComboBox()
        self.certainty.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.certainty.setMinimumContentsLength(10)
        for code, name in taxonomy.certainty_names().items():
            self.certainty.addItem(name, code)
        self.certainty.setAccessibleName("Certainty")
        self.certainty.activated.connect(
            lambda i: self.certainty_chosen.emit(self.certainty.itemData(i))
        )
        self.key_hint = QLabel()
        self.key_hint.setWordWrap(True)
        self.key_hint.setEnabled(False)
        search = QToolButton()
        search.setText("All diagnoses…")
        search.setToolTip(
            "Search the whole vocabulary, synonyms and other conditions (/ or Ctrl+K)"
        )
        search.clicked.connect(self.search_requested)
        self.search_button = search
        form.addRow("Label", self.diagnosis)
        form.addRow("", search)
        form.addRow("Certainty", self.certainty)
        form.addRow(self.key_hint)
        return box

    def set_number_keys(self, keys: dict[str, str]) -> None:
        """Say what the number keys give (a setting)."""
        self.diagnosis.set_number_keys(keys)
        names = []
        for digit, key in keys.items():
            choice = taxonomy.label_choice(key)
            if choice is not None:
                names.append(f"{digit} {choice.free_text or choice.code}")
        self.key_hint.setText(f"Keys: {'  '.join(names)} · / searches all · Backspace clears")

    def _tone_box(self) -> QGroupBox:
        box = QGroupBox("Skin type")
        form = QFormLayout(box)
        self.fitzpatrick = SwatchPicker(fitzpatrick_swatches(), "Fitzpatrick")
        self.fitzpatrick.chosen.connect(self.fitzpatrick_chosen)
        self.monk = SwatchPicker(monk_swatches(), "Monk")
        self.monk.chosen.connect(self.monk_chosen)
        self.tone_note = QLabel()
        self.tone_note.setWordWrap(True)
        clear = QToolButton()
        clear.setText("Clear rating")
        clear.clicked.connect(self.tone_cleared)
        form.addRow("Fitzpatrick", self.fitzpatrick)
        form.addRow("Monk", self.monk)
        form.addRow(self.tone_note)
        form.addRow("", clear)
        return box

    def _link_box(self) -> QGroupBox:
        box = QGroupBox("Patient and lesion")
        form = QFormLayout(box)
        fields = LinkFields()
        self.patient, self.lesion, self.site = fields.patient, fields.lesion, fields.site
        self.site.activated.connect(self._site_activated)
        link = QPushButton("Link selection")
        link.clicked.connect(self._link)
        fields.add_rows(form)
        form.addRow(link)
        return box

    def _device_box(self) -> QGroupBox:
        box = QGroupBox("Device")
        form = QFormLayout(box)
        self.device: dict[str, QLineEdit] = {}
        for key, name in DEVICE_EDIT_FIELDS:
            line = QLineEdit()
            line.setAccessibleName(name)
            line.editingFinished.connect(lambda k=key: self._device_edited(k))
            self.device[key] = line
            form.addRow(name, line)
        self.modality = QComboBox()
        for m in taxonomy.MODALITIES:
            self.modality.addItem(m, m)
        self.modality.activated.connect(
            lambda i: self.device_edited.emit({"modality": self.modality.itemData(i)})
        )
        form.addRow("Modality", self.modality)
        return box

    def set_patient_choices(self, words: list[str]) -> None:
        """Completion for the patient field (``browse.patient_words``, read on the reader)."""
        completer = QCompleter(words, self.patient)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.patient.setCompleter(completer)

    # -- user input ------------------------------------------------------------------------

    def _link(self) -> None:
        self.link_requested.emit(
            self.patient.text().strip() or None,
            self.lesion.text().strip() or None,
            self.site.currentData(),
        )

    def _site_activated(self, row: int) -> None:
        if self._shown.get("lesion_id"):
            self.site_chosen.emit(self.site.itemData(row))

    def _device_edited(self, key: str) -> None:
        value = self.device[key].text().strip() or None
        if self.ids and value != self._shown.get(key):
            self._shown[key] = value
            self.device_edited.emit({key: value})

    # -- showing the selection -------------------------------------------------------------

    readonly = False  # a read-only library: the panel shows values, never edits them

    def show_selection(self, lib: Library, ids: list[str]) -> None:
        self.ids = list(ids)
        self.setEnabled(bool(ids) and not self.readonly)
        if not ids:
            self.title.setText("No image selected")
            self._shown = {}
            return
        if len(ids) > MAX_BATCH_READ:
            self.title.setText(f"<b>{len(ids):,} images selected</b> — edits apply to all of them")
            self._shown = {}
            self._show_values({}, set())
            return
        rows = [lib.image(i) for i in ids]
        common, mixed = _common(rows)
        self.title.setText(
            f"<b>Image {ids[0][:12]}</b>"
            if len(ids) == 1
            else f"<b>{len(ids)} images selected</b> — edits apply to all of them"
        )
        if len(ids) == 1:
            label = lib.current_label(ids[0])
            common["certainty"] = label["certainty"] if label else None
            lesion = lib.lesion(rows[0]["lesion_id"]) if rows[0]["lesion_id"] else None
            common["body_site"] = lesion["body_site"] if lesion else None
            common["tones"] = current_tones(lib, ids[0])
        self._shown = common
        self._show_values(common, mixed)

    def _show_values(self, v: dict[str, Any], mixed: set[str]) -> None:
        self.diagnosis.show_code(v.get("diagnosis"), "diagnosis" in mixed)
        self.certainty.setCurrentIndex(self.certainty.findData(v.get("certainty")))  # -1: blank
        tones = v.get("tones") or {}
        manual = tones.get("manual") or {}
        estimated = tones.get("estimated") or {}
        # One image: its manual rating (the dot marks the estimate). A batch: the shared value.
        fitz = manual.get("fitzpatrick") if tones else v.get("fitzpatrick")
        monk = manual.get("monk") if tones else v.get("monk")
        self.fitzpatrick.set_values(
            fitz, estimated.get("fitzpatrick"), mixed="fitzpatrick" in mixed
        )
        self.monk.set_values(monk, estimated.get("monk"), mixed="monk" in mixed)
        self.tone_note.setText(_tone_note(tones))
        self.patient.setText(v.get("patient_id") or "")
        self.lesion.setText(v.get("lesion_id") or "")
        self.site.setCurrentIndex(max(0, self.site.findData(v.get("body_site"))))
        for key, line in self.device.items():
            line.setText("" if key in mixed else str(v.get(key) or ""))
            line.setPlaceholderText("(mixed)" if key in mixed else "")
        self.modality.setCurrentIndex(self.modality.findData(v.get("modality")))


def _common(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], set[str]]:
    """Values shared by every row, and the names of fields that differ."""
    keys = (
        "diagnosis",
        "fitzpatrick",
        "monk",
        "patient_id",
        "lesion_id",
        "modality",
        *(k for k, _ in DEVICE_EDIT_FIELDS),
    )
    common: dict[str, Any] = {}
    mixed: set[str] = set()
    for key in keys:
        values = {r[key] for r in rows}
        if len(values) == 1:
            common[key] = values.pop()
        else:
            mixed.add(key)
    return common, mixed


def _tone_note(tones: dict[str, Any]) -> str:
    """Who rated the skin type, and the automatic estimate beside it (marked ● on the swatch)."""
    if not tones:
        return "Keys: F then 1-6 (Fitzpatrick), M then 1-0 (Monk)."
    manual, estimated = tones.get("manual"), tones.get("estimated")
    parts = [f"rated by {manual['rater']}" if manual else "not rated"]
    if estimated:
        ita = f", ITA {estimated['ita']:.0f}°" if estimated.get("ita") is not None else ""
        conf = ""
        if estimated.get("confidence") is not None:
            conf = f", confidence {estimated['confidence']:.2f}"
        fitz = taxonomy.fitzpatrick_roman(estimated.get("fitzpatrick")) or "—"
        monk = estimated.get("monk") or "—"
        parts.append(f"● automatic estimate: Fitzpatrick {fitz}, Monk {monk}{ita}{conf}")
    else:
        parts.append("no automatic estimate yet")
    return " · ".join(parts)
