"""Import by drag and drop onto the window and through the dialog, with progress."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from dermdesk.gui.main_window import MainWindow
from dermdesk.library import ImageFilter, Library

pytestmark = pytest.mark.gui


def phone_export(tmp_path: Path, shared_data: Path, n: int = 6) -> Path:
    """A folder like a phone export: real photos not yet in the library, and one broken file."""
    folder = tmp_path / "export"
    folder.mkdir()
    for src in sorted((shared_data / "fitzpatrick17k_more" / "images").glob("*.jpg"))[:n]:
        shutil.copy(src, folder / src.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def drop(widget: QWidget, paths: list[Path]) -> None:
    """What a drag from the file manager delivers: DragEnter (must be accepted), then Drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    rest = (
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    try:  # PySide6 6.12 takes a QPointF (and deprecates QPoint); 6.11 only a QPoint
        enter = QDragEnterEvent(QPointF(200, 200), *rest)
    except TypeError:
        enter = QDragEnterEvent(QPoint(200, 200), *rest)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(widget, QDropEvent(QPointF(200, 200), *rest))


def test_drag_and_drop_a_folder_imports_it_with_progress(
    qtbot: QtBot, window: MainWindow, lib: Library, tmp_path: Path, shared_data: Path
) -> None:
    w = window
    folder = phone_export(tmp_path, shared_data)
    before = lib.count()
    drop(w, [folder])
    dialog = w.import_dialog
    with qtbot.waitSignal(dialog.imported, timeout=30_000) as blocker:
        pass
    report = blocker.args[0]
    assert len(report.added) == 6 and len(report.refused) == 1
    assert "broken.jpg" in dialog.log.toPlainText()
    assert dialog.progress.value() == dialog.progress.maximum() == 7
    assert lib.count() == before + 6
    qtbot.waitUntil(lambda: w.gallery_model.total == before + 6)
    dialog.close()


def test_the_import_dialog_imports_a_dataset_folder(
    qtbot: QtBot, window: MainWindow, lib: Library, shared_data: Path
) -> None:
    w = window
    dialog = w.open_import([shared_data / "ph2"])
    assert dialog.chosen_paths() == [shared_data / "ph2"]
    with qtbot.waitSignal(dialog.imported, timeout=60_000) as blocker:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    report = blocker.args[0]
    assert len(report.added) == 200 and not report.refused
    assert lib.count(ImageFilter(dataset=["ph2"])) == 200
    dialog.close()
