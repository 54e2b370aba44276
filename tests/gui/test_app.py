"""Start-up (no torch), the CLI entry point, shortcuts sheet, settings, themes, About."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QTableWidget
from pytestqt.qtbot import QtBot

from dermdesk.gui.about import AboutDialog, versions
from dermdesk.gui.actions import ACTIONS, shortcut_text
from dermdesk.gui.main_window import MainWindow
from dermdesk.gui.settings_dialog import SettingsDialog
from dermdesk.gui.shortcuts_sheet import ShortcutsSheet
from dermdesk.library import Library

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )


def test_the_main_window_starts_without_importing_torch(library_dir: Path, tmp_path: Path) -> None:
    code = f"""
import sys
from PySide6.QtCore import QSettings
from dermdesk.gui.app import make_app
from dermdesk.gui.main_window import MainWindow
from dermdesk.gui.settings import Settings
from dermdesk.library import Library
app = make_app([])
lib = Library.open({str(library_dir)!r})
store = QSettings({str(tmp_path / "s.ini")!r}, QSettings.Format.IniFormat)
window = MainWindow(lib, Settings(store))
window.show()
app.processEvents()
heavy = sorted(m for m in ("torch", "timm", "diffusers", "torchvision") if m in sys.modules)
print("heavy:", heavy)
window.close()
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout


def test_dermdesk_gui_opens_the_library_and_quits_when_told(
    library_dir: Path, tmp_path: Path
) -> None:
    code = (
        "from dermdesk.cli import main; "
        f"raise SystemExit(main(['--library', {str(library_dir)!r}, 'gui']))"
    )
    result = run_python(
        code, DERMDESK_QUIT_AFTER_MS="800", XDG_CONFIG_HOME=str(tmp_path / "config")
    )
    assert result.returncode == 0, result.stderr


def test_shortcuts_are_unique_and_all_on_the_sheet(qtbot: QtBot) -> None:
    keys = [k for spec in ACTIONS for k in spec.shortcuts]
    assert len(keys) == len(set(keys)), "two actions share a shortcut"
    sheet = ShortcutsSheet()
    qtbot.addWidget(sheet)
    listed = sheet.listed()
    for spec in ACTIONS:
        if spec.shortcuts:
            assert spec.text.replace("&", "") in listed
            assert shortcut_text(spec)
    sheet.search.setText("melanoma")
    listed = sheet.listed()  # heading + the number key that gives melanoma by default
    assert "Label with key 1 (default: Melanoma)" in listed and len(listed) == 2


def test_settings_dialog_and_dark_theme_persist(
    qtbot: QtBot, window: MainWindow, settings: object
) -> None:
    w = window
    w.actions_["dark_theme"].trigger()
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
    assert w.settings.theme == "dark"
    dialog = SettingsDialog(w.settings, w)
    dialog.theme.setCurrentIndex(dialog.theme.findData("light"))
    dialog.annotator.setText("dr-lima")
    dialog.thumb.setCurrentIndex(0)
    dialog.accept()
    assert w.settings.theme == "light" and w.settings.annotator == "dr-lima"
    assert w.settings.store.value("annotation/annotator") == "dr-lima"  # in the settings file


def test_about_lists_versions_without_loading_torch(qtbot: QtBot, window: MainWindow) -> None:
    rows = dict(versions(window.lib))
    assert rows["dermdesk"] and rows["Qt"] and rows["SQLite"]
    assert rows["Library"] == str(window.lib.root)
    dialog = AboutDialog(window.lib, window)
    qtbot.addWidget(dialog)
    table = dialog.findChild(QTableWidget)
    assert table is not None and table.rowCount() == len(rows)


def test_a_read_only_library_opens_for_browsing_with_editing_off(
    qtbot: QtBot, library_dir: Path, settings: object
) -> None:
    from dermdesk.gui.main_window import MainWindow

    lib = Library.open(library_dir, readonly=True)
    before = {r["id"]: r["diagnosis"] for r in lib.images()}
    w = MainWindow(lib, settings)  # type: ignore[arg-type]
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.gallery_model.rowCount() > 0)
    assert "read-only (editing is off)" in w.windowTitle()
    for name in ("import", "capture", "train", "label_MEL", "fitzpatrick_5", "undo"):
        assert not w.actions_[name].isEnabled(), name
    w.gallery.setFocus()
    qtbot.keyClick(w.gallery, "1")  # the MEL key does nothing
    qtbot.wait(200)
    assert not w.annotation.isEnabled() and not w.models.activate_button.isEnabled()
    assert {r["id"]: r["diagnosis"] for r in lib.images()} == before
    w.close()
    lib.close()


def test_open_another_library_then_switch_back_from_the_recent_menu(
    qtbot: QtBot,
    window: MainWindow,
    template_library: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    import shiboken6
    from PySide6.QtWidgets import QMessageBox

    w = window
    first = w.lib.root
    other = tmp_path / "other"
    shutil.copytree(template_library, other)
    second = w.switch_library(other)
    assert second is not None and second.owns_library
    qtbot.waitUntil(lambda: second.gallery_model.rowCount() > 0)
    assert second.lib.root == other.resolve() and str(other.resolve()) in second.windowTitle()
    assert not w.isVisible()  # the first window closed itself
    assert w.settings.recent_libraries[:2] == [str(other.resolve()), str(first)]

    second.fill_recent_menu()
    entries = [a for a in second.recent_menu.actions() if a.text() == str(first)]
    assert len(entries) == 1 and entries[0].isEnabled()
    assert second.switch_library(other) is None  # the open one: said, nothing changes
    assert "already open" in second.statusBar().currentMessage()

    # a folder with no library becomes one only when asked
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.No)
    assert second.switch_library(empty) is None and second.isVisible()
    assert not (empty / "library.sqlite").exists()

    entries[0].trigger()  # back to the first library, from the Recent menu
    third = second.next_window
    assert third is not None
    qtbot.waitUntil(lambda: third.gallery_model.rowCount() > 0)
    assert third.lib.root == first
    qtbot.waitUntil(lambda: not shiboken6.isValid(second))  # closed and deleted
    third.close()


def test_backup_runs_off_the_gui_thread_and_refuses_bad_targets(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import tempfile

    from dermdesk.library.verify import verify

    w = window
    inside = w.lib.root / "backups"
    assert w.start_backup(inside) is None
    assert "cannot go inside the library" in w.statusBar().currentMessage()
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("x")
    assert w.start_backup(full) is None
    assert "not empty (choose an empty folder" in w.statusBar().currentMessage()

    # a read-only target (this runs as root, for whom chmod does not stop writes)
    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkdtemp", read_only)
        task = w.start_backup(tmp_path / "ro" / "bak")
        assert task is not None
        # the task may fail before a waitSignal here could connect: wait for what it says
        qtbot.waitUntil(
            lambda: "read-only; choose another folder" in w.statusBar().currentMessage(),
            timeout=10_000,
        )

    dest = tmp_path / "bak"
    task = w.start_backup(dest)
    assert task is not None
    steps: list[tuple[int, int]] = []
    task.progress.connect(lambda done, total: steps.append((done, total)))
    with qtbot.waitSignal(task.finished, timeout=60_000):
        pass
    assert "Backed up" in w.statusBar().currentMessage() and str(dest) in (
        w.statusBar().currentMessage()
    )
    assert steps and steps[-1][0] == steps[-1][1]  # the last step says all were copied
    with Library.open(dest, create=False, readonly=True) as copy:
        assert copy.count() == w.lib.count()
        assert verify(copy).errors == []
