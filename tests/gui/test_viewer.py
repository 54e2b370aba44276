"""The viewer: zoom, fit, 1:1, side by side; quality findings and predictions beside it."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QItemSelectionModel
from pytestqt.qtbot import QtBot

from dermdesk.gui.main_window import MainWindow
from dermdesk.library import Library
from tests.gui.stand_ins import add_model, add_prediction, add_quality

pytestmark = pytest.mark.gui


def test_zoom_fit_and_actual_pixels(qtbot: QtBot, window: MainWindow, lib: Library) -> None:
    w = window
    canvas = w.viewer.left
    qtbot.waitUntil(canvas.has_image)
    image = lib.image(w.current_id())
    pixmap = canvas.item.pixmap()
    assert (pixmap.width(), pixmap.height()) == (
        image["width"],
        image["height"],
    )  # upright original
    fitted = canvas.scale_factor()
    assert fitted < 1  # a 1024-px photo fits a smaller viewer
    w.actions_["zoom_actual"].trigger()
    assert canvas.scale_factor() == 1.0
    w.actions_["zoom_in"].trigger()
    assert canvas.scale_factor() == pytest.approx(1.25)
    w.actions_["zoom_fit"].trigger()
    assert canvas.scale_factor() == pytest.approx(fitted)


def test_compare_two_selected_images_side_by_side(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    model, selection = w.gallery_model, w.gallery.selectionModel()
    selection.setCurrentIndex(model.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    selection.select(model.index(3), QItemSelectionModel.SelectionFlag.Select)
    w.actions_["compare"].trigger()
    assert w.viewer.comparing()
    qtbot.waitUntil(lambda: w.viewer.right.has_image() and w.viewer.left.has_image())
    assert w.viewer.left.image_id == model.tile(0).id
    assert w.viewer.right.image_id == model.tile(3).id
    w.actions_["compare"].trigger()
    assert not w.viewer.comparing()


def test_quality_findings_and_predictions_are_listed(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    image_id = w.current_id()
    add_quality(
        lib,
        image_id,
        "sharpness",
        "fail",
        "blurred: sharpness 5, needs 25; hold the camera steady",
        5.0,
    )
    add_quality(lib, image_id, "exposure", "pass", "well exposed", 130.0)
    add_model(lib, "m-active", status="active")
    add_prediction(lib, image_id, "m-active", {"MEL": 0.7, "NEV": 0.2, "BCC": 0.1})
    w.viewer.refresh_info()
    info = w.viewer.info
    reasons = [info.quality.item(r, 3).text() for r in range(info.quality.rowCount())]
    assert any("hold the camera steady" in r for r in reasons)
    assert (
        info.quality.item(reasons.index(next(r for r in reasons if "steady" in r)), 1).text()
        == "fail"
    )
    # worst first, with readable titles, whatever the check names' alphabetical order
    verdicts = [info.quality.item(r, 1).text() for r in range(info.quality.rowCount())]
    order = {"fail": 0, "warn": 1, "pass": 2}
    assert [order.get(v, 3) for v in verdicts] == sorted(order.get(v, 3) for v in verdicts)
    titles = [info.quality.item(r, 0).text() for r in range(info.quality.rowCount())]
    assert "Sharpness" in titles and not any("_" in t for t in titles)
    assert info.bars.rows[0] == ("MEL", 0.7)
    assert "m-active" in info.prediction_note.text()


def test_compare_links_zoom_and_pan_captions_each_side_and_uses_the_space(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    model, selection = w.gallery_model, w.gallery.selectionModel()
    selection.setCurrentIndex(model.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    selection.select(model.index(4), QItemSelectionModel.SelectionFlag.Select)
    gallery_before = w.split.sizes()[0]
    w.actions_["compare"].trigger()
    left, right = w.viewer.left, w.viewer.right
    qtbot.waitUntil(lambda: right.has_image() and left.has_image())
    assert w.split.sizes()[0] < gallery_before  # the panes take the room
    assert w.viewer.splitter.sizes()[0] > 3 * w.viewer.splitter.sizes()[1]

    for canvas in (left, right):  # label, skin type with its provenance, device, quality
        text = w.viewer.captions[canvas].text()
        image = lib.image(canvas.image_id)
        assert w.viewer.captions[canvas].isVisible()
        assert (image["diagnosis"] or "unlabelled") in text
        assert "(rated)" in text or "(estimated)" in text or "skin type unknown" in text
        assert (image["device"] or "device unknown") in text and "quality" in text

    left.zoom(3.0)
    assert right.view_state()[0] == pytest.approx(left.view_state()[0], rel=1e-3)
    bar = left.horizontalScrollBar()
    bar.setValue(bar.maximum() // 4)  # pan the left side
    assert right.view_state()[1] == pytest.approx(left.view_state()[1], abs=0.02)
    assert not right.fitting
    right.zoom(0.8)  # either side leads
    assert left.view_state()[0] == pytest.approx(right.view_state()[0], rel=1e-3)

    w.viewer.link.setChecked(False)  # unlinked: each side on its own
    zoom = right.scale_factor()
    left.zoom(2.0)
    assert right.scale_factor() == zoom

    w.actions_["compare"].trigger()
    assert w.split.sizes()[0] == gallery_before  # the gallery gets its room back
    assert not w.viewer.captions[left].isVisible()


def test_the_viewer_follows_the_theme(qtbot: QtBot, window: MainWindow) -> None:
    from PySide6.QtGui import QPalette

    w = window
    w.actions_["compare"].trigger()
    left, right = w.viewer.left, w.viewer.right
    caption = w.viewer.captions[left]
    assert left.backgroundBrush().color().lightness() > 150  # the light theme
    w.actions_["dark_theme"].trigger()
    try:  # the palette change is delivered through the event loop
        for canvas in (left, right):
            qtbot.waitUntil(lambda c=canvas: c.backgroundBrush().color().lightness() < 60)
        text = caption.palette().color(QPalette.ColorRole.WindowText)
        assert text.lightness() > 150  # the captions' text is light on the dark theme
    finally:
        w.actions_["dark_theme"].trigger()  # back to light for the tests after this one
    qtbot.waitUntil(lambda: left.backgroundBrush().color().lightness() > 150)
