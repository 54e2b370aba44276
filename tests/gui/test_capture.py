"""Capture from a fake camera: live checks, storing the frame, blocking a failed frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from dermdesk.gui.capture_dialog import CaptureDialog
from dermdesk.gui.main_window import MainWindow
from dermdesk.imaging.camera import GeneratedSource, frame_from_image
from dermdesk.library import Library

pytestmark = pytest.mark.gui


def real_frame(shared_data: Path) -> np.ndarray:
    return frame_from_image(next((shared_data / "ham10000" / "images").glob("*.jpg")))


def open_with(w: MainWindow, frames: list[np.ndarray]) -> CaptureDialog:
    w.capture_sources = [
        (
            "Fake camera",
            lambda: GeneratedSource(
                frames,
                name="Fake camera",
                device={"device_make": "Test", "device_model": "Fake camera"},
            ),
        )
    ]
    return w.open_capture()


def test_capture_stores_the_frame_with_device_patient_lesion_and_site(
    qtbot: QtBot, window: MainWindow, lib: Library, shared_data: Path
) -> None:
    w = window
    dialog = open_with(w, [real_frame(shared_data)])
    qtbot.waitUntil(lambda: dialog.frame is not None)
    assert dialog.verdict() != "fail", [f.reason for f in dialog.frame.findings]  # type: ignore[union-attr]
    assert dialog.indicators["sharpness"][1].text() != "waiting for frames…"
    dialog.patient.setText("MRN-77")
    dialog.lesion.setText("back-mole-2")
    dialog.site.setCurrentIndex(dialog.site.findData("back"))
    dialog.modality.setCurrentIndex(dialog.modality.findData("dermoscopic"))
    before = lib.count()
    with qtbot.waitSignal(dialog.captured, timeout=10_000) as blocker:
        qtbot.mouseClick(dialog.capture_button, Qt.MouseButton.LeftButton)
    image = lib.image(blocker.args[0])
    assert lib.count() == before + 1
    assert (image["source"], image["modality"], image["device_model"]) == (
        "capture",
        "dermoscopic",
        "Fake camera",
    )
    assert image["captured_at"] and image["operator"] == w.settings.annotator
    assert lib.patient(image["patient_id"])["external_id"] == "MRN-77"
    assert lib.lesion(image["lesion_id"])["body_site"] == "back"
    assert lib.thumbnail_path(image["id"]).is_file()
    dialog.close()


def test_a_failed_frame_is_blocked_until_overridden_with_a_reason(
    qtbot: QtBot, window: MainWindow, lib: Library, shared_data: Path
) -> None:
    w = window
    blurred = cv2.GaussianBlur(real_frame(shared_data), (0, 0), 6)
    dialog = open_with(w, [blurred])
    qtbot.waitUntil(lambda: dialog.frame is not None)
    assert dialog.verdict() == "fail"
    assert "steady" in dialog.indicators["sharpness"][1].text()  # says what to fix
    assert not dialog.capture_button.isEnabled()
    dialog.override.setChecked(True)
    assert not dialog.capture_button.isEnabled()  # a reason is required
    dialog.reason.setText("lesion on the eyelid, patient cannot keep still")
    qtbot.waitUntil(dialog.capture_button.isEnabled)
    with qtbot.waitSignal(dialog.captured, timeout=10_000) as blocker:
        dialog.capture()
    image_id = blocker.args[0]
    override = [e for e in lib.audit_entries(image_id) if e["action"] == "capture.override"]
    assert override and "eyelid" in override[0]["after"]
    dialog.close()


def test_the_test_pattern_can_never_become_a_patient_image(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    from dermdesk.gui.capture_dialog import default_sources

    w = window
    w.capture_sources = [s for s in default_sources() if s[0].startswith("Test pattern")]
    dialog = w.open_capture()
    qtbot.waitUntil(lambda: dialog.frame is not None)
    assert dialog.verdict() != "fail"  # the pattern passes the live checks ...
    assert not dialog.capture_button.isEnabled()  # ... and still cannot be captured
    assert "Demo only" in dialog.capture_button.text() and "never saved" in dialog.status.text()
    before = lib.count()
    dialog.capture()
    qtbot.wait(300)
    assert lib.count() == before
    dialog.close()  # stops the camera thread


def test_the_library_refuses_a_demo_frame_before_writing_a_file(lib: Library) -> None:
    from dermdesk.exchange.capture import store_capture
    from dermdesk.library import LibraryError
    from dermdesk.library.edits import CaptureInfo

    files = sorted(p.name for p in (lib.root / "originals").rglob("*") if p.is_file())
    with pytest.raises(LibraryError, match="not a patient image"):
        store_capture(lib, np.full((480, 640, 3), 180, np.uint8), CaptureInfo(demo=True))
    assert sorted(p.name for p in (lib.root / "originals").rglob("*") if p.is_file()) == files


def test_a_dermatoscope_feed_preselects_dermoscopic_until_staff_choose(
    qtbot: QtBot, window: MainWindow, lib: Library, shared_data: Path
) -> None:
    frame = frame_from_image(shared_data / "ph2" / "images" / "IMD002.jpg")
    dialog = open_with(window, [frame])
    assert dialog.modality.currentData() == "clinical"  # before any frame
    qtbot.waitUntil(lambda: dialog.frame is not None and dialog.frame.modality is not None)
    qtbot.waitUntil(lambda: dialog.modality.currentData() == "dermoscopic")
    assert dialog.modality_hint.text().startswith(("detected", "unsure"))
    with qtbot.waitSignal(dialog.captured, timeout=10_000) as blocker:
        dialog.capture()
    saved = lib.image(blocker.args[0])
    assert saved["modality"] == "dermoscopic"
    assert saved["modality_method"] == dialog.modality_method() != "recorded"
    # staff choose: the choice stays, whatever the camera shows, and is recorded
    dialog.modality.setCurrentIndex(dialog.modality.findData("other"))
    qtbot.wait(1200)  # at least one more detection
    assert dialog.modality.currentData() == "other" and dialog.modality_method() == "recorded"
    dialog.close()


def test_staff_set_skin_type_and_a_provisional_diagnosis_before_saving(
    qtbot: QtBot, window: MainWindow, lib: Library, shared_data: Path
) -> None:
    w = window
    frames = [real_frame(shared_data), cv2.flip(real_frame(shared_data), 1)]
    dialog = open_with(w, frames)
    qtbot.waitUntil(lambda: dialog.frame is not None)
    picker = dialog.fitzpatrick
    cell = picker._cell(3).center()  # Fitzpatrick IV
    qtbot.mouseClick(picker, Qt.MouseButton.LeftButton, pos=cell)
    assert dialog.tones["fitzpatrick"] == 4 and picker.manual == 4
    dialog.set_tone("monk", 6)
    dialog.set_tone("monk", 6)  # the same swatch again takes it back
    assert dialog.tones["monk"] is None
    dialog.diagnosis.setCurrentIndex(dialog.diagnosis.findText("keloid — Other (benign)"))

    with qtbot.waitSignal(dialog.captured, timeout=10_000) as blocker:
        dialog.capture()
    image = lib.image(blocker.args[0])
    assert (image["fitzpatrick"], image["monk"], image["diagnosis"]) == (4, None, "OTHER")
    operator = w.settings.annotator
    label = lib.current_label(image["id"])
    assert (label["free_text"], label["annotator"], label["certainty"]) == (
        "keloid",
        operator,
        "single_expert",
    )
    rated = [t for t in lib.skin_tones(image["id"]) if t["method"] == "manual"]
    assert [(t["fitzpatrick"], t["rater"]) for t in rated] == [(4, operator)]
    assert "Fitzpatrick IV" in dialog.status.text() and "provisional keloid" in dialog.status.text()

    # a diagnosis typed that the vocabulary does not read: nothing saved, and it says so
    before = lib.count()
    dialog.diagnosis.setEditText("weird rash")
    qtbot.waitUntil(lambda: dialog.frame is not None and dialog.capture_button.isEnabled())
    dialog.capture()
    assert "not in the vocabulary" in dialog.status.text()
    qtbot.wait(200)
    assert lib.count() == before
    dialog.close()
