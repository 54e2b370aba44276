"""The thumbnail grid: a virtualized item view and the delegate that draws a tile.

:class:`GalleryView` is a ``QAbstractItemView`` whose geometry comes from
:class:`~dermdesk.gui.grid.GridLayout` arithmetic, so it paints and hit-tests
only what is on screen whatever the number of rows, and draws group headings
(patient, lesion, diagnosis, capture date) between groups. Selection,
keyboard navigation and ``fetchMore`` paging are Qt's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import ceil
from typing import cast

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QItemSelectionRange,
    QModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QRegion,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.gui.gallery_model import GalleryModel, Index, ThumbRole, TileRole
from dermdesk.gui.grid import GridLayout
from dermdesk.gui.theme import DISAGREE_COLOUR, SYNTHETIC_COLOUR, UNCHECKED_COLOUR, VERDICT_COLOURS
from dermdesk.library.browse import Tile

CAPTION_H = 20
_FITZ_SWATCH = {f["value"]: f["swatch"] for f in taxonomy.fitzpatrick_scale()}
_MONK_CHIP = "#c8282828"  # near-black, 200 of 255 opaque (#AARRGGBB)


class TileDelegate(QStyledItemDelegate):
    """Draws a thumbnail with its badges: quality, label, skin type, synthetic, disagreement.

    The quality dot, the chips and the captions are drawn once into small pixmaps and
    reused (keyed by text, colours, font and pixel ratio): drawn afresh, with antialiased
    rounded rectangles and text layout for every tile of every frame, they made painting
    the grid the GUI thread's largest cost while scrolling (scripts/bench_gui.py).
    """

    CACHE_ITEMS = 4000  # distinct badges and captions; a few hundred in practice

    def __init__(self, thumb: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumb = thumb
        self._pixmaps: dict[tuple[object, ...], QPixmap] = {}
        self._fonts: dict[str, tuple[QFont, QFont, QFont]] = {}

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # type: ignore[override]
        return QSize(self.thumb + 8, self.thumb + CAPTION_H + 8)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:  # type: ignore[override]
        tile: Tile | None = index.data(TileRole)
        if tile is not None:
            painter.save()
            self.paint_tile(
                painter, option.rect, option.state, option.palette, tile, index.data(ThumbRole)
            )
            painter.restore()

    def paint_tile(
        self,
        painter: QPainter,
        r: QRect,
        state: QStyle.StateFlag,
        pal: QPalette,
        tile: Tile,
        image: QImage | None,
    ) -> None:
        """One tile in ``r``; changes the painter's pen, brush and hints (callers that
        care save and restore it)."""
        selected = bool(state & QStyle.StateFlag.State_Selected)
        dpr = painter.device().devicePixelRatioF()
        fonts = self._fonts_for(painter.font())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if selected:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(pal.highlight())
            painter.drawRoundedRect(r, 6, 6)
        box = QRect(r.x() + 4, r.y() + 4, r.width() - 8, r.height() - 8 - CAPTION_H)
        self._thumbnail(painter, box, image, pal.mid().color())
        self._badges(painter, box, tile, fonts[0], dpr)
        colour = pal.highlightedText().color() if selected else pal.text().color()
        self._caption(painter, r, tile, colour, fonts[2 if not tile.labelled else 1], dpr)
        if state & QStyle.StateFlag.State_HasFocus:
            painter.setPen(QPen(pal.highlight().color().lighter(130), 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(r.adjusted(1, 1, -1, -1), 6, 6)

    def _fonts_for(self, base: QFont) -> tuple[QFont, QFont, QFont]:
        """The badge font and the caption font (upright, italic for unlabelled) for ``base``."""
        key = base.key()
        fonts = self._fonts.get(key)
        if fonts is None:
            badge = QFont(base)
            badge.setPointSizeF(max(7.0, base.pointSizeF() * 0.8))
            badge.setBold(True)
            caption = QFont(base)
            caption.setBold(False)
            caption.setPointSizeF(max(7.5, QFont().pointSizeF() * 0.9))
            italic = QFont(caption)
            italic.setItalic(True)
            fonts = self._fonts[key] = (badge, caption, italic)
        return fonts

    def _thumbnail(
        self, painter: QPainter, box: QRect, image: QImage | None, empty: QColor
    ) -> None:
        if image is None or image.isNull():
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(empty)
            painter.drawRoundedRect(box.adjusted(8, 8, -8, -8), 4, 4)
            return
        size = image.deviceIndependentSize().toSize()
        size.scale(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(QPoint(0, 0), size)
        target.moveCenter(box.center())
        painter.drawImage(target, image)

    def _badges(self, painter: QPainter, box: QRect, t: Tile, font: QFont, dpr: float) -> None:
        # quality: a dot, top left (ringed grey when not checked yet)
        painter.drawPixmap(box.x() + 3, box.y() + 3, self._dot(t.quality or "", dpr))
        x_right = box.right() - 3
        # A rating is a filled chip; an estimate is an outlined "~" chip, so nobody takes
        # the ITA estimator's guess for a person's rating.
        fitz, fitz_est = t.skin_type()
        if fitz:
            x_right = self._chip(
                painter,
                x_right,
                box.y() + 3,
                ("~" if fitz_est else "") + taxonomy.fitzpatrick_roman(fitz),
                _FITZ_SWATCH.get(fitz, "#cccccc"),
                "#222222",
                font,
                dpr,
                outline=fitz_est,
            )
        monk, monk_est = t.monk_tone()
        if monk:
            x_right = self._chip(
                painter,
                x_right,
                box.y() + 3,
                ("~" if monk_est else "") + f"M{monk}",
                _MONK_CHIP,
                "white",
                font,
                dpr,
                outline=monk_est,
            )
        y_low = box.bottom() - 18
        x_left = box.x() + 3
        if t.synthetic:
            x_left = self._chip_left(
                painter, x_left, y_low, "SYN", SYNTHETIC_COLOUR, "white", font, dpr
            )
        if t.disagrees:
            self._chip_left(
                painter, x_left, y_low, f"≠ {t.predicted}", DISAGREE_COLOUR, "white", font, dpr
            )

    def _dot(self, verdict: str, dpr: float) -> QPixmap:
        key = ("dot", verdict, dpr)
        pixmap = self._pixmaps.get(key)
        if pixmap is None:
            pixmap, p = self._canvas(14, 14, dpr)
            p.setPen(QPen(QColor("white"), 1.5))
            p.setBrush(QColor(VERDICT_COLOURS.get(verdict, UNCHECKED_COLOUR)))
            p.drawEllipse(QRect(1, 1, 12, 12))
            p.end()
            self._keep(key, pixmap)
        return pixmap

    def _chip(
        self,
        painter: QPainter,
        right: int,
        y: int,
        text: str,
        bg: str,
        fg: str,
        font: QFont,
        dpr: float,
        *,
        outline: bool = False,
    ) -> int:
        """A badge ending at ``right``; ``outline`` draws it hollow (an estimate)."""
        pixmap = self._chip_pixmap(text, bg, fg, font, dpr, outline)
        w = round(pixmap.deviceIndependentSize().width()) - 2  # a pixel of room each side
        painter.drawPixmap(right - w - 1, y - 1, pixmap)
        return right - w - 3

    def _chip_pixmap(
        self, text: str, bg: str, fg: str, font: QFont, dpr: float, outline: bool
    ) -> QPixmap:
        key = ("chip", text, bg, fg, font.key(), dpr, outline)
        pixmap = self._pixmaps.get(key)
        if pixmap is None:
            w = QFontMetrics(font).horizontalAdvance(text) + 8
            pixmap, p = self._canvas(w + 2, 18, dpr)
            rect = QRect(1, 1, w, 16)
            background, colour = QColor(bg), QColor(fg)
            if outline:
                edge = background.darker(110) if background.alpha() == 255 else QColor("white")
                p.setPen(QPen(edge, 2, Qt.PenStyle.DashLine))
                p.setBrush(QColor(20, 20, 20, 170))
                colour = QColor("white")
            else:
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(background)
            p.drawRoundedRect(rect, 4, 4)
            p.setFont(font)
            p.setPen(colour)
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
            p.end()
            self._keep(key, pixmap)
        return pixmap

    def _chip_left(
        self,
        painter: QPainter,
        left: int,
        y: int,
        text: str,
        bg: str,
        fg: str,
        font: QFont,
        dpr: float,
    ) -> int:
        w = round(self._chip_pixmap(text, bg, fg, font, dpr, False).deviceIndependentSize().width())
        return self._chip(painter, left + w - 2, y, text, bg, fg, font, dpr) + w + 4

    def _caption(
        self, painter: QPainter, r: QRect, t: Tile, colour: QColor, font: QFont, dpr: float
    ) -> None:
        if not t.labelled:
            colour = QColor(UNCHECKED_COLOUR)
        width = r.width() - 12
        text = caption_text(t)
        key = ("caption", text, width, colour.rgba(), font.key(), dpr)
        pixmap = self._pixmaps.get(key)
        if pixmap is None:
            pixmap, p = self._canvas(width, CAPTION_H, dpr)
            p.setFont(font)
            p.setPen(colour)
            elided = p.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, width)
            align = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft
            p.drawText(QRect(0, 0, width, CAPTION_H), align, elided)
            p.end()
            self._keep(key, pixmap)
        painter.drawPixmap(r.x() + 6, r.bottom() - CAPTION_H - 2, pixmap)

    @staticmethod
    def _canvas(w: int, h: int, dpr: float) -> tuple[QPixmap, QPainter]:
        """A transparent pixmap of ``w`` x ``h`` logical pixels and a painter on it."""
        pixmap = QPixmap(max(1, ceil(w * dpr)), max(1, ceil(h * dpr)))
        pixmap.setDevicePixelRatio(dpr)
        pixmap.fill(Qt.GlobalColor.transparent)
        p = QPainter(pixmap)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        return pixmap, p

    def _keep(self, key: tuple[object, ...], pixmap: QPixmap) -> None:
        if len(self._pixmaps) >= self.CACHE_ITEMS:
            self._pixmaps.clear()  # a theme, font or size change made them all stale
        self._pixmaps[key] = pixmap


def caption_text(t: Tile) -> str:
    """``MEL · Melanoma``; for OTHER (or any label with a condition in words) the words,
    ``OTHER · keloid``, since "Other (condition...)" says nothing."""
    if not t.labelled:
        return "unlabelled"
    if t.free_text and (t.diagnosis == "OTHER" or t.diagnosis not in taxonomy.diagnoses()):
        return f"{t.diagnosis} · {t.free_text}"
    if t.diagnosis in taxonomy.diagnoses():
        return f"{t.diagnosis} · {taxonomy.diagnoses()[t.diagnosis].name}"
    return str(t.diagnosis)


class GalleryView(QAbstractItemView):
    """A grid of thumbnails with group headings; scales to any number of rows."""

    activated_row = Signal(int)

    def __init__(self, thumb: int = 144, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = GridLayout()
        self.delegate_ = TileDelegate(thumb, self)
        self.setItemDelegate(self.delegate_)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMouseTracking(True)
        self.setAccessibleName("Library gallery")
        self.set_thumb_size(thumb)

    # -- configuration ---------------------------------------------------------------------

    def set_thumb_size(self, thumb: int) -> None:
        self.delegate_.thumb = thumb
        hint = self.delegate_.sizeHint(QStyleOptionViewItem(), QModelIndex())
        self.grid.update(tile=(hint.width(), hint.height()))
        self._relayout()

    def setModel(self, model: GalleryModel) -> None:  # type: ignore[override]
        super().setModel(model)
        model.modelReset.connect(self._relayout)
        model.rowsInserted.connect(self._relayout)
        model.layoutChanged.connect(self._relayout)

    def gallery_model(self) -> GalleryModel | None:
        model = self.model()
        return model if isinstance(model, GalleryModel) else None

    def _relayout(self, *args: object) -> None:
        model = self.gallery_model()
        rows = model.rowCount() if model else 0
        starts = model.group_starts() if model and model.query.group else ()
        self.grid.update(rows=rows, width=self.viewport().width(), group_starts=starts)
        self.updateGeometries()
        self.viewport().update()

    # -- geometry (QAbstractItemView's contract) -------------------------------------------

    def updateGeometries(self) -> None:
        height = self.grid.total_height()
        bar = self.verticalScrollBar()
        bar.setRange(0, max(0, height - self.viewport().height()))
        bar.setPageStep(self.viewport().height())
        bar.setSingleStep(max(1, self.grid.tile_h // 4))
        super().updateGeometries()

    def visualRect(self, index: Index) -> QRect:
        if not index.isValid() or index.row() >= self.grid.rows:
            return QRect()
        x, y, w, h = self.grid.item_rect(index.row())
        return QRect(x, y - self.verticalOffset(), w, h)

    def indexAt(self, point: QPoint) -> QModelIndex:
        model = self.model()
        row = self.grid.row_at(point.x(), point.y() + self.verticalOffset())
        if model is None or row is None:
            return QModelIndex()
        return model.index(row, 0)

    def scrollTo(
        self,
        index: Index,
        hint: QAbstractItemView.ScrollHint = QAbstractItemView.ScrollHint.EnsureVisible,
    ) -> None:
        if not index.isValid():
            return
        rect = self.visualRect(index)
        bar = self.verticalScrollBar()
        view_h = self.viewport().height()
        head = self.grid.header_h if self.grid.grouped else 0
        if hint == QAbstractItemView.ScrollHint.PositionAtTop:
            bar.setValue(bar.value() + rect.top() - self.grid.spacing - head)
        elif hint == QAbstractItemView.ScrollHint.PositionAtCenter:
            bar.setValue(bar.value() + rect.center().y() - view_h // 2)
        elif rect.top() < head:
            bar.setValue(bar.value() + rect.top() - self.grid.spacing - head)
        elif rect.bottom() > view_h:
            bar.setValue(bar.value() + rect.bottom() - view_h + self.grid.spacing)
        self.viewport().update()

    def moveCursor(
        self, action: QAbstractItemView.CursorAction, modifiers: Qt.KeyboardModifier
    ) -> QModelIndex:
        model = self.model()
        if model is None or model.rowCount() == 0:
            return QModelIndex()
        current = self.currentIndex().row() if self.currentIndex().isValid() else -1
        last = model.rowCount() - 1
        if current < 0:
            return model.index(0, 0)
        A = QAbstractItemView.CursorAction
        lines_per_page = max(1, self.viewport().height() // (self.grid.tile_h + self.grid.spacing))
        target = {
            A.MoveLeft: current - 1,
            A.MovePrevious: current - 1,
            A.MoveRight: current + 1,
            A.MoveNext: current + 1,
            A.MoveHome: 0,
            A.MoveEnd: last,
        }.get(action)
        if action == A.MoveUp:
            target = self.grid.neighbour(current, -1)
        elif action == A.MoveDown:
            target = self.grid.neighbour(current, 1)
        elif action == A.MovePageUp:
            target = self.grid.neighbour(current, -lines_per_page)
        elif action == A.MovePageDown:
            target = self.grid.neighbour(current, lines_per_page)
        if target is None:
            return self.currentIndex()
        return model.index(max(0, min(last, target)), 0)

    def horizontalOffset(self) -> int:
        return 0

    def verticalOffset(self) -> int:
        return self.verticalScrollBar().value()

    def isIndexHidden(self, index: QModelIndex) -> bool:  # type: ignore[override]
        return False

    def setSelection(self, rect: QRect, command: QItemSelectionModel.SelectionFlag) -> None:
        model = self.model()
        if model is None:
            return
        norm = rect.normalized()
        rows = self.grid.rows_in(
            (
                norm.x(),
                norm.y() + self.verticalOffset(),
                max(1, norm.width()),
                max(1, norm.height()),
            )
        )
        selection = QItemSelection()
        for first, last in _runs(rows):
            selection.select(model.index(first, 0), model.index(last, 0))
        self.selectionModel().select(selection, command)

    def visualRegionForSelection(self, selection: QItemSelection) -> QRegion:
        region = QRegion()
        visible = self._visible_rows()
        if not visible:
            return region
        lo, hi = visible[0], visible[-1]
        for rng in cast(Iterable[QItemSelectionRange], selection):
            for row in range(max(lo, rng.top()), min(hi, rng.bottom()) + 1):
                region += self.visualRect(self.model().index(row, 0))
        return region

    def _visible_rows(self) -> list[int]:
        vp = self.viewport().rect()
        return self.grid.rows_in((0, self.verticalOffset(), vp.width(), vp.height()))

    # -- painting and events ---------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        model = self.gallery_model()
        if model is None:
            return
        painter = QPainter(self.viewport())
        offset = self.verticalOffset()
        area = event.rect()
        if self.grid.grouped:
            self._paint_headers(painter, model, offset, area)
        rows = self.grid.rows_in((area.x(), area.y() + offset, area.width(), area.height()))
        # The delegate is called directly with the tile and its thumbnail: through
        # QModelIndex.data each tile cost two calls into Qt and back (bench_gui.py).
        selected = self._selected_rows(rows)
        current = self.currentIndex().row() if self.hasFocus() else -1
        palette, delegate = self.palette(), self.delegate_
        for row in rows:
            x, y, w, h = self.grid.item_rect(row)
            state = QStyle.StateFlag.State_Enabled
            if row in selected:
                state |= QStyle.StateFlag.State_Selected
            if row == current:
                state |= QStyle.StateFlag.State_HasFocus
            delegate.paint_tile(
                painter,
                QRect(x, y - offset, w, h),
                state,
                palette,
                model.tile(row),
                model.thumbnail(row),
            )
        if model.rowCount() == 0 and not model.is_fetching:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter, _EMPTY_TEXT)
        painter.end()

    def _selected_rows(self, rows: list[int]) -> set[int]:
        """Which of ``rows`` (sorted) are selected, from the selection's few ranges."""
        selection = self.selectionModel()
        if selection is None or not rows or not selection.hasSelection():
            return set()
        lo, hi = rows[0], rows[-1]
        out: set[int] = set()
        for rng in cast(Iterable[QItemSelectionRange], selection.selection()):
            out.update(range(max(lo, rng.top()), min(hi, rng.bottom()) + 1))
        return out

    def _paint_headers(
        self, painter: QPainter, model: GalleryModel, offset: int, area: QRect
    ) -> None:
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        for g in self.grid.groups_between(area.y() + offset, area.bottom() + offset):
            x, y, w, h = self.grid.header_rect(g)
            rect = QRect(x, y - offset, w, h)
            painter.fillRect(rect.adjusted(4, 4, -4, 0), self.palette().alternateBase())
            painter.setPen(self.palette().text().color())
            painter.drawText(
                rect.adjusted(12, 4, -12, 0), Qt.AlignmentFlag.AlignVCenter, model.group_title(g)
            )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._relayout()

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        self.viewport().scroll(dx, dy)

    def dataChanged(
        self,
        top_left: Index,
        bottom_right: Index,
        roles: Sequence[int] = (),
    ) -> None:
        visible = self._visible_rows()
        if not visible or bottom_right.row() < visible[0] or top_left.row() > visible[-1]:
            return  # off screen: nothing to repaint
        self.viewport().update()


_EMPTY_TEXT = (
    "No images here.\n\nDrop photos or dataset folders onto this window to import them,\n"
    "use Library ▸ Import (Ctrl+I) or Capture (Ctrl+Shift+C), or clear the filters."
)


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted row numbers as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for row in sorted(rows):
        if runs and row == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs
