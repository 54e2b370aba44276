"""The gallery: paging with fetchMore, grouping, thumbnails, badges; the item models are sound."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from pytestqt.qtbot import QtBot

from dermdesk.gui.gallery_model import GalleryModel, Query
from dermdesk.gui.main_window import MainWindow
from dermdesk.gui.tasks import LibraryWorker
from dermdesk.gui.thumbnails import ThumbnailLoader
from dermdesk.library import ImageFilter, Library

pytestmark = pytest.mark.gui


@pytest.fixture
def gallery(qtbot: QtBot, lib: Library) -> GalleryModel:
    reader = LibraryWorker(lib.root, "tester", "reader")
    thumbs = ThumbnailLoader(lib.root, 96)
    model = GalleryModel(reader, thumbs, page_size=25)
    yield model
    thumbs.shutdown()
    reader.shutdown()


def test_gallery_model_passes_the_model_tester_while_paging(
    qtbot: QtBot, qtmodeltester: object, gallery: GalleryModel, lib: Library
) -> None:
    with qtbot.waitSignal(gallery.modelReset):
        gallery.set_query(Query())
    assert gallery.rowCount() == 25 and gallery.total == lib.count()
    assert gallery.canFetchMore()
    with qtbot.waitSignal(gallery.rowsInserted):
        gallery.fetchMore()
    assert gallery.rowCount() == 50
    # The tester fetches more itself; rows then arrive asynchronously, still under its eye.
    qtmodeltester.check(gallery)  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: not gallery.is_fetching)
    assert gallery.rowCount() >= 50
    gallery.ensure_rows(lib.count())
    qtbot.waitUntil(lambda: gallery.rowCount() == lib.count())
    assert not gallery.canFetchMore()
    ids = [gallery.tile(r).id for r in range(gallery.rowCount())]
    assert ids == [r["id"] for r in lib.images()]  # same order as the library's own listing


def test_thumbnails_load_off_thread_and_tiles_carry_badges(
    qtbot: QtBot, gallery: GalleryModel, lib: Library
) -> None:
    with qtbot.waitSignal(gallery.modelReset):
        gallery.set_query(Query(ImageFilter(dataset=["fitzpatrick17k"])))
    first = gallery.tile(0)
    assert first.fitzpatrick is not None and first.labelled and not first.synthetic
    assert gallery.data(gallery.index(0), 0x0103) is None  # ThumbRole: not cached yet, queued
    with qtbot.waitSignal(gallery.thumbs.loaded, timeout=5000):
        pass
    image = gallery.thumbs.get(first.id)
    assert image is not None and not image.isNull() and max(image.width(), image.height()) == 96


def test_grouping_by_diagnosis_gives_headed_groups_in_order(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    w.filters.group.setCurrentIndex(w.filters.group.findData("diagnosis"))
    qtbot.waitUntil(
        lambda: w.gallery_model.query.group == "diagnosis" and not w.gallery_model.is_fetching
    )
    groups = w.gallery_model.groups()
    expected = {r["diagnosis"]: r["n"] for r in lib.counts(["diagnosis"])}
    assert {g.key: g.count for g in groups} == expected
    assert w.gallery.grid.grouped
    starts = w.gallery_model.group_starts()
    for g, start in enumerate(starts):
        if start < w.gallery_model.rowCount():
            assert w.gallery_model.tile(start).diagnosis == groups[g].key
    # a group's first tile sits below its heading
    _, y, _, _ = w.gallery.grid.item_rect(starts[1])
    assert y > w.gallery.grid.header_rect(1)[1]


def test_scrolling_to_the_end_fetches_more_rows(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    w.gallery_model.page_size = 20
    w.gallery_model.reload()
    qtbot.waitUntil(lambda: w.gallery_model.rowCount() == 20 and not w.gallery_model.is_fetching)
    bar = w.gallery.verticalScrollBar()
    for _ in range(200):
        bar.setValue(bar.maximum())
        qtbot.wait(5)
        if w.gallery_model.rowCount() == lib.count():
            break
    assert w.gallery_model.rowCount() == lib.count()


def test_keyboard_navigation_moves_through_the_grid(qtbot: QtBot, window: MainWindow) -> None:
    from PySide6.QtCore import Qt

    w = window
    w.gallery.setFocus()
    cols = w.gallery.grid.columns
    qtbot.keyClick(w.gallery, Qt.Key.Key_Right)
    assert w.gallery.currentIndex().row() == 1
    qtbot.keyClick(w.gallery, Qt.Key.Key_Down)
    assert w.gallery.currentIndex().row() == 1 + cols
    qtbot.keyClick(w.gallery, Qt.Key.Key_Home)
    assert w.gallery.currentIndex().row() == 0


def test_an_other_label_is_captioned_with_its_condition(lib: Library) -> None:
    from dermdesk.gui.gallery_view import caption_text
    from dermdesk.library.browse import tiles

    first, second = (r["id"] for r in lib.images(limit=2))
    lib.set_label([first], "OTHER", free_text="keloid")
    lib.set_label([second], "MEL")
    by_id = {t.id: t for t in tiles(lib, [first, second])}
    assert caption_text(by_id[first]) == "OTHER · keloid"
    assert caption_text(by_id[second]) == "MEL · Melanoma"


def test_disabled_controls_look_disabled_in_the_light_theme(qtbot: QtBot) -> None:
    from PySide6.QtGui import QPalette

    from dermdesk.gui.theme import _light_palette

    p = _light_palette()
    role = QPalette.ColorRole.ButtonText
    enabled = p.color(QPalette.ColorGroup.Active, role)
    disabled = p.color(QPalette.ColorGroup.Disabled, role)
    assert abs(enabled.lightness() - disabled.lightness()) > 80


def test_dark_swatches_keep_an_outline_in_the_dark_theme(qtbot: QtBot) -> None:
    from PySide6.QtGui import QColor, QPalette

    from dermdesk import taxonomy
    from dermdesk.gui.swatches import outline_colour
    from dermdesk.gui.theme import _dark_palette

    window = _dark_palette().color(QPalette.ColorRole.Window)
    outline = outline_colour(window)
    darkest = min(
        [QColor(f["swatch"]) for f in taxonomy.fitzpatrick_scale()]
        + [QColor(m["swatch"]) for m in taxonomy.monk_scale()],
        key=lambda c: c.lightness(),
    )
    # the outline stands out from both the dark window and the darkest swatch
    assert outline.lightness() - max(window.lightness(), darkest.lightness()) > 100


def test_the_quality_dot_names_the_worst_check_on_hover(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    from PySide6.QtCore import Qt

    from tests.gui.stand_ins import add_quality

    w = window
    tile = w.gallery_model.tile(0)
    lib.conn.execute("UPDATE quality SET verdict = 'pass' WHERE image_id = ?", (tile.id,))
    add_quality(lib, tile.id, "hair", "warn", "hair covers 12% of the image")
    add_quality(lib, tile.id, "sharpness", "fail", "blurred: sharpness 5, needs ≥ 25")
    add_quality(lib, tile.id, "glare", "fail", "glare on 14% of the lesion")
    w.gallery_model.refresh_ids([tile.id])
    qtbot.waitUntil(lambda: w.gallery_model.tile(0).quality == "fail")
    tip = w.gallery_model.data(w.gallery_model.index(0), Qt.ItemDataRole.ToolTipRole)
    # the worst verdict's checks, the first with its reason; a mere warning is not named
    assert "quality: fail (Sharpness: blurred: sharpness 5, needs ≥ 25; also Glare)" in tip
    assert "Hair" not in tip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_reader_and_thumbnail_threads_run_below_the_gui_thread(
    qtbot: QtBot, gallery: GalleryModel
) -> None:
    """The kernel runs the GUI thread first; workers take the CPU time left over."""
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []
    gallery.reader.submit(
        lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), seen.append
    )
    qtbot.waitUntil(lambda: bool(seen))
    assert seen[0] > gui or gui == 19

    def thumbs_below() -> bool:
        ids = [t.native_id for t in gallery.thumbs._threads]
        return all(n is not None and os.getpriority(os.PRIO_PROCESS, n) > gui for n in ids)

    if gui < 19:
        qtbot.waitUntil(thumbs_below)  # each worker lowers itself when it starts
