"""Import by drag and drop onto the window and through the dialog, with progress."""

from __future__ import annotations

import os
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


def test_a_csv_is_mapped_previewed_and_remembered_before_import(
    qtbot: QtBot, window: MainWindow, lib: Library, shared_data: Path, tmp_path: Path
) -> None:
    """One row per lesion, a clinical and a dermoscopic photo; the preview shows what each
    diagnosis becomes, a typed target maps a value, and the mapping comes back next time."""
    from dermdesk.exchange.datasets import plan_path

    folder = tmp_path / "study"
    folder.mkdir()
    clinical = [i.path for i in plan_path(shared_data / "pad_ufes_20_more").items[:2]]
    derm = [i.path for i in plan_path(shared_data / "ph2").items[:2]]
    for p in clinical + derm:
        shutil.copy(p, folder / p.name)
    labels = ["melanoma in situ", "funny spot"]
    rows = [
        f"{c.name},{d.name},{dx},L{k}"
        for k, (c, d, dx) in enumerate(zip(clinical, derm, labels, strict=True))
    ]
    csv_path = folder / "study.csv"
    csv_path.write_text("photo,dermoscopy,dx,lesion\n" + "\n".join(rows) + "\n")
    before = lib.count()
    dialog = window.open_import()
    csv_dialog = dialog.open_csv(csv_path)
    assert csv_dialog.fields["lesion"].currentData() == "lesion"  # same name: picked
    csv_dialog.images[0][0].setCurrentIndex(csv_dialog.images[0][0].findData("photo"))
    csv_dialog.images[1][0].setCurrentIndex(csv_dialog.images[1][0].findData("dermoscopy"))
    csv_dialog.fields["diagnosis"].setCurrentIndex(csv_dialog.fields["diagnosis"].findData("dx"))
    table = csv_dialog.preview
    shown = {table.item(r, 1).text(): table.item(r, 3).text() for r in range(table.rowCount())}
    assert shown == {
        "melanoma in situ": "MEL (melanoma in situ)",
        "funny spot": "OTHER (funny spot)",
    }
    row = next(r for r in range(table.rowCount()) if table.item(r, 1).text() == "funny spot")
    table.item(row, 3).setText("not a code at all")  # refused, said in the dialog
    assert "no diagnosis code" in csv_dialog.error.text()
    row = next(r for r in range(table.rowCount()) if table.item(r, 1).text() == "funny spot")
    table.item(row, 3).setText("NEV")
    assert csv_dialog.value_maps == {"diagnosis": {"funny spot": "NEV"}}
    if os.environ.get("DERMDESK_SCREENSHOTS"):
        csv_dialog.grab().save(os.environ["DERMDESK_SCREENSHOTS"])
    csv_dialog.buttons.accepted.emit()
    assert "CSV study.csv: 4 images" in dialog.paths.item(0).text()
    dialog.start()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=60000)
    assert lib.count() == before + 4
    new = lib.images(ImageFilter(dataset=["study"]))
    assert sorted(r["modality"] for r in new) == [
        "clinical",
        "clinical",
        "dermoscopic",
        "dermoscopic",
    ]
    assert sorted(r["diagnosis"] for r in new) == ["MEL", "MEL", "NEV", "NEV"]
    again = dialog.open_csv(csv_path)  # the same dataset name: the choices come back
    assert again.images[1][0].currentData() == "dermoscopy"
    assert again.value_maps == {"diagnosis": {"funny spot": "NEV"}}
    again.close()
    dialog.close()
