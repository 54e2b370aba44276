"""Review duplicates side by side and decide; the dashboard's cells filter the gallery."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from pytestqt.qtbot import QtBot

from dermdesk.exchange.importer import ImportItem, run_import
from dermdesk.gui.charts import ROW_H
from dermdesk.gui.main_window import MainWindow
from dermdesk.library import ImageFilter, Library
from dermdesk.library import curation_store as cs

pytestmark = pytest.mark.gui


def add_near_copy(lib: Library, tmp_path: Path) -> tuple[str, str]:
    """A real photo of the library re-saved smaller and recompressed, imported as new."""
    row = lib.images(ImageFilter(dataset=["pad_ufes_20"]), order="id")[0]
    with Image.open(lib.original_path(row)) as img:
        small = img.convert("RGB").resize((img.width * 9 // 10, img.height * 9 // 10))
    path = tmp_path / "copy.jpg"
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=75)
    path.write_bytes(buf.getvalue())
    report = run_import(lib, [ImportItem(path, "copy", dataset="clinic")])
    return row["id"], report.added[0]


def test_review_a_pair_merge_it_and_undo(
    qtbot: QtBot, window: MainWindow, lib: Library, tmp_path: Path
) -> None:
    original, copy = add_near_copy(lib, tmp_path)
    dialog = window.open_duplicates()
    qtbot.waitUntil(lambda: any({p["a"], p["b"]} == {original, copy} for p in dialog.pairs))
    pair = next(p for p in dialog.pairs if {p["a"], p["b"]} == {original, copy})
    dialog.select_pair(pair["a"], pair["b"])
    assert dialog.viewer.comparing() and dialog.viewer.image_id == pair["a"]
    qtbot.waitUntil(lambda: all(c.has_image() for c in dialog.viewer.canvases()))
    left, right = dialog.viewer.canvases()
    before = (left.scale_factor(), right.scale_factor())
    dialog.viewer.zoom_in()  # linked: both sides zoom by the same step
    assert left.scale_factor() / before[0] == pytest.approx(right.scale_factor() / before[1])
    assert left.scale_factor() > before[0]
    dialog.grab().save(str(tmp_path / "duplicates.png"))
    with qtbot.waitSignal(dialog.decided, timeout=10_000):
        qtbot.mouseClick(dialog.buttons["merge"], Qt.MouseButton.LeftButton)
    assert pair["b"] in cs.excluded_ids(lib)
    assert lib.image(pair["b"])["lesion_id"] == lib.image(pair["a"])["lesion_id"]
    qtbot.waitUntil(
        lambda: dialog.selected() is not None and dialog.selected()["decision"] == "merge"
    )
    with qtbot.waitSignal(dialog.decided, timeout=10_000):
        qtbot.mouseClick(dialog.undo_button, Qt.MouseButton.LeftButton)
    assert pair["b"] not in cs.excluded_ids(lib)
    qtbot.waitUntil(lambda: dialog.selected() is not None and dialog.selected()["decision"] is None)
    dialog.close()


def test_the_gallery_filter_shows_images_with_duplicates(
    qtbot: QtBot, window: MainWindow, lib: Library, tmp_path: Path
) -> None:
    original, copy = add_near_copy(lib, tmp_path)
    window.refresh_all()
    window.filters.duplicates.setChecked(True)
    expected = lib.count(ImageFilter(duplicates=True))
    qtbot.waitUntil(lambda: window.gallery_model.total == expected)
    window.gallery_model.ensure_rows(expected)
    qtbot.waitUntil(lambda: window.gallery_model.rowCount() == expected)
    shown = set(window.gallery_model.ids(list(range(expected))))
    assert copy in shown and original in shown


def test_a_dashboard_cell_filters_the_gallery(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    window.tabs.setCurrentWidget(window.dashboard)
    window.dashboard.refresh()
    table = window.dashboard.dx_fitz
    qtbot.waitUntil(lambda: table.rowCount() > 1 and table.columnCount() > 1)
    codes, values = window.dashboard._axes["fitzpatrick"]
    row = codes.index(
        next(
            c
            for c in codes
            if c and lib.count(ImageFilter(diagnosis=[c], fitzpatrick=[2], tone="rated"))
        )
    )
    column = values.index(2)
    rect = table.visualItemRect(table.item(row, column))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.tabs.currentIndex() == 0
    expected = lib.count(ImageFilter(diagnosis=[codes[row]], fitzpatrick=[2], tone="rated"))
    qtbot.waitUntil(lambda: window.gallery_model.total == expected)
    assert (
        window.filters.diagnosis.values() == [codes[row]]
        and window.filters.tone.currentData() == "rated"
    )


def test_label_review_without_an_active_model_says_so(qtbot: QtBot, window: MainWindow) -> None:
    pytest.importorskip("cleanlab")
    window.actions_["label_review"].trigger()
    qtbot.waitUntil(lambda: "no active model" in window.statusBar().currentMessage())


def test_a_dataset_bar_filters_the_gallery(qtbot: QtBot, window: MainWindow, lib: Library) -> None:
    window.tabs.setCurrentWidget(window.dashboard)
    window.dashboard.refresh()
    bars = window.dashboard.datasets
    qtbot.waitUntil(lambda: len(bars.rows) > 1)
    row = next(i for i, r in enumerate(bars.rows) if r[0] == "fitzpatrick17k")
    qtbot.mouseClick(bars, Qt.MouseButton.LeftButton, pos=QPoint(40, 3 + row * ROW_H + ROW_H // 2))
    expected = lib.count(ImageFilter(dataset=["fitzpatrick17k"]))
    qtbot.waitUntil(lambda: window.gallery_model.total == expected)
    assert window.tabs.currentIndex() == 0 and window.filters.dataset.text() == "fitzpatrick17k"


def test_a_backbone_finds_near_copies_from_the_duplicates_dialog(
    qtbot: QtBot, lib: Library, settings: object, tmp_path: Path
) -> None:
    """Issue 16: "Find with backbone" runs the embed_duplicates job with a real (tiny)
    registered backbone; the pair it keeps is listed with its cosine."""
    import os
    import subprocess
    import sys

    original, copy = add_near_copy(lib, tmp_path)
    subprocess.run(
        [sys.executable, "-m", "dermdesk", "train", "pretrain", "--arch", "vit_test",
         "--img-size", "32", "--epochs", "1", "--batch-size", "16", "--micro-batch", "16",
         "--threads", "1", "--max-images", "48", "--name", "tiny backbone"],
        env={**os.environ, "DERMDESK_HOME": str(lib.root)},
        check=True,
        capture_output=True,
    )  # fmt: skip
    w = MainWindow(lib, settings)  # type: ignore[arg-type]
    qtbot.addWidget(w)
    w.show()
    dialog = w.open_duplicates()
    qtbot.waitUntil(lambda: dialog.embed_button.isEnabled())
    assert "tiny backbone" in dialog.backbones.currentText()
    qtbot.mouseClick(dialog.embed_button, Qt.MouseButton.LeftButton)
    jobs = lambda: [j for j in w.jobs.model.jobs if j.kind == "embed_duplicates"]  # noqa: E731
    qtbot.waitUntil(lambda: bool(jobs()) and jobs()[0].status == "done", timeout=180_000)
    qtbot.waitUntil(
        lambda: any(
            {p["a"], p["b"]} == {original, copy} and p["cosine"] is not None for p in dialog.pairs
        ),
        timeout=20_000,
    )
    texts = [dialog.table.item(r, 2).text() for r in range(dialog.table.rowCount())]
    assert any("cos " in t for t in texts)
    dialog.close()
    w.close()


def test_closing_the_duplicates_dialog_while_images_decode_is_safe(
    qtbot: QtBot, window: MainWindow, lib: Library, tmp_path: Path
) -> None:
    """The dialog deletes itself on close; an image decode that arrives afterwards must
    find its canvas gone and do nothing (no exception in the event loop)."""
    original, copy = add_near_copy(lib, tmp_path)
    dialog = window.open_duplicates()
    qtbot.waitUntil(lambda: any({p["a"], p["b"]} == {original, copy} for p in dialog.pairs))
    pair = next(p for p in dialog.pairs if {p["a"], p["b"]} == {original, copy})
    dialog.select_pair(pair["a"], pair["b"])  # two decodes start
    dialog.close()
    qtbot.wait(1500)  # they arrive after the dialog is gone
    window.open_duplicates().close()  # and the window still opens another
