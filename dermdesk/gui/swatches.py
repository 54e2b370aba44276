"""A row of skin-tone colour swatches (Fitzpatrick I-VI or Monk 1-10) to pick from.

Colours come from the taxonomy. The manual choice is outlined; the automatic
estimate, when there is one, is marked with a dot under its swatch, so the
two can be compared at a glance.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from dermdesk import taxonomy


def fitzpatrick_swatches() -> list[tuple[int, str, str]]:
    return [(f["value"], f["roman"], f["swatch"]) for f in taxonomy.fitzpatrick_scale()]


def monk_swatches() -> list[tuple[int, str, str]]:
    return [(m["value"], str(m["value"]), m["swatch"]) for m in taxonomy.monk_scale()]


class SwatchPicker(QWidget):
    """Clickable swatches; emits :attr:`chosen` with the value clicked."""

    chosen = Signal(int)

    def __init__(
        self, swatches: list[tuple[int, str, str]], name: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.swatches = swatches
        self.manual: int | None = None
        self.estimate: int | None = None
        self.mixed = False
        self.setAccessibleName(name)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_values(self, manual: int | None, estimate: int | None, *, mixed: bool = False) -> None:
        self.manual, self.estimate, self.mixed = manual, estimate, mixed
        names: dict[int | None, str] = {v: label for v, label, _ in self.swatches}
        self.setToolTip(
            f"{self.accessibleName()}: manual {names.get(manual, 'none')}, "
            f"estimated {names.get(estimate, 'none')}"
        )
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(26 * len(self.swatches), 40)

    def minimumSizeHint(self) -> QSize:
        return QSize(18 * len(self.swatches), 40)

    def _cell(self, i: int) -> QRect:
        w = self.width() / len(self.swatches)
        return QRect(round(i * w) + 2, 2, round(w) - 4, 26)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text_colour = self.palette().text().color()
        for i, (value, label, colour) in enumerate(self.swatches):
            cell = self._cell(i)
            swatch = QColor(colour)
            painter.setBrush(swatch)
            chosen = value == self.manual and not self.mixed
            pen = (
                QPen(self.palette().highlight().color(), 3)
                if chosen
                else QPen(outline_colour(self.palette().window().color()), 1)
            )
            painter.setPen(pen)
            painter.drawRoundedRect(cell, 4, 4)
            painter.setPen(QColor("#111111") if swatch.lightness() > 110 else QColor("#f2f2f2"))
            painter.drawText(cell, Qt.AlignmentFlag.AlignCenter, label)
            if value == self.estimate:
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(text_colour)
                painter.drawEllipse(cell.center().x() - 3, cell.bottom() + 4, 7, 7)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        for i, (value, _, _) in enumerate(self.swatches):
            if self._cell(i).contains(event.position().toPoint()):
                self.chosen.emit(value)
                return


def outline_colour(background: QColor) -> QColor:
    """A swatch's outline that shows on ``background``: on a dark window the darkest
    swatches (Fitzpatrick VI, Monk 9-10) would otherwise melt into it."""
    return QColor(255, 255, 255, 120) if background.lightness() < 128 else QColor(0, 0, 0, 60)
