"""Models ▸ Review label issues: the ranked queue, the picked image, confirm / relabel / undo.

Annotator disagreements need nothing optional; the model part needs cleanlab and a model
with held-out predictions. No model is trained here: a stand-in classifier is registered
through the model store with probabilities the test chooses (confident and right on most
held-out images, confident and wrong on three), which is what confident learning reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from dermdesk.gui.label_review_panel import LabelReviewDialog
from dermdesk.gui.main_window import MainWindow
from dermdesk.library import ImageFilter, Library, model_store
from dermdesk.library.model_store import ModelRecord, new_model_id

pytestmark = pytest.mark.gui
SHOT = Path("/tmp/dermdesk_label_review.png")


def disagree(lib: Library, n: int = 6) -> list[str]:
    """Two clinicians re-read PAD-UFES-20 images; dr_b calls each a naevus (or a melanoma)."""
    rows = lib.images(ImageFilter(dataset=["pad_ufes_20"]), order="id")[:n]
    for r in rows:
        other = "MEL" if r["diagnosis"] == "NEV" else "NEV"
        lib.set_label([r["id"]], r["diagnosis"], annotator="dr_a", certainty="single_expert")
        lib.set_label([r["id"]], other, annotator="dr_b", certainty="single_expert")
    return [r["id"] for r in rows]


def stand_in_model(lib: Library, wrong: int = 3) -> tuple[str, list[str]]:
    """An active classifier whose held-out probabilities contradict ``wrong`` labels."""
    rows = [
        r
        for r in lib.images(ImageFilter(dataset=["pad_ufes_20"]), order="id")
        if r["diagnosis"] in ("BCC", "ACK", "NEV")
    ][6:46]  # past the images disagree() relabels
    classes = ["ACK", "BCC", "NEV"]
    model_id = new_model_id()
    folder = model_store.model_dir(lib.root, model_id)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"stand-in: never loaded")
    split = {"train": [], "val": [], "test": [r["id"] for r in rows]}
    record = ModelRecord(
        model_id,
        "stand-in",
        "classifier",
        "vit_test",
        f"models/{model_id}/model.onnx",
        "0" * 64,
        training_set={"classes": classes, "split": split},
    )
    model_store.register_model(lib, record)
    model_store.set_active(lib, model_id)
    flagged, preds = [], []
    for n, r in enumerate(rows):
        given = r["diagnosis"]
        says = classes[(classes.index(given) + 1) % 3] if n < wrong else given
        if n < wrong:
            flagged.append(r["id"])
        probs = {c: (0.9 if c == says else 0.05) for c in classes}
        preds.append((r["id"], probs))
    model_store.store_predictions(lib, model_id, preds)
    return model_id, flagged


def open_queue(qtbot: QtBot, window: MainWindow) -> LabelReviewDialog:
    window.actions_["label_review"].trigger()
    dialog = window.label_review_dialog
    qtbot.waitUntil(lambda: dialog.table.rowCount() > 0, timeout=20_000)
    return dialog


def current(lib: Library, image_id: str) -> dict[str, object]:
    label = lib.current_label(image_id)
    assert label is not None
    return label


def test_annotator_disagreements_are_queued_and_relabelled_with_undo(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    ids = disagree(lib)
    dialog = open_queue(qtbot, window)
    queued = [r["image_id"] for r in dialog.rows]
    assert set(ids) <= set(queued)
    first = next(r for r in dialog.rows if r["image_id"] == ids[0])
    assert first["why"] in ("annotators", "model") and set(first["annotators"]) >= {
        "dr_a",
        "dr_b",
    }
    dialog.select_image(ids[0])
    assert dialog.viewer.image_id == ids[0]
    assert "dr_a" in dialog.annotators.text() and "dr_b" in dialog.annotators.text()
    before = current(lib, ids[0])
    new_code = "SEK" if before["diagnosis"] != "SEK" else "DF"
    dialog.choice.setCurrentIndex(dialog.choice.findData(new_code))
    with qtbot.waitSignal(window.editor.edited, timeout=10_000):
        qtbot.mouseClick(dialog.relabel_button, Qt.MouseButton.LeftButton)
    assert current(lib, ids[0])["diagnosis"] == new_code
    row = dialog.rows[queued.index(ids[0])]
    qtbot.waitUntil(lambda: row["label"] == new_code and row["reviewed"])
    assert dialog.table.currentRow() == queued.index(ids[0]) + 1  # on to the next one
    with qtbot.waitSignal(window.editor.edited, timeout=10_000):
        qtbot.mouseClick(dialog.undo_button, Qt.MouseButton.LeftButton)
    assert current(lib, ids[0])["id"] == before["id"]  # the earlier row, not a re-rating
    qtbot.waitUntil(lambda: row["label"] == before["diagnosis"] and not row["reviewed"])
    dialog.close()


def test_confirming_keeps_the_label_and_its_wording_and_says_who_looked(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    ids = disagree(lib, 3)
    dialog = open_queue(qtbot, window)
    dialog.select_image(ids[1])
    before = current(lib, ids[1])
    with qtbot.waitSignal(window.editor.edited, timeout=10_000):
        qtbot.mouseClick(dialog.confirm_button, Qt.MouseButton.LeftButton)
    after = current(lib, ids[1])
    assert after["id"] != before["id"] and after["annotator"] == window.settings.annotator
    assert (after["diagnosis"], after["free_text"]) == (before["diagnosis"], before["free_text"])
    audit = lib.query("SELECT action FROM audit ORDER BY id DESC LIMIT 3")
    assert any(a["action"].startswith("label.") for a in audit)
    dialog.close()


def test_the_models_issues_come_first_with_their_probabilities(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    pytest.importorskip("cleanlab")
    disagreeing = disagree(lib, 4)
    model_id, flagged = stand_in_model(lib)
    dialog = open_queue(qtbot, window)
    qtbot.waitUntil(lambda: any(r["why"] == "model" for r in dialog.rows))
    model_rows = [r for r in dialog.rows if r["why"] == "model"]
    assert {r["image_id"] for r in model_rows} == set(flagged)
    assert dialog.rows[: len(model_rows)] == model_rows  # cleanlab's rank order first
    assert [r["p_label"] for r in model_rows] == sorted(r["p_label"] for r in model_rows)
    assert {r["image_id"] for r in dialog.rows[len(model_rows) :]} >= set(disagreeing)
    assert model_id in dialog.summary.text()
    top = model_rows[0]
    assert top["model_says"] != top["label"] and top["p_model"] == pytest.approx(0.9, abs=0.01)
    assert set(top["probabilities"]) == {"ACK", "BCC", "NEV"}
    dialog.table.selectRow(0)
    assert dialog.viewer.image_id == top["image_id"]
    assert dialog.bars.rows[0] == (top["model_says"], top["probabilities"][top["model_says"]])
    assert dialog.accept_button.text() == f"Relabel as {top['model_says']}"
    qtbot.waitUntil(lambda: dialog.viewer.left.has_image(), timeout=10_000)
    dialog.grab().save(str(SHOT))
    # The CLI twin lists the same issues.
    command = ["curate", "label-review", "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "dermdesk", "--library", str(lib.root), *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    issues = json.loads(out.stdout)["issues"]["issues"]
    assert [i["image_id"] for i in issues] == [r["image_id"] for r in model_rows]
    with qtbot.waitSignal(window.editor.edited, timeout=10_000):
        qtbot.mouseClick(dialog.accept_button, Qt.MouseButton.LeftButton)
    assert current(lib, top["image_id"])["diagnosis"] == top["model_says"]
    dialog.close()
