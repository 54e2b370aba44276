"""Library ▸ Export…: a preview of the counts, an export with progress, and clear refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from dermdesk.exchange.splits import plan_split
from dermdesk.gui.main_window import MainWindow
from dermdesk.library import ImageFilter, Library, split_store

pytestmark = pytest.mark.gui


def test_export_a_stored_split_from_the_dialog(
    qtbot: QtBot, window: MainWindow, lib: Library, tmp_path: Path
) -> None:
    plan = plan_split(lib, ImageFilter(), (0.6, 0.2, 0.2), seed=0)
    split_store.create_split(lib, "gui-v1", plan.assignment, plan.params, plan.report)
    dialog = window.open_export()
    qtbot.waitUntil(lambda: dialog.preview.toPlainText().startswith(f"{lib.count()} images"))
    dialog.split.setCurrentText("gui-v1")
    dialog.format.setCurrentText("imagefolder")
    qtbot.waitUntil(lambda: "train" in dialog.preview.toPlainText().splitlines()[0])
    labelled = lib.count(ImageFilter(labelled=True))
    assert dialog.preview.toPlainText().startswith(f"{labelled} images")
    out = tmp_path / "dataset"
    dialog.target.setText(str(out))
    with qtbot.waitSignal(dialog.exported, timeout=60_000) as blocker:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].images == labelled
    rows = []
    for part in ("train", "val", "test"):
        with open(out / part / "metadata.csv", newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    assert len(rows) == labelled and (out / "DATACARD.md").is_file()
    assert "Exported" in dialog.status.text() and not dialog.bar.isVisible()
    dialog.grab().save(str(tmp_path / "export_dialog.png"))

    # Exporting again into the same folder is refused in words, nothing touched.
    before = sorted(p.name for p in out.iterdir())
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "is not empty" in dialog.status.text())
    assert sorted(p.name for p in out.iterdir()) == before
    dialog.close()


def test_an_empty_selection_disables_export(qtbot: QtBot, window: MainWindow, lib: Library) -> None:
    from dermdesk.gui.export_dialog import ExportDialog

    dialog = ExportDialog(lib, ImageFilter(dataset=["nowhere"]), window)
    dialog.show()
    qtbot.waitUntil(lambda: "nothing to export" in dialog.preview.toPlainText())
    assert not dialog.export_button.isEnabled()
    dialog.close()


def test_cancel_leaves_no_folder_behind(
    qtbot: QtBot, window: MainWindow, lib: Library, tmp_path: Path
) -> None:
    dialog = window.open_export()
    qtbot.waitUntil(lambda: dialog.preview.toPlainText().startswith(f"{lib.count()} images"))
    out = tmp_path / "never"
    dialog.target.setText(str(out))
    dialog.start()
    assert dialog.cancel_button.text() == "Cancel"
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)  # cancels, not closes
    qtbot.waitUntil(lambda: "cancelled" in dialog.status.text(), timeout=30_000)
    assert "nothing was written" in dialog.status.text()
    assert not out.exists() and list(tmp_path.glob(".never.*")) == []
    assert dialog.isVisible() and dialog.cancel_button.text() == "Close"
    dialog.close()
