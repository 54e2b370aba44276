"""The Models tab on a model a real fine-tuning job trained: report, lineage, promotion."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from dermdesk.gui.main_window import MainWindow
from dermdesk.library import Library, model_store
from dermdesk.library.browse import model_rows
from dermdesk.library.model_store import ModelRecord, new_model_id

pytestmark = [pytest.mark.gui, pytest.mark.ml, pytest.mark.slow]


@pytest.fixture
def library_dir(trained_template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "library"
    shutil.copytree(trained_template, dest)
    return dest


def register_child(lib: Library, parent: dict[str, Any]) -> str:
    """A second registration of the parent's files with the parent as its parent: the
    lineage a fine-tuned child has, with the report shape a real run wrote."""
    record = ModelRecord.from_json({**parent, "id": new_model_id(), "name": "clinic tiny v2"})
    record.parents = [parent["id"]]
    return model_store.register_model(lib, record)


def test_models_tab_shows_the_real_report_with_intervals(
    qtbot: QtBot, qtmodeltester: object, window: MainWindow, lib: Library
) -> None:
    (parent,) = model_rows(lib)
    child = register_child(lib, parent)
    w = window
    w.actions_["show_models"].trigger()
    panel = w.models
    panel.refresh()
    qtmodeltester.check(panel.model)  # type: ignore[attr-defined]
    panel.select(child)
    assert "clinic tiny v2" in panel.lineage.text() and parent["id"] in panel.lineage.text()
    assert "images in its patient-grouped split" in panel.lineage.text()
    test = parent["metrics"]["test"]
    headline = panel.headline.text()
    assert "balanced accuracy: <b>" in headline and f"n={test['overall']['n']}" in headline
    assert "macro AUROC" in headline and "[" in headline  # every figure has its interval
    for grouping in ("fitzpatrick", "device", "modality", "domain"):
        shown = [f.label for f in panel.charts[grouping].rows]
        assert shown == list(test[grouping]), grouping
    classes = parent["training_set"]["classes"]
    assert panel.per_class.rowCount() == len(classes)
    params = {panel.params.item(r, 0).text() for r in range(panel.params.rowCount())}
    assert {"arch", "loop.lr", "img_size"} <= params
    panel.split.setCurrentIndex(1)
    assert f"n={parent['metrics']['val']['overall']['n']}" in panel.headline.text()


def test_promotion_is_judged_off_the_writer_and_shown_first(
    qtbot: QtBot, window: MainWindow, lib: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dermdesk.ml import promotion

    threads: list[str] = []
    real_check = promotion.check_promotion

    def check(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(promotion, "check_promotion", check)
    (model,) = model_rows(lib)
    w = window
    w.actions_["show_models"].trigger()
    w.models.refresh()
    w.models.select(model["id"])
    w.models.activate_button.click()
    qtbot.waitUntil(lambda: getattr(w, "promotion_dialog", None) is not None, timeout=60_000)
    assert threads and threads[0].startswith("analysis")  # not the writer: edits go on
    dialog = w.promotion_dialog
    assert "no active model yet" in dialog.check.reason and dialog.check.chance is not None
    assert model_rows(lib)[0]["status"] != "active"  # nothing changes before the user says
    passed = dialog.check.passed
    dialog._promote()
    qtbot.waitUntil(lambda: model_rows(lib)[0]["status"] == "active", timeout=60_000)
    (entry,) = [e for e in lib.audit_entries(model["id"]) if e["action"] == "model.promote"]
    assert json.loads(entry["after"])["rule"]["forced"] == (not passed)


def test_evaluate_on_the_filtered_images_keeps_a_report_with_the_model(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    """Models ▸ Evaluate: a real ``evaluate`` job on the gallery's query; the report is
    stored with the model and readable in the Models tab like its own splits."""
    (model,) = model_rows(lib)
    w = window
    w.actions_["show_models"].trigger()
    w.models.refresh()
    w.models.select(model["id"])
    assert w.models.evaluate_button.isEnabled()
    w.models.evaluate_button.click()
    qtbot.waitUntil(lambda: bool(model_store.evaluations(lib, model["id"])), timeout=180_000)
    (ev,) = model_store.evaluations(lib, model["id"])
    assert ev["name"] == "all images" and ev["query"] == {}
    n_images = lib.conn.execute("SELECT count(*) FROM image").fetchone()[0]
    overall = ev["report"]["overall"]
    assert overall["n"] > 0  # every image scored but the model's own; unlabelled ones apart
    left_out = ev["report"]["left_out_seen"]
    assert left_out == len(model_store.seen_images(lib, model_store.get_model(lib, model["id"])))
    assert overall["n"] + overall["skipped_unknown_label"] + left_out == n_images
    w.models.refresh()
    index = w.models.split.findData(f"evaluation {ev['id']}")
    assert index >= 2 and "all images" in w.models.split.itemText(index)
    w.models.split.setCurrentIndex(index)
    assert f"n={overall['n']}" in w.models.headline.text()
    assert f"{left_out} of the model's training or validation images left out" in (
        w.models.headline.text()
    )
    assert [f.label for f in w.models.charts["fitzpatrick"].rows] == list(
        ev["report"]["fitzpatrick"]
    )
    # The switch scores the model's own images too, and the report says so.
    w.models.include_seen.setChecked(True)
    w.models.evaluate_button.click()
    qtbot.waitUntil(lambda: len(model_store.evaluations(lib, model["id"])) == 2, timeout=180_000)
    latest = model_store.evaluations(lib, model["id"])[0]["report"]
    assert latest["includes_seen"] == left_out and "left_out_seen" not in latest
    assert latest["overall"]["n"] == overall["n"] + left_out
    w.models.refresh()
    newest = w.models.split.findData(
        f"evaluation {model_store.evaluations(lib, model['id'])[0]['id']}"
    )
    assert "all images, with its training images" in w.models.split.itemText(newest)
    w.models.split.setCurrentIndex(newest)
    assert f"includes {left_out} of the model's training or validation" in w.models.headline.text()
    if os.environ.get("DERMDESK_SCREENSHOTS"):
        qtbot.wait(100)  # let the layout take the longer source's width
        w.models.grab().save(os.environ["DERMDESK_SCREENSHOTS"])
