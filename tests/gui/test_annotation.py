"""Annotating with the keyboard only, batch edits, undo — every edit audited."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from pytestqt.qtbot import QtBot

from dermdesk.gui.main_window import MainWindow
from dermdesk.library import Library
from dermdesk.library.browse import distinct_devices
from dermdesk.library.edits import link_images

pytestmark = pytest.mark.gui


def settle(qtbot: QtBot, w: MainWindow) -> None:
    """Wait until every queued edit is written and the views caught up."""
    qtbot.waitUntil(lambda: w.writer.pending == 0 and w.reader.pending == 0)


def keys(qtbot: QtBot, w: MainWindow, *sequence: str | Qt.Key) -> None:
    for key in sequence:
        qtbot.keyClick(w.gallery, key)


def test_annotate_with_keystrokes_only_and_undo(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    w.gallery.setFocus()
    keys(qtbot, w, "j")  # next image
    image_id = w.current_id()
    assert image_id == w.gallery_model.tile(1).id
    before = lib.image(image_id)["diagnosis"]
    keys(qtbot, w, "1")  # MEL is taxonomy key 1
    settle(qtbot, w)
    assert lib.image(image_id)["diagnosis"] == "MEL"
    keys(qtbot, w, "c", "h")  # certainty: histopathology
    keys(qtbot, w, "f", "5")  # Fitzpatrick V
    keys(qtbot, w, "m", "0")  # Monk 10
    settle(qtbot, w)
    assert lib.current_label(image_id)["certainty"] == "histopathology"
    row = lib.image(image_id)
    assert (row["fitzpatrick"], row["monk"]) == (5, 10)
    assert w.gallery_model.tile(1).fitzpatrick == 5  # the tile badge followed
    keys(qtbot, w, Qt.Key.Key_Backspace)
    settle(qtbot, w)
    assert lib.image(image_id)["diagnosis"] is None

    for _ in range(5):  # undo: clear, Monk, Fitzpatrick, certainty, label
        qtbot.keyClick(w.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, w)
    assert lib.image(image_id)["diagnosis"] == before
    assert lib.image(image_id)["fitzpatrick"] == lib.image(image_id)["fitzpatrick"]
    actions = [e["action"] for e in lib.audit_entries(image_id)]
    assert actions.count("label.set") >= 3 and "label.clear" in actions
    assert all(e["actor"] == w.settings.annotator for e in lib.audit_entries(image_id)[-3:])

    qtbot.keyClick(
        w.gallery,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    settle(qtbot, w)
    assert lib.image(image_id)["diagnosis"] == "MEL"  # redo


def test_skin_type_undo_restores_the_earlier_manual_rating(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    image_id = w.current_id()
    original = (lib.image(image_id)["fitzpatrick"], lib.image(image_id)["monk"])
    w.gallery.setFocus()
    keys(qtbot, w, "f", "2")
    settle(qtbot, w)
    assert lib.image(image_id)["fitzpatrick"] == 2
    qtbot.keyClick(w.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, w)
    assert (lib.image(image_id)["fitzpatrick"], lib.image(image_id)["monk"]) == original


def test_batch_edit_labels_a_selection_and_undo_restores_each(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    model, selection = w.gallery_model, w.gallery.selectionModel()
    ids = [model.tile(r).id for r in range(4)]
    before = {i: lib.image(i)["diagnosis"] for i in ids}
    selection.select(model.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    for r in range(1, 4):
        selection.select(model.index(r), QItemSelectionModel.SelectionFlag.Select)
    qtbot.waitUntil(lambda: len(w.annotation.ids) == 4)
    assert "4 images selected" in w.annotation.title.text()

    picker = w.annotation.diagnosis
    picker.start_search()
    qtbot.keyClicks(picker.lineEdit(), "basal")
    popup = picker.completer().popup()
    qtbot.waitUntil(popup.isVisible)
    qtbot.keyClick(popup, Qt.Key.Key_Down)
    qtbot.keyClick(popup, Qt.Key.Key_Return)
    settle(qtbot, w)
    assert {lib.image(i)["diagnosis"] for i in ids} == {"BCC"}

    w.editor.stack.undo()
    settle(qtbot, w)
    assert {i: lib.image(i)["diagnosis"] for i in ids} == before


def test_device_fields_and_patient_link_are_edited_and_audited(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    image_id = w.current_id()
    panel = w.annotation
    panel.device["device_model"].setText("DermLite DL4")
    panel.device["device_model"].editingFinished.emit()
    panel.patient.setText("MRN-0042")
    panel.lesion.setText("left-forearm-1")
    panel.site.setCurrentIndex(panel.site.findData("forearm"))
    panel._link()
    settle(qtbot, w)
    row = lib.image(image_id)
    assert row["device_model"] == "DermLite DL4"
    assert (
        row["patient_id"].startswith("P-")
        and lib.patient(row["patient_id"])["external_id"] == "MRN-0042"
    )
    assert lib.lesion(row["lesion_id"])["body_site"] == "forearm"
    actions = [e["action"] for e in lib.audit_entries(image_id)]
    assert "image.update" in actions and "image.link" in actions

    w.editor.stack.undo()  # unlink
    w.editor.stack.undo()  # device
    settle(qtbot, w)
    assert lib.image(image_id)["device_model"] != "DermLite DL4"
    assert lib.image(image_id)["lesion_id"] != row["lesion_id"]


def test_undo_gives_a_rating_and_a_label_back_to_who_gave_them(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    """Fitzpatrick17k rated this image; a curator changes it and presses Ctrl+Z: the
    rating is the dataset's again (rater, time), not "manual, by the curator"."""
    w = window
    w.filters.set_state({"diagnosis": [], "text": ""}, emit=False)
    model = w.gallery_model
    row = next(
        r
        for r in range(model.rowCount())
        if lib.image(model.tile(r).id)["dataset"] == "fitzpatrick17k"
    )
    image_id = model.tile(row).id
    w.gallery.setCurrentIndex(model.index(row))
    qtbot.waitUntil(lambda: w.current_id() == image_id)
    rating_before = [t for t in lib.skin_tones(image_id) if t["is_current"]]
    label_before = lib.current_label(image_id)
    assert rating_before[0]["rater"].startswith("dataset:fitzpatrick17k")
    w.gallery.setFocus()
    new_type = 1 if rating_before[0]["fitzpatrick"] != 1 else 2
    keys(qtbot, w, "f", str(new_type), "2")  # Fitzpatrick, then diagnosis key 2
    settle(qtbot, w)
    assert lib.image(image_id)["fitzpatrick"] == new_type
    assert lib.current_label(image_id)["annotator"] == w.settings.annotator
    for _ in range(2):
        qtbot.keyClick(w.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, w)
    assert [t for t in lib.skin_tones(image_id) if t["is_current"]] == rating_before
    assert lib.current_label(image_id) == label_before
    actions = [e["action"] for e in lib.audit_entries(image_id)]
    assert actions[-2:] == ["label.restore", "skin_tone.restore"]


def test_auto_advance_and_next_unlabelled_keys(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    w.gallery.setFocus()
    w.actions_["auto_advance"].setChecked(True)
    assert w.settings.auto_advance
    first = w.current_id()
    keys(qtbot, w, "2")  # NEV, then on to the next image
    settle(qtbot, w)
    assert lib.image(first)["diagnosis"] == "NEV"
    assert w.current_id() == w.gallery_model.tile(1).id
    w.actions_["auto_advance"].setChecked(False)
    keys(qtbot, w, "2")
    settle(qtbot, w)
    assert w.current_id() == w.gallery_model.tile(1).id  # stays without auto-advance

    model = w.gallery_model
    keys(qtbot, w, "j", "j", "j", Qt.Key.Key_Backspace)  # row 4 becomes unlabelled
    settle(qtbot, w)
    keys(qtbot, w, "k", "k", "k")
    start = w.gallery.currentIndex().row()
    expected = next(r for r in range(start + 1, model.rowCount()) if not model.tile(r).labelled)
    keys(qtbot, w, "n")  # next unlabelled
    assert w.gallery.currentIndex().row() == expected <= 4
    keys(qtbot, w, "n")  # none after it among these real, labelled images
    assert (
        w.gallery.currentIndex().row() == expected
        or not model.tile(w.gallery.currentIndex().row()).labelled
    )


def test_the_review_progress_follows_labels_and_filters(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    from dermdesk.library import ImageFilter

    w = window
    total = lib.count()

    def shown() -> str:
        return w.progress.format() if w.progress.isVisible() else ""

    labelled = lib.count(ImageFilter(labelled=True))
    qtbot.waitUntil(lambda: shown() == f"{labelled:,} of {total:,} labelled")
    w.gallery.setFocus()
    keys(qtbot, w, Qt.Key.Key_Backspace)  # clear the current image's label
    settle(qtbot, w)
    qtbot.waitUntil(lambda: shown() == f"{labelled - 1:,} of {total:,} labelled")
    w.filters.labelled.setCurrentIndex(w.filters.labelled.findData(False))
    unlabelled = lib.count(ImageFilter(labelled=False))
    qtbot.waitUntil(lambda: shown() == f"0 of {unlabelled:,} labelled")


def test_a_two_key_shortcut_shows_its_hint_and_times_out_visibly(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    image_id = w.current_id()
    assert len(w.target_ids()) == 1  # the hint shows for a single image too
    monk_before = lib.image(image_id)["monk"]
    w.gallery.setFocus()
    keys(qtbot, w, "f")
    hint = w.chords.hint
    assert hint.isVisible() and "Fitzpatrick for this image: press 1-6" in hint.text()
    assert "Esc cancels" in hint.text()
    keys(qtbot, w, "4")
    settle(qtbot, w)
    assert not hint.isVisible() and lib.image(image_id)["fitzpatrick"] == 4

    keys(qtbot, w, "m")
    assert "Monk" in hint.text() and hint.isVisible()
    keys(qtbot, w, Qt.Key.Key_Escape)
    assert "cancelled" in hint.text() and w.chords.armed is None

    w.chords.timer.setInterval(150)
    keys(qtbot, w, "m")
    qtbot.waitUntil(lambda: "timed out" in hint.text())
    assert "timed out" in w.statusBar().currentMessage()
    keys(qtbot, w, "5")  # an ordinary key again: the diagnosis key 5, not Monk 5
    settle(qtbot, w)
    assert lib.image(image_id)["monk"] == monk_before
    assert lib.image(image_id)["diagnosis"] == "ACK"
    qtbot.waitUntil(lambda: not hint.isVisible(), timeout=5000)


def test_diagnosis_search_finds_synonyms_and_other_conditions_recent_first(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    image_id = w.current_id()
    before = lib.current_label(image_id)
    w.gallery.setFocus()
    keys(qtbot, w, "/")
    search = w.diagnosis_search
    qtbot.waitUntil(search.isVisible)
    assert search.edit.hasFocus()
    qtbot.keyClicks(search.edit, "dyshidrotic")
    assert search.current_choice().key == "OTHER:dyshidrotic-eczema"
    qtbot.keyClick(search.edit, Qt.Key.Key_Return)
    settle(qtbot, w)
    label = lib.current_label(image_id)
    assert (label["diagnosis"], label["free_text"]) == ("OTHER", "dyshidrotic-eczema")
    assert label["annotator"] == w.settings.annotator
    w.editor.stack.undo()  # the same undoable path as the number keys
    settle(qtbot, w)
    assert lib.current_label(image_id)["id"] == before["id"]

    # Ctrl+K opens it too; the diagnosis just given is listed first, marked recent
    w.activateWindow()  # the popup had the focus (offscreen, nothing hands it back)
    qtbot.waitUntil(w.isActiveWindow)
    qtbot.keyClick(w.gallery, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    search = w.diagnosis_search
    qtbot.waitUntil(search.isVisible)
    assert search.list.item(0).text().startswith("dyshidrotic-eczema") and "recent" in (
        search.list.item(0).text()
    )
    qtbot.keyClicks(search.edit, "akiec")  # a synonym of the vocabulary
    assert search.current_choice().code == "ACK"
    search.edit.clear()
    qtbot.keyClicks(search.edit, "lentigo maligna")  # a subtype: its code, wording kept
    assert (search.current_choice().code, search.current_choice().free_text) == (
        "MEL",
        "lentigo maligna",
    )
    qtbot.keyClick(search.edit, Qt.Key.Key_Escape)
    assert not search.isVisible()


def test_a_diagnosis_not_in_the_vocabulary_writes_nothing(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    audit_before = len(lib.audit_entries(w.current_id()))
    search = w.open_diagnosis_search()
    assert search is not None
    qtbot.keyClicks(search.edit, "xyzzy plaque")
    assert search.list.count() == 0 and "Not in the vocabulary" in search.note.text()
    qtbot.keyClick(search.edit, Qt.Key.Key_Return)
    settle(qtbot, w)
    assert "“xyzzy plaque” is not in the vocabulary: nothing written" in (
        w.statusBar().currentMessage()
    )
    assert len(lib.audit_entries(w.current_id())) == audit_before


def test_number_keys_are_configurable_and_remembered(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    from dermdesk.gui.settings import Settings
    from dermdesk.gui.settings_dialog import SettingsDialog

    w = window
    dialog = SettingsDialog(w.settings, w)
    combo = dialog.keys["9"]
    assert combo.currentData() == "OTHER"  # the taxonomy's default
    combo.setCurrentIndex(combo.findData("OTHER:keloid"))
    dialog.keys["8"].setCurrentIndex(0)  # key 8 gives nothing
    dialog.accept()
    w.show_number_keys()  # what open_settings does after the dialog
    assert w.actions_["key_9"].text() == "Key 9: keloid — Other (benign)"
    assert "9 keloid" in w.annotation.key_hint.text()
    assert Settings(w.settings.store).diagnosis_keys()["9"] == "OTHER:keloid"  # remembered

    image_id = w.current_id()
    w.gallery.setFocus()
    keys(qtbot, w, "9")
    settle(qtbot, w)
    label = lib.current_label(image_id)
    assert (label["diagnosis"], label["free_text"]) == ("OTHER", "keloid")
    keys(qtbot, w, "8")
    settle(qtbot, w)
    assert "Key 8 gives no diagnosis" in w.statusBar().currentMessage()
    assert lib.current_label(image_id)["free_text"] == "keloid"
    keys(qtbot, w, "1")
    settle(qtbot, w)
    assert lib.image(image_id)["diagnosis"] == "MEL"


def test_patient_and_device_completion_is_read_on_the_reader(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    """Filled after the first page, and again after an import (refresh_all)."""
    ids = {r["id"] for r in lib.query("SELECT id FROM patient")}
    assert ids

    def offered(field: object) -> set[str]:
        completer = field.completer()  # type: ignore[attr-defined]
        return set(completer.model().stringList()) if completer is not None else set()

    qtbot.waitUntil(lambda: offered(window.annotation.patient) >= ids)
    image = lib.images()[0]["id"]
    link_images(lib, [image], patient="P-4242", lesion=None)  # a patient typed at the desk
    window.refresh_all()
    qtbot.waitUntil(lambda: "P-4242" in offered(window.annotation.patient))
    assert offered(window.filters.device) >= set(distinct_devices(lib))
