"""The image viewer: zoom, pan, fit, 1:1, and two images side by side.

Originals are decoded off the GUI thread (EXIF-upright, any format the
library stores) into a ``QImage``; only the GUI thread turns it into a pixmap.
Side by side, zoom and pan are linked (the same field of view relative to each
image, so photos of different sizes stay aligned) and each pane has a caption:
label, skin type (rated or estimated), device, quality verdict.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import shiboken6
from PySide6.QtCore import QEvent, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.gui.image_info import InfoPanel, check_title
from dermdesk.gui.tasks import Background
from dermdesk.gui.theme import VERDICT_COLOURS, viewer_background
from dermdesk.imaging.decode import decode_rgb
from dermdesk.library import Library
from dermdesk.library.browse import same_lesion

MAX_SIDE = 8192  # larger originals are shown DCT-reduced; 1:1 then means 1:1 of that


def decode_qimage(path: Path) -> QImage:
    """Decode an original into an RGB QImage (runs on a worker thread)."""
    rgb = decode_rgb(path)
    if max(rgb.shape[:2]) > MAX_SIDE:
        rgb = decode_rgb(path, reduce_to=MAX_SIDE)
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def caption(lib: Library, image_id: str) -> str:
    """What a compare pane says under its image (rich text): the label; the skin type,
    rated or estimated (never mixed); the device; the quality verdict and its checks."""
    image = lib.image(image_id)
    label = lib.current_label(image_id)
    names = taxonomy.diagnoses()
    if label is None:
        what = "unlabelled"
    elif label["diagnosis"] == taxonomy.OTHER and label["free_text"]:
        what = f"OTHER · {label['free_text']}"
    else:
        what = f"{label['diagnosis']} · {names[label['diagnosis']].name}"
    rated, estimated = image.get("fitzpatrick"), image.get("fitzpatrick_est")
    if rated:
        tone = f"Fitzpatrick {taxonomy.fitzpatrick_roman(rated)} (rated)"
    elif estimated:
        tone = f"Fitzpatrick ~{taxonomy.fitzpatrick_roman(estimated)} (estimated)"
    else:
        tone = "skin type unknown"
    device = image.get("device") or "device unknown"
    return (
        f"<b>{escape(what)}</b><br>{escape(tone)} · {escape(device)} · "
        f"{_quality_words(lib.quality(image_id))}"
    )


def _quality_words(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return "quality not checked"
    order = ("fail", "warn")
    worst = next((v for v in order if any(f["verdict"] == v for f in findings)), "pass")
    colour = VERDICT_COLOURS[worst]
    checks = [check_title(f["check_name"]) for f in findings if f["verdict"] == worst]
    what = f": {escape(', '.join(checks[:3]))}" if worst != "pass" else ""
    more = f" +{len(checks) - 3}" if worst != "pass" and len(checks) > 3 else ""
    return f"<span style='color:{colour}'>●</span> quality {worst}{what}{more}"


class ImageCanvas(QGraphicsView):
    """One zoomable, pannable image."""

    zoom_changed = Signal(float)
    view_moved = Signal()  # zoomed or panned by the user (or by code)
    ZOOM_STEP = 1.25

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem()
        self.item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(viewer_background(self.palette()))
        self.fitting = True
        self.message = ""
        self.image_id: str | None = None
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.valueChanged.connect(lambda _: self.view_moved.emit())
        self.zoom_changed.connect(lambda _: self.view_moved.emit())

    def changeEvent(self, event: QEvent) -> None:
        # the theme changed (Ctrl+Shift+T, Settings): the background follows it
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.setBackgroundBrush(viewer_background(self.palette()))
        super().changeEvent(event)

    def set_image(self, image: QImage | None, message: str = "") -> None:
        self.message = message
        pixmap = QPixmap.fromImage(image) if image is not None and not image.isNull() else QPixmap()
        self.item.setPixmap(pixmap)
        self.scene().setSceneRect(QRectF(pixmap.rect()))
        self.fit()
        self.viewport().update()

    def has_image(self) -> bool:
        return not self.item.pixmap().isNull()

    def scale_factor(self) -> float:
        return float(self.transform().m11())

    def fit(self) -> None:
        self.fitting = True
        if self.has_image():
            self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)
        self.zoom_changed.emit(self.scale_factor())

    def actual_size(self) -> None:
        self.fitting = False
        self.resetTransform()
        self.zoom_changed.emit(1.0)

    def zoom(self, factor: float) -> None:
        new = self.scale_factor() * factor
        if not 0.02 <= new <= 32:
            return
        self.fitting = False
        self.scale(factor, factor)
        self.zoom_changed.emit(self.scale_factor())

    def fit_scale(self) -> float:
        """The scale at which the whole image fits the viewport."""
        rect = self.sceneRect()
        if rect.isEmpty():
            return 1.0
        view = self.viewport().rect()
        return min(view.width() / rect.width(), view.height() / rect.height())

    def view_state(self) -> tuple[float, float, float]:
        """(zoom relative to fit, centre x and y as fractions of the image)."""
        rect = self.sceneRect()
        centre = self.mapToScene(self.viewport().rect().center())
        if rect.isEmpty():
            return 1.0, 0.5, 0.5
        return (
            self.scale_factor() / self.fit_scale(),
            (centre.x() - rect.x()) / rect.width(),
            (centre.y() - rect.y()) / rect.height(),
        )

    def set_view_state(self, state: tuple[float, float, float], fitting: bool) -> None:
        """Show the same part of this image that ``state`` describes on another."""
        if not self.has_image():
            return
        if fitting:
            self.fit()
            return
        relative, fx, fy = state
        scale = relative * self.fit_scale()
        self.fitting = False
        self.resetTransform()
        self.scale(scale, scale)
        rect = self.sceneRect()
        self.centerOn(rect.x() + fx * rect.width(), rect.y() + fy * rect.height())

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom(self.ZOOM_STEP**steps)
        event.accept()

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)  # type: ignore[arg-type]
        if self.fitting:
            self.fit()

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        if self.has_image() and not self.message:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(
            self.palette().brightText().color() if self.message else self.palette().text().color()
        )
        painter.drawText(
            self.viewport().rect(),
            Qt.AlignmentFlag.AlignCenter,
            self.message or "No image selected",
        )
        painter.restore()


class ViewerPanel(QWidget):
    """One image (or two, side by side) with a toolbar and the info tabs below."""

    def __init__(self, lib: Library, decoder: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lib = lib
        self.decoder = decoder
        self.left = ImageCanvas()
        self.right = ImageCanvas()
        self.info = InfoPanel(lib)
        self.compare_with = QComboBox()
        self.compare_with.setMinimumContentsLength(18)
        self.compare_with.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.compare_with.setToolTip("Image shown on the right in comparison mode")
        self.compare_with.currentIndexChanged.connect(self._compare_choice)
        self.zoom_label = QLabel("fit")
        self.link = QCheckBox("Link zoom and pan")
        self.link.setChecked(True)
        self.link.setToolTip("Zooming or panning one side shows the same part of the other")
        self.captions = {self.left: self._caption(), self.right: self._caption()}
        self._syncing = False
        for canvas in (self.left, self.right):
            canvas.view_moved.connect(lambda c=canvas: self._linked(c))
        self._wanted: dict[ImageCanvas, str] = {}
        self.image_id: str | None = None
        self._build()
        self.left.zoom_changed.connect(lambda s: self.zoom_label.setText(f"{s:.0%}"))

    def _build(self) -> None:
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        self.buttons: dict[str, QToolButton] = {}
        for name, text in (
            ("zoom_fit", "Fit"),
            ("zoom_actual", "1:1"),
            ("zoom_out", "−"),
            ("zoom_in", "+"),
            ("compare", "Compare"),
        ):
            button = QToolButton()
            button.setText(text)
            self.buttons[name] = button
            bar.addWidget(button)
        # Zoom applies to both sides, wherever the panel is shown (main window, duplicates).
        for name, slot in (
            ("zoom_fit", self.fit),
            ("zoom_actual", self.actual_size),
            ("zoom_in", self.zoom_in),
            ("zoom_out", self.zoom_out),
        ):
            self.buttons[name].clicked.connect(slot)
        bar.addWidget(self.compare_with)
        bar.addWidget(self.link)
        bar.addStretch(1)
        bar.addWidget(self.zoom_label)
        images = QSplitter(Qt.Orientation.Horizontal)
        self.panes: dict[ImageCanvas, QWidget] = {}
        for canvas in (self.left, self.right):
            pane = self.panes[canvas] = QWidget()
            column = QVBoxLayout(pane)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(2)
            column.addWidget(canvas, 1)
            column.addWidget(self.captions[canvas])
            images.addWidget(pane)
        self.panes[self.right].hide()
        top = QWidget()
        v = QVBoxLayout(top)
        v.setContentsMargins(0, 0, 0, 0)
        v.addLayout(bar)
        v.addWidget(images, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.info)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.compare_with.setVisible(False)
        self.link.setVisible(False)

    @staticmethod
    def _caption() -> QLabel:
        label = QLabel()
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setContentsMargins(6, 2, 6, 4)
        label.hide()
        return label

    def _linked(self, source: ImageCanvas) -> None:
        """Give the other side the view ``source`` now shows (side by side, when linked)."""
        if self._syncing or not self.comparing() or not self.link.isChecked():
            return
        other = self.right if source is self.left else self.left
        self._syncing = True
        try:
            other.set_view_state(source.view_state(), source.fitting)
        finally:
            self._syncing = False

    def _show_caption(self, canvas: ImageCanvas) -> None:
        label = self.captions[canvas]
        shown = self.comparing() and canvas.image_id is not None
        label.setText(caption(self.lib, canvas.image_id) if shown and canvas.image_id else "")
        label.setVisible(shown)

    # -- what is shown ---------------------------------------------------------------------

    def show_image(self, image_id: str | None, second: str | None = None) -> None:
        """Show an image (and, in comparison mode, ``second`` or a same-lesion image)."""
        self.image_id = image_id
        self.info.show_image(image_id)
        self._load(self.left, image_id)
        self._fill_compare_choices(image_id, second)
        if self.comparing():
            self._load(self.right, self.compare_with.currentData())

    def refresh_info(self) -> None:
        self.info.show_image(self.image_id)
        for canvas in (self.left, self.right):
            self._show_caption(canvas)

    def comparing(self) -> bool:
        return self._comparing

    _comparing = False

    def set_compare(self, on: bool) -> None:
        self._comparing = on
        self.panes[self.right].setVisible(on)
        self.compare_with.setVisible(on)
        self.link.setVisible(on)
        if on:
            self._load(self.right, self.compare_with.currentData())
        self.left.fit()
        for canvas in (self.left, self.right):
            self._show_caption(canvas)

    def _fill_compare_choices(self, image_id: str | None, second: str | None) -> None:
        self.compare_with.blockSignals(True)
        self.compare_with.clear()
        if second:
            self.compare_with.addItem(f"Other selected image {second[:8]}", second)
        if image_id:
            for other in same_lesion(self.lib, image_id)[:50]:
                when = (other["captured_at"] or other["imported_at"] or "")[:10]
                what = f"{other['modality']} {when}"
                self.compare_with.addItem(f"Same lesion: {what} · {other['id'][:8]}", other["id"])
        if self.compare_with.count() == 0:
            self.compare_with.addItem("Select two images to compare", None)
        self.compare_with.blockSignals(False)

    def _compare_choice(self) -> None:
        if self.comparing():
            self._load(self.right, self.compare_with.currentData())

    def _load(self, canvas: ImageCanvas, image_id: str | None) -> None:
        if image_id is not None and image_id == canvas.image_id and canvas.has_image():
            return  # already on screen: no flash of "Loading…"
        canvas.image_id = image_id
        self._show_caption(canvas)
        if image_id is None:
            canvas.set_image(None)
            return
        self._wanted[canvas] = image_id
        path = self.lib.original_path(self.lib.image(image_id))
        canvas.message = "Loading…"
        canvas.viewport().update()
        self.decoder.submit(
            decode_qimage,
            lambda image: self._decoded(canvas, image_id, image),
            lambda exc: self._decoded(canvas, image_id, None, str(exc)),
            path,
        )

    def _decoded(
        self, canvas: ImageCanvas, image_id: str, image: QImage | None, error: str = ""
    ) -> None:
        if self._wanted.get(canvas) != image_id:
            return  # the user moved on meanwhile
        if not shiboken6.isValid(canvas):
            return  # its window was closed (and deleted) while the image decoded
        canvas.set_image(image, f"Cannot show this image: {error}" if error else "")
        if canvas is self.right:  # the new right image joins the left one's view
            self._linked(self.left)

    # -- zoom (applies to both sides) ------------------------------------------------------

    def canvases(self) -> list[ImageCanvas]:
        return [self.left, self.right] if self.comparing() else [self.left]

    def fit(self) -> None:
        for c in self.canvases():
            c.fit()

    def actual_size(self) -> None:
        for c in self.canvases():
            c.actual_size()

    def zoom_in(self) -> None:
        for c in self.canvases():
            c.zoom(ImageCanvas.ZOOM_STEP)

    def zoom_out(self) -> None:
        for c in self.canvases():
            c.zoom(1 / ImageCanvas.ZOOM_STEP)
