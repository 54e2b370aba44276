"""Small charts drawn with QPainter (QtCharts is not part of PySide6-Essentials).

:class:`BarChart` draws labelled horizontal bars; :class:`HeatTable` is a
count matrix whose cells are shaded by count, empty cells tinted as gaps;
:class:`IntervalChart` draws scores with their 95 % intervals and counts.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem, QWidget

from dermdesk.gui.theme import is_dark
from dermdesk.library.browse import Figure

ROW_H = 22


class BarChart(QWidget):
    """Horizontal bars: one (label, value, colour or None) per row, largest scale first.
    A click on a row emits its label."""

    clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, float, str | None]] = []
        self.percent_of: float | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_rows(
        self, rows: list[tuple[str, float, str | None]], percent_of: float | None = None
    ) -> None:
        self.rows = rows
        self.percent_of = percent_of
        self.setFixedHeight(self.sizeHint().height())
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(320, ROW_H * max(1, len(self.rows)) + 6)

    def row_at(self, y: float) -> int | None:
        i = int((y - 3) // ROW_H)
        return i if 0 <= i < len(self.rows) else None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        i = self.row_at(event.position().y())
        if i is not None and event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.rows[i][0])
        super().mousePressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        pal = self.palette()
        if not self.rows:
            painter.setPen(pal.placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no data")
            return
        metrics = painter.fontMetrics()
        label_w = min(
            self.width() // 2, max(metrics.horizontalAdvance(r[0]) for r in self.rows) + 10
        )
        value_w = metrics.horizontalAdvance("100,000 (100%)") + 8
        bar_w = max(20, self.width() - label_w - value_w)
        top = max(r[1] for r in self.rows) or 1
        default = QColor("#4a86e8")
        for i, (label, value, colour) in enumerate(self.rows):
            y = 3 + i * ROW_H
            painter.setPen(pal.text().color())
            elided = metrics.elidedText(label, Qt.TextElideMode.ElideRight, label_w - 8)
            painter.drawText(
                QRect(0, y, label_w - 8, ROW_H),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                elided,
            )
            painter.fillRect(
                QRect(label_w, y + 5, round(bar_w * value / top), ROW_H - 10),
                QColor(colour) if colour else default,
            )
            text = f"{value:,.0f}"
            if self.percent_of:
                text += f" ({value / self.percent_of:.0%})"
            painter.drawText(
                QRect(label_w + round(bar_w * value / top) + 4, y, value_w, ROW_H),
                Qt.AlignmentFlag.AlignVCenter,
                text,
            )
        painter.end()


class HeatTable(QTableWidget):
    """A matrix of counts shaded by value; zero cells are marked as gaps."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

    def set_matrix(
        self,
        rows: list[str],
        columns: list[str],
        values: list[list[int]],
        *,
        gap_rows: int | None = None,
        gap_columns: int | None = None,
    ) -> None:
        """Fill the table; zeros in the first ``gap_rows`` x ``gap_columns`` cells are gaps."""
        gap_rows = len(rows) if gap_rows is None else gap_rows
        gap_columns = len(columns) if gap_columns is None else gap_columns
        self.clear()
        self.setRowCount(len(rows))
        self.setColumnCount(len(columns))
        self.setHorizontalHeaderLabels(columns)
        self.setVerticalHeaderLabels(rows)
        top = max((v for row in values for v in row), default=0) or 1
        dark = is_dark()
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                item = QTableWidgetItem(f"{value:,}" if value else "0")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                gap = value == 0 and i < gap_rows and j < gap_columns
                if value or gap:
                    item.setBackground(_shade(value, top, dark))
                if value and value / top > 0.55:
                    item.setForeground(QColor("white"))
                self.setItem(i, j, item)
        height = (
            self.horizontalHeader().height() + sum(self.rowHeight(i) for i in range(len(rows))) + 4
        )
        self.setFixedHeight(min(height, 420))


def _shade(value: int, top: int, dark: bool) -> QColor:
    if value == 0:
        return QColor("#5a2a2a") if dark else QColor("#fde2e1")
    # square root: small counts stay visible next to a dominant class
    t = (value / top) ** 0.5
    light, deep = (
        (QColor("#23324a"), QColor("#3d7bd9")) if dark else (QColor("#e8f0fe"), QColor("#1a56b8"))
    )
    return QColor(
        round(light.red() + (deep.red() - light.red()) * t),
        round(light.green() + (deep.green() - light.green()) * t),
        round(light.blue() + (deep.blue() - light.blue()) * t),
    )


class IntervalChart(QWidget):
    """Scores on a 0-1 axis, one row per group: a bar for the value, a whisker for its
    95 % interval and the count behind it; a group too small to report says so."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[Figure] = []
        self.reference: float | None = None  # e.g. the overall score, drawn as a line
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_rows(self, rows: list[Figure], reference: float | None = None) -> None:
        self.rows = rows
        self.reference = reference
        self.setFixedHeight(self.sizeHint().height())
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(360, ROW_H * max(1, len(self.rows)) + 8)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        if not self.rows:
            painter.setPen(pal.placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no figures")
            return
        fm = painter.fontMetrics()
        label_w = min(self.width() // 3, max(fm.horizontalAdvance(r.label) for r in self.rows) + 10)
        widest = max(fm.horizontalAdvance(r.text()) for r in self.rows)
        text_w = min(
            self.width() // 3, max(fm.horizontalAdvance("0.000 [0.00, 0.00], n=00000"), widest) + 10
        )
        bar_w = max(40, self.width() - label_w - text_w)
        x0 = label_w
        bar = QColor("#4a86e8")
        whisker = pal.text().color()
        for i, r in enumerate(self.rows):
            y = 4 + i * ROW_H
            painter.setPen(pal.text().color())
            name = fm.elidedText(r.label, Qt.TextElideMode.ElideRight, label_w - 8)
            align_right = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight
            painter.drawText(QRect(0, y, label_w - 8, ROW_H), align_right, name)
            painter.fillRect(QRect(x0, y + 5, bar_w, ROW_H - 10), pal.alternateBase())
            if r.value is not None:
                painter.fillRect(QRect(x0, y + 6, round(bar_w * r.value), ROW_H - 12), bar)
            if r.low is not None and r.high is not None:
                lo, hi = x0 + round(bar_w * r.low), x0 + round(bar_w * r.high)
                mid = y + ROW_H // 2
                painter.setPen(whisker)
                painter.drawLine(lo, mid, hi, mid)
                painter.drawLine(lo, mid - 4, lo, mid + 4)
                painter.drawLine(hi, mid - 4, hi, mid + 4)
            painter.setPen(pal.text().color() if r.value is not None else pal.mid().color())
            painter.drawText(
                QRect(x0 + bar_w + 6, y, text_w, ROW_H), Qt.AlignmentFlag.AlignVCenter, r.text()
            )
        if self.reference is not None:
            x = x0 + round(bar_w * self.reference)
            painter.setPen(QPen(QColor("#d93025"), 1, Qt.PenStyle.DashLine))
            painter.drawLine(x, 2, x, self.height() - 2)
        painter.end()
