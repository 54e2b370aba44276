"""The panel under the viewer: an image's details, quality findings, predictions, history.

Reads one image's rows through the library's read API (small indexed
queries); the quality findings are listed with their reasons and the
predictions are drawn as class-probability bars.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.gui.theme import VERDICT_COLOURS
from dermdesk.imaging.quality import CHECK_TITLES
from dermdesk.library import Library
from dermdesk.library.browse import current_tones, describe_tone
from dermdesk.library.edits import capture_extra

DEVICE_ROWS = (
    ("device_make", "Make"),
    ("device_model", "Model"),
    ("device_lens", "Lens"),
    ("device_software", "Software"),
    ("focal_length", "Focal length (mm)"),
    ("exposure_time", "Exposure (s)"),
    ("f_number", "f-number"),
    ("iso", "ISO"),
    ("captured_at", "Captured"),
)


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setWordWrap(True)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.setAlternatingRowColors(True)
    # wrapped text re-flows when the panel is resized, so no reason is cut off
    table.horizontalHeader().sectionResized.connect(lambda *_: table.resizeRowsToContents())
    return table


SEVERITY = {"fail": 0, "warn": 1, "pass": 2}


def check_title(name: str) -> str:
    """A check's readable title ("Lesion cut by border", not ``lesion_cut``)."""
    return CHECK_TITLES.get(name, name.replace("_", " ").capitalize())


def quality_order(finding: dict[str, Any]) -> tuple[int, str]:
    """Worst first (fail, warn, pass), then by title: what needs a look comes first."""
    return SEVERITY.get(finding["verdict"], 3), check_title(finding["check_name"])


def _domain_words(image: dict[str, Any]) -> str:
    """An image's visual meta-domain, always said to be an estimate (and by what)."""
    domain = image.get("meta_domain")
    if not domain:
        return "not assigned (Dashboard ▸ Assign meta-domains)"
    return f"{domain} (estimated: {image.get('meta_domain_version') or 'unknown method'})"


def _fill(table: QTableWidget, rows: list[list[Any]]) -> None:
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            item = value if isinstance(value, QTableWidgetItem) else QTableWidgetItem(_text(value))
            table.setItem(i, j, item)
    table.resizeRowsToContents()


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class ProbabilityBars(QWidget):
    """Class probabilities of one prediction as horizontal bars, highest first."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, float]] = []
        self.label: str | None = None

    def set_probabilities(self, probabilities: dict[str, float], label: str | None) -> None:
        self.rows = sorted(probabilities.items(), key=lambda kv: -kv[1])
        self.label = label
        self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(300, 22 * max(1, len(self.rows)) + 4)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        pal = self.palette()
        label_w = 170
        bar_w = max(40, self.width() - label_w - 60)
        names = taxonomy.diagnoses()
        for i, (code, p) in enumerate(self.rows):
            y = 2 + i * 22
            name = names[code].name if code in names else code
            painter.setPen(pal.text().color())
            text = f"{code} {name}" + ("  ◀ label" if code == self.label else "")
            painter.drawText(QRect(0, y, label_w - 6, 20), Qt.AlignmentFlag.AlignVCenter, text)
            painter.fillRect(QRect(label_w, y + 4, bar_w, 12), pal.alternateBase())
            colour = QColor("#2f6fd6") if code != self.label else QColor("#2e9e5b")
            painter.fillRect(QRect(label_w, y + 4, round(bar_w * p), 12), colour)
            painter.drawText(
                QRect(label_w + bar_w + 6, y, 54, 20), Qt.AlignmentFlag.AlignVCenter, f"{p:.1%}"
            )
        painter.end()


class InfoPanel(QTabWidget):
    """Tabs about the image in the viewer."""

    def __init__(self, lib: Library, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lib = lib
        self.details = _table(["Field", "Value"])
        self.quality = _table(["Check", "Verdict", "Score", "Reason"])
        self.quality_note = QLabel()
        self.quality_note.setWordWrap(True)
        self.bars = ProbabilityBars()
        self.prediction_note = QLabel()
        self.prediction_note.setWordWrap(True)
        self.history = _table(["When", "What", "Value", "By"])
        self.addTab(self.details, "Details")
        self.addTab(self._stack(self.quality_note, self.quality), "Quality")
        self.addTab(self._stack(self.prediction_note, self.bars, stretch=True), "Prediction")
        self.addTab(self.history, "History")
        self.image_id: str | None = None

    @staticmethod
    def _stack(*widgets: QWidget, stretch: bool = False) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(4, 4, 4, 4)
        for w in widgets:
            layout.addWidget(w)
        if stretch:
            layout.addStretch(1)
        return box

    def show_image(self, image_id: str | None) -> None:
        self.image_id = image_id
        if image_id is None:
            for table in (self.details, self.quality, self.history):
                table.setRowCount(0)
            self.bars.set_probabilities({}, None)
            self.prediction_note.setText("")
            self.quality_note.setText("")
            return
        image = self.lib.image(image_id)
        self._show_details(image)
        self._show_quality(image)
        self._show_predictions(image)
        self._show_history(image)

    def _show_details(self, image: dict[str, Any]) -> None:
        label = self.lib.current_label(image["id"])
        lesion = self.lib.lesion(image["lesion_id"]) if image["lesion_id"] else None
        names = taxonomy.diagnoses()
        dx = label["diagnosis"] if label else None
        tones = current_tones(self.lib, image["id"])
        rows: list[list[Any]] = [
            ["Image id", image["id"]],
            ["Diagnosis", f"{dx} — {names[dx].name}" if dx in names else "unlabelled"],
            ["Certainty", taxonomy.certainty_names().get(label["certainty"]) if label else None],
            ["Annotator", label["annotator"] if label else None],
            ["Free text", label["free_text"] if label else None],
            ["Fitzpatrick", describe_tone(tones, "fitzpatrick")],
            ["Monk", describe_tone(tones, "monk")],
            [
                "Modality",
                taxonomy.modality_words(
                    image["modality"], image.get("modality_method") or "recorded"
                ),
            ],
            ["Meta-domain", _domain_words(image)],
            ["Source", image["source"]],
            [
                "Dataset",
                f"{image['dataset']} ({image['dataset_image_id']})" if image["dataset"] else None,
            ],
            ["Original file", image["original_name"]],
            [
                "Size",
                f"{image['width']} × {image['height']} px, {image['format']}, "
                f"{image['bytes'] / 1e6:.2f} MB",
            ],
            ["Patient", image["patient_id"]],
            ["Lesion", image["lesion_id"]],
            [
                "Body site",
                taxonomy.body_sites().get(lesion["body_site"])
                if lesion and lesion["body_site"]
                else None,
            ],
        ]
        rows += [[name, image[key]] for key, name in DEVICE_ROWS]
        rows += [
            ["Clinic", image["clinic"]],
            ["Operator", image["operator"]],
            ["Imported", image["imported_at"]],
        ]
        # The source's own columns the library has no field for, under their own names.
        extra = json.loads(image["extra"]) if image.get("extra") else {}
        rows += [
            [f"· {key}", value if isinstance(value, str) else json.dumps(value)]
            for key, value in extra.items()
            if not key.startswith("capture_")
        ]
        _fill(self.details, rows)

    def _show_quality(self, image: dict[str, Any]) -> None:
        findings = sorted(self.lib.quality(image["id"]), key=quality_order)
        rows = [
            [check_title(f["check_name"]), self._verdict(f["verdict"]), f["score"], f["reason"]]
            for f in findings
        ]
        extra = capture_extra(self.lib, image["id"])
        for c in extra.get("capture_checks", []):
            rows.append(
                [
                    f"{check_title(str(c.get('name')))} (at capture)",
                    self._verdict(c.get("verdict", "")),
                    c.get("score"),
                    c.get("reason"),
                ]
            )
        _fill(self.quality, rows)
        notes = []
        if not findings:
            notes.append("Quality checks have not run on this image yet.")
        if extra.get("capture_override"):
            notes.append(f"Kept despite a failed check: “{extra['capture_override']}”.")
        self.quality_note.setText(" ".join(notes))
        self.quality_note.setVisible(bool(notes))

    @staticmethod
    def _verdict(verdict: str) -> QTableWidgetItem:
        item = QTableWidgetItem(verdict)
        if verdict in VERDICT_COLOURS:
            item.setForeground(QColor(VERDICT_COLOURS[verdict]))
        return item

    def _show_predictions(self, image: dict[str, Any]) -> None:
        predictions = self.lib.predictions(image["id"])
        predictions.sort(key=lambda p: p["model_status"] != "active")
        if not predictions:
            self.bars.set_probabilities({}, None)
            self.prediction_note.setText(
                "No prediction for this image yet. Choose an active model in the Models view "
                "and run it over the library."
            )
            return
        p = predictions[0]
        self.prediction_note.setText(
            f"Model {p['model_name']} ({p['model_status']}), {p['created_at']}"
        )
        self.bars.set_probabilities(p["probabilities"], image["diagnosis"])

    def _show_history(self, image: dict[str, Any]) -> None:
        rows: list[list[Any]] = []
        for h in self.lib.label_history(image["id"]):
            mark = "" if h["is_current"] else " (replaced)"
            rows.append(
                [
                    h["created_at"],
                    "label" + mark,
                    f"{h['diagnosis']} · {h['certainty']}",
                    h["annotator"],
                ]
            )
        for t in self.lib.skin_tones(image["id"]):
            mark = "" if t["is_current"] else " (replaced)"
            value = " ".join(
                x
                for x in (
                    f"Fitzpatrick {taxonomy.fitzpatrick_roman(t['fitzpatrick'])}"
                    if t["fitzpatrick"]
                    else "",
                    f"Monk {t['monk']}" if t["monk"] else "",
                )
                if x
            )
            kind = "rating" if t["method"] == "manual" else "estimate"
            rows.append([t["created_at"], f"skin tone {kind}{mark}", value, t["rater"]])
        rows.sort(key=lambda r: r[0], reverse=True)
        _fill(self.history, rows)
