"""The filter bar above the gallery: what to show, in which order, grouped how.

Every control maps onto a field of :class:`~dermdesk.library.ImageFilter`;
filters combine (AND). The bar's state is a plain dict, saved in QSettings so
the last filters come back on the next start. Changes are debounced, so
typing a search does not reload the gallery on every key.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QHBoxLayout,
    QLineEdit,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.gui.gallery_model import Query
from dermdesk.imaging.check_names import CHECK_TITLES
from dermdesk.library import ImageFilter

SORT_CHOICES = (
    ("imported", "Newest first"),
    ("captured", "Capture date"),
    ("diagnosis", "Diagnosis"),
    ("patient", "Patient"),
    ("lesion", "Lesion"),
)
GROUP_CHOICES = (
    (None, "No groups"),
    ("patient", "By patient"),
    ("lesion", "By lesion"),
    ("diagnosis", "By diagnosis"),
    ("captured", "By capture date"),
)
TRISTATE = {"labelled": ("Labelled", "Unlabelled"), "synthetic": ("Synthetic only", "Real only")}


class MultiChoice(QToolButton):
    """A drop-down of checkable choices; none checked means 'any'."""

    changed = Signal()

    def __init__(
        self, title: str, choices: list[tuple[Any, str]], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.title = title
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setMenu(QMenu(self))
        self._actions: list[tuple[Any, QAction]] = []
        for value, text in choices:
            action = self.menu().addAction(text)
            action.setCheckable(True)
            action.toggled.connect(self._toggled)
            self._actions.append((value, action))
        self.setAccessibleName(title)
        self._update_text()

    def values(self) -> list[Any]:
        return [v for v, a in self._actions if a.isChecked()]

    def set_values(self, values: list[Any]) -> None:
        wanted = set(values)
        for value, action in self._actions:
            action.blockSignals(True)
            action.setChecked(value in wanted)
            action.blockSignals(False)
        self._update_text()

    def _toggled(self) -> None:
        self._update_text()
        self.changed.emit()

    def _update_text(self) -> None:
        chosen = [a.text().split(" — ")[0] for _, a in self._actions if a.isChecked()]
        shown = ", ".join(chosen[:3]) + ("…" if len(chosen) > 3 else "")
        self.setText(f"{self.title}: {shown or 'any'}")


class FilterBar(QWidget):
    """Two rows of filter controls; emits :attr:`changed` with the resulting query."""

    changed = Signal(object)  # Query

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self, singleShot=True, interval=250)
        self._timer.timeout.connect(self._emit)
        self._build()

    # -- construction ----------------------------------------------------------------------

    def _build(self) -> None:
        dx = [(d.code, f"{d.code} — {d.name}") for d in taxonomy.diagnoses().values()]
        self.diagnosis = MultiChoice("Diagnosis", dx)
        self.fitzpatrick = MultiChoice(
            "Fitzpatrick", [(f["value"], f["roman"]) for f in taxonomy.fitzpatrick_scale()]
        )
        self.monk = MultiChoice(
            "Monk", [(m["value"], str(m["value"])) for m in taxonomy.monk_scale()]
        )
        self.tone = self._combo(
            [
                ("any", "Tone: any"),
                ("rated", "Tone: rated"),
                ("estimated", "Tone: estimated"),
            ]
        )
        self.tone.setToolTip(
            "Which skin types the Fitzpatrick and Monk filters match: any (the rating where "
            "there is one, else the automatic estimate), rated (a person's or a dataset's "
            "rating only) or estimated (the automatic ITA estimate only)"
        )
        self.modality = MultiChoice("Modality", [(m, m) for m in taxonomy.MODALITIES])
        self.modality_method = MultiChoice(
            "Modality from", [(m, m) for m in taxonomy.MODALITY_METHODS]
        )
        self.modality_method.setToolTip(
            "Where the modality came from: recorded (a person or the dataset), detected (the "
            "detector was sure) or unsure (the detector's guess, below its calibrated confidence)"
        )
        self.quality = self._combo(
            [
                (None, "Quality: any"),
                ("pass", "Quality: pass"),
                ("warn", "Quality: warn"),
                ("fail", "Quality: fail"),
                ("unchecked", "Quality: not checked"),
            ]
        )
        self.failing = MultiChoice(
            "Failing", [(name, title) for name, title in CHECK_TITLES.items()]
        )
        self.failing.setToolTip(
            "Images that do not pass these quality checks (warn or fail); "
            "CLI: dermdesk ls --failing sharpness"
        )
        self.labelled = self._combo(
            [(None, "Any label"), (True, "Labelled"), (False, "Unlabelled")]
        )
        self.synthetic = self._combo(
            [(None, "All sources"), (False, "Real only"), (True, "Synthetic only")]
        )
        self.disagreement = QCheckBox("Model disagrees")
        self.disagreement.setToolTip("The active model's top class differs from the label")
        self.duplicates = QCheckBox("Duplicates")
        self.duplicates.setToolTip("Has duplicates: the duplicate check found a near-copy")
        self.excluded = self._combo(
            [(None, "Curation: any"), (False, "In datasets"), (True, "Excluded")]
        )
        self.excluded.setToolTip("Images a curator kept out of datasets (never deleted)")
        self.device = self._line("Device", "name (make and model)")
        self.patient = self._line("Patient", "patient id")
        self.dataset = self._line("Dataset", "names, comma-separated")
        self.meta_domain = self._line("Domain", "meta-domains, comma-separated")
        self.meta_domain.setToolTip(
            "Estimated visual meta-domains (modality refined by acquisition look; "
            "Dashboard > Assign meta-domains, or `dermdesk domains assign`); "
            "'unassigned' matches images without one"
        )
        self.text = self._line("Search", "id, file name, dataset id, free-text label")
        self.text.setClearButtonEnabled(True)
        self.sort = self._combo(list(SORT_CHOICES))
        self.group = self._combo(list(GROUP_CHOICES))
        self.clear_button = QPushButton("Clear filters")
        self.clear_button.clicked.connect(self.clear)
        for w in (self.diagnosis, self.fitzpatrick, self.monk, self.modality):
            w.changed.connect(self._schedule)
        self.modality_method.changed.connect(self._schedule)
        self.failing.changed.connect(self._schedule)
        self.disagreement.toggled.connect(self._schedule)
        self.duplicates.toggled.connect(self._schedule)
        self._layout()

    def _combo(self, choices: list[tuple[Any, str]]) -> QComboBox:
        box = QComboBox()
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        box.setMinimumContentsLength(9)
        for value, text in choices:
            box.addItem(text, value)
        box.currentIndexChanged.connect(self._schedule)
        return box

    def _line(self, name: str, placeholder: str) -> QLineEdit:
        line = QLineEdit()
        line.setPlaceholderText(f"{name}: {placeholder}")
        line.setAccessibleName(name)
        line.textChanged.connect(self._schedule)
        return line

    def _layout(self) -> None:
        for line in (self.device, self.patient, self.dataset, self.meta_domain):
            line.setMinimumWidth(80)
        self.text.setMinimumWidth(120)
        top = QHBoxLayout()
        top.addWidget(self.text, 3)
        top.addWidget(self.dataset, 1)
        for w in (self.diagnosis, self.fitzpatrick, self.monk, self.modality, self.quality):
            top.addWidget(w)
        top.addWidget(self.failing)
        top.addWidget(self.excluded)
        top.addWidget(self.duplicates)
        bottom = QHBoxLayout()
        for choice in (
            self.tone,
            self.labelled,
            self.synthetic,
            self.modality_method,
            self.disagreement,
        ):
            bottom.addWidget(choice)
        bottom.addWidget(self.device, 1)
        bottom.addWidget(self.meta_domain, 1)
        bottom.addWidget(self.patient, 1)
        for widget in (self.sort, self.group, self.clear_button):
            bottom.addWidget(widget)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 2)
        outer.setSpacing(4)
        outer.addLayout(top)
        outer.addLayout(bottom)

    def set_device_choices(self, devices: list[str]) -> None:
        completer = QCompleter(devices, self.device)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.device.setCompleter(completer)

    def set_domain_choices(self, domains: list[str]) -> None:
        """The meta-domains images are in now, offered as the Domain field is typed."""
        completer = QCompleter([*domains, "unassigned"], self.meta_domain)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.meta_domain.setCompleter(completer)

    # -- state -----------------------------------------------------------------------------

    def image_filter(self) -> ImageFilter:
        return ImageFilter(
            diagnosis=self.diagnosis.values(),
            fitzpatrick=self.fitzpatrick.values(),
            monk=self.monk.values(),
            tone=self.tone.currentData(),
            modality=self.modality.values(),
            modality_method=self.modality_method.values(),
            device=self.device.text().strip() or None,
            patient=self.patient.text().strip() or None,
            dataset=[d.strip() for d in self.dataset.text().split(",") if d.strip()],
            meta_domain=[d.strip() for d in self.meta_domain.text().split(",") if d.strip()],
            labelled=self.labelled.currentData(),
            synthetic=self.synthetic.currentData(),
            text=self.text.text().strip() or None,
            quality=self.quality.currentData(),
            failing=self.failing.values(),
            disagreement=True if self.disagreement.isChecked() else None,
            duplicates=True if self.duplicates.isChecked() else None,
            excluded=self.excluded.currentData(),
        )

    def query(self) -> Query:
        return Query(self.image_filter(), self.sort.currentData(), self.group.currentData())

    def state(self) -> dict[str, Any]:
        """The bar as a JSON-able dict (for QSettings)."""
        return {
            "diagnosis": self.diagnosis.values(),
            "fitzpatrick": self.fitzpatrick.values(),
            "monk": self.monk.values(),
            "modality": self.modality.values(),
            "modality_method": self.modality_method.values(),
            "quality": self.quality.currentData(),
            "failing": self.failing.values(),
            "tone": self.tone.currentData(),
            "labelled": self.labelled.currentData(),
            "synthetic": self.synthetic.currentData(),
            "disagreement": self.disagreement.isChecked(),
            "duplicates": self.duplicates.isChecked(),
            "excluded": self.excluded.currentData(),
            "device": self.device.text(),
            "patient": self.patient.text(),
            "dataset": self.dataset.text(),
            "meta_domain": self.meta_domain.text(),
            "text": self.text.text(),
            "sort": self.sort.currentData(),
            "group": self.group.currentData(),
        }

    def set_state(self, state: dict[str, Any], *, emit: bool = True) -> None:
        """Restore a saved state; unknown or malformed entries are ignored."""
        self.blockSignals(True)
        try:
            multi = ("diagnosis", "fitzpatrick", "monk", "modality", "modality_method", "failing")
            for name in multi:
                values = state.get(name)
                getattr(self, name).set_values(values if isinstance(values, list) else [])
            for name in ("quality", "tone", "labelled", "synthetic", "excluded", "sort", "group"):
                box: QComboBox = getattr(self, name)
                i = box.findData(state.get(name))
                box.setCurrentIndex(max(0, i))
            self.disagreement.setChecked(bool(state.get("disagreement")))
            self.duplicates.setChecked(bool(state.get("duplicates")))
            for name in ("device", "patient", "dataset", "meta_domain", "text"):
                value = state.get(name)
                if isinstance(value, list):  # a chart's click gives names as a list
                    value = ", ".join(map(str, value))
                getattr(self, name).setText(str(value or ""))
        finally:
            self.blockSignals(False)
        self._timer.stop()
        if emit:
            self._emit()

    def clear(self) -> None:
        self.set_state({"sort": self.sort.currentData(), "group": self.group.currentData()})

    def _schedule(self, *args: object) -> None:
        if not self.signalsBlocked():
            self._timer.start()

    def _emit(self) -> None:
        self.changed.emit(self.query())
