"""Filters combine, show only matching images, and are remembered across restarts."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from dermdesk.gui.main_window import MainWindow
from dermdesk.library import ImageFilter, Library

pytestmark = pytest.mark.gui


def choose(button: object, values: list[object]) -> None:
    for value, action in button._actions:  # type: ignore[attr-defined]
        if value in values:
            action.setChecked(True)


def loaded(w: MainWindow) -> bool:
    return not w.gallery_model.is_fetching and not w.filters._timer.isActive()


def test_filters_combine_and_are_remembered(
    qtbot: QtBot, window: MainWindow, lib: Library, settings: object
) -> None:
    w = window
    choose(w.filters.diagnosis, ["BCC", "MEL"])
    choose(w.filters.modality, ["clinical"])
    w.filters.labelled.setCurrentIndex(w.filters.labelled.findData(True))
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.query.filter.diagnosis == ["MEL", "BCC"])
    qtbot.waitUntil(lambda: loaded(w))
    expected = lib.count(
        ImageFilter(diagnosis=["MEL", "BCC"], modality=["clinical"], labelled=True)
    )
    assert 0 < expected < lib.count()
    assert w.gallery_model.total == expected
    for r in range(w.gallery_model.rowCount()):
        t = w.gallery_model.tile(r)
        assert t.diagnosis in ("MEL", "BCC") and t.modality == "clinical"

    w.filters.text.setText("no-such-image-anywhere")
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.query.filter.text is not None)
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.total == 0)
    w.filters.text.clear()
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.total == expected)
    w.close()

    again = MainWindow(lib, settings)  # type: ignore[arg-type]
    again.show()
    qtbot.waitUntil(
        lambda: again.gallery_model.total == expected and not again.gallery_model.is_fetching
    )
    assert again.filters.diagnosis.values() == ["MEL", "BCC"]
    assert "Diagnosis: MEL, BCC" in again.filters.diagnosis.text()
    # the status bar says a filter hides images
    qtbot.waitUntil(lambda: "filtered: diagnosis MEL/BCC" in again.status.text())
    again.close()


def test_remembered_filters_belong_to_their_library(
    qtbot: QtBot, lib: Library, settings: object, tmp_path: object
) -> None:
    from pathlib import Path

    other = Library.open(Path(str(tmp_path)) / "other library", actor="tester")
    try:
        settings.set_filters_for(lib.root, {"diagnosis": ["MEL"], "sort": "newest"})  # type: ignore[attr-defined]
        assert settings.filters_for(lib.root)["diagnosis"] == ["MEL"]  # type: ignore[attr-defined]
        w = MainWindow(other, settings)  # type: ignore[arg-type]
        w.show()
        qtbot.waitUntil(lambda: loaded(w))
        assert w.filters.diagnosis.values() == []  # not the other library's MEL filter
        assert "filtered" not in w.status.text()
        w.close()
    finally:
        other.close()


def test_quality_patient_and_disagreement_filters(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    from tests.gui.stand_ins import add_model, add_prediction, add_quality

    w = window
    ids = [r["id"] for r in lib.images(limit=3)]
    add_quality(lib, ids[0], "sharpness", "fail", "blurred: sharpness 5, needs 25")
    add_model(lib, "m1", status="active")
    label = lib.image(ids[1])["diagnosis"]
    other = "NEV" if label != "NEV" else "MEL"
    add_prediction(lib, ids[1], "m1", {other: 0.8, label: 0.2})
    failing = lib.count(ImageFilter(quality="fail"))  # import ran the real checks too
    assert failing >= 1
    w.filters.quality.setCurrentIndex(w.filters.quality.findData("fail"))
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.query.filter.quality == "fail")
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.total == failing)
    shown = [w.gallery_model.tile(i) for i in range(min(failing, 50))]
    assert all(t.quality == "fail" for t in shown)
    assert ids[0] in {t.id for t in shown} or failing > 50
    w.filters.quality.setCurrentIndex(0)
    w.filters.disagreement.setChecked(True)
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.query.filter.disagreement is True)
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.total == 1)
    assert w.gallery_model.tile(0).id == ids[1] and w.gallery_model.tile(0).disagrees


def test_failing_a_named_check_filters_the_gallery_and_is_remembered(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    from tests.gui.stand_ins import add_quality

    w = window
    ids = [r["id"] for r in lib.images(limit=3)]
    lib.conn.execute("UPDATE quality SET verdict = 'pass' WHERE check_name = 'sharpness'")
    add_quality(lib, ids[0], "sharpness", "fail", "blurred: sharpness 5, needs 25")
    add_quality(lib, ids[1], "sharpness", "warn", "slightly soft: sharpness 30, needs 40")
    choose(w.filters.failing, ["sharpness"])
    assert w.filters.failing.text() == "Failing: Sharpness"
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.query.filter.failing == ["sharpness"])
    qtbot.waitUntil(lambda: loaded(w) and w.gallery_model.total == 2)
    assert {w.gallery_model.tile(i).id for i in range(2)} == set(ids[:2])
    assert "failing sharpness" in w.status.text()  # the filtered marker says it in words
    assert w.settings.filters_for(lib.root)["failing"] == ["sharpness"]
    assert lib.count(ImageFilter(failing=["sharpness", "hair"])) >= 2  # any of them
