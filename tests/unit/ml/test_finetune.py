"""A real (small) fine-tuning run on PAD-UFES-20 images, through the job runner.

Trains the 2-layer test ViT on 32 px views for a few epochs on the CPU in a
spawned worker, then checks what a user would: the model is registered with
its split and metrics, its loss went down, the ONNX file predicts what torch
predicts, predictions reach the library, and promotion follows the rule.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.inference.predictor import OnnxClassifier
from dermdesk.jobs.runner import JobRunner
from dermdesk.library import ImageFilter, Library, model_store
from dermdesk.library.records import ImageRecord, LabelIn
from dermdesk.library.verify import verify
from dermdesk.ml.checkpoints import load_file
from dermdesk.ml.models import build_model
from dermdesk.ml.promotion import check_promotion, promote
from tests.helpers import encode, skin_like

pytestmark = [pytest.mark.ml, pytest.mark.slow]

TIMEOUT = 300
FAST = {
    "arch": "vit_test",
    "img_size": 32,
    "epochs": 15,
    # A 2-layer ViT at 32 px shows its loss falling within ~100 steps only on plain views
    # with natural class frequencies; balancing and augmentation are tested on their own.
    "augment": "none",
    "balance": "none",
    "label_smoothing": 0.0,
    "patience": 100,  # the loss curve is the point here; early stopping is tested in test_loop
    "batch_size": 16,
    "micro_batch": 8,
    "lr": 3e-3,
    "threads": 1,
    "n_boot": 50,
    "min_class_images": 5,
}


def make_library(root: Path, shared_data: Path, n: int = 160, synthetic: int = 0) -> Path:
    with Library.open(root, actor="tester") as lib:
        plan = plan_path(shared_data / "pad_ufes_20", "clinical")
        run_import(lib, plan.items[:n], workers=2, progress=None)
        for seed in range(synthetic):  # stand-ins for diffusion-made minority-class images
            stored = ingest_bytes(encode(skin_like(seed=100 + seed)), lib.store)
            record = ImageRecord(stored=stored, source="synthetic", label=LabelIn("MEL"))
            lib.add_images([record])
    return root


@pytest.fixture(scope="module")
def pad_library(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_library(tmp_path_factory.mktemp("pad") / "library", shared_data, synthetic=6)


@pytest.fixture(scope="module")
def trained(pad_library: Path) -> dict[str, Any]:
    """One fine-tuning job run to the end; later tests read what it produced."""
    runner = JobRunner(pad_library, actor="tester")
    try:
        job = runner.submit("finetune", {**FAST, "name": "first"})
        row = runner.wait(job, timeout_s=TIMEOUT)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    return row


@pytest.fixture
def lib(pad_library: Path, trained: dict[str, Any]) -> Iterator[Library]:
    library = Library.open(pad_library, actor="tester")
    yield library
    library.close()


def test_the_job_registers_a_model_with_its_split_and_metrics(lib: Library, trained: dict) -> None:
    model = model_store.get_model(lib, trained["model_id"])
    assert model["status"] == "candidate" and model["name"] == "first" and model["parents"] == []
    split = model["training_set"]["split"]
    ids = [i for part in split.values() for i in part]
    assert len(ids) == len(set(ids)) == lib.count()
    patient_split: dict[str, set[str]] = {}
    for name, part in split.items():
        for image_id in part:
            patient = lib.image(image_id)["patient_id"] or image_id
            patient_split.setdefault(patient, set()).add(name)
    assert all(len(s) == 1 for s in patient_split.values()), "a patient is in two splits"
    synthetic = {r["id"] for r in lib.images(ImageFilter(synthetic=True))}
    assert len(synthetic) == 6 and synthetic <= set(split["train"])
    assert model["training_set"]["synthetic_in_training"] == 6
    test = model["metrics"]["test"]
    assert test["overall"]["n"] == len(split["test"])
    assert test["overall"]["balanced_accuracy"]["ci"] is not None
    assert set(test) >= {"overall", "fitzpatrick", "device", "modality", "domain"}
    assert model["params"]["loop"]["lr"] == FAST["lr"] and model["params"]["arch"] == "vit_test"
    folder = model_store.model_dir(lib.root, model["id"])
    for name in ("model.pt", "model.onnx", "model.int8.onnx", "card.json"):
        assert (folder / name).is_file(), name
    assert hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest() == model["sha256"]
    assert verify(lib, checksums=False).ok


def test_training_loss_went_down(lib: Library, trained: dict) -> None:
    curve = model_store.get_model(lib, trained["model_id"])["metrics"]["training"]["loss_curve"]
    losses = [p["train_loss"] for p in curve]
    assert len(losses) >= 50
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.05


def test_onnx_predictions_match_torch_on_real_images(lib: Library, trained: dict) -> None:
    model = model_store.get_model(lib, trained["model_id"])
    folder = model_store.model_dir(lib.root, model["id"])
    saved = load_file(folder / "model.pt")
    net = build_model(saved["arch"], len(saved["classes"]), saved["img_size"])
    net.load_state_dict(saved["model"])
    net.eval()
    onnx = OnnxClassifier(folder / "model.onnx")
    assert onnx.classes == saved["classes"] == model["training_set"]["classes"]
    val = model["training_set"]["split"]["val"]
    batch = np.stack([onnx.load(lib.original_path(lib.image(i))) for i in val])
    with torch.no_grad():
        expected = net(torch.from_numpy(batch)).numpy()
    assert np.abs(onnx.logits(batch) - expected).max() < 1e-4
    parity = model["metrics"]["onnx"]["parity_max_abs_logit_diff"]
    assert parity < 1e-4
    int8 = model["metrics"]["onnx"]["int8"]
    assert int8["val_images"] == len(val) and "balanced_accuracy_change_points" in int8


def test_the_predict_job_stores_probabilities_for_every_image(lib: Library, trained: dict) -> None:
    runner = JobRunner(lib.root, actor="tester")
    try:
        job = runner.submit("predict", {"model": trained["model_id"], "batch_size": 16})
        row = runner.wait(job, timeout_s=TIMEOUT)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    stored = model_store.predictions_for(lib, trained["model_id"])
    assert len(stored) == lib.count() == row["result"]["predicted"]  # synthetic ones too
    some = next(iter(stored))
    top = lib.predictions(some)[0]["top"]
    assert top == max(stored[some], key=stored[some].__getitem__)
    assert sum(stored[some].values()) == pytest.approx(1.0, abs=1e-4)


def test_fine_tuning_from_the_active_model_and_the_promotion_rule(
    lib: Library, trained: dict
) -> None:
    first = trained["model_id"]
    verdict = check_promotion(lib, first)
    assert "no active model" in verdict.reason and verdict.chance is not None
    assert verdict.passed == (verdict.interval is not None and verdict.interval[0] > verdict.chance)
    promote(lib, first, force=True)  # the floor is tested on its own below
    assert model_store.active_model(lib)["id"] == first
    runner = JobRunner(lib.root, actor="tester")
    try:
        job = runner.submit("finetune", {**FAST, "epochs": 2, "init": "active", "split_seed": 1})
        row = runner.wait(job, timeout_s=TIMEOUT)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    child = model_store.get_model(lib, row["model_id"])
    assert child["parents"] == [first]
    assert "registered model" in child["params"]["init_from"]
    assert "tensors loaded" in row["log"]
    check = check_promotion(lib, child["id"], min_group=5)
    assert check.active_id == first and check.images > 0
    overall = check.rows[0]
    assert overall.grouping == "overall" and overall.n == check.images
    judged = [r for r in check.rows if not r.verdict.startswith("not judged")]
    assert check.passed == all(r.verdict == "ok" for r in judged)
    assert any("rule: promote only if" in line for line in check.lines())
    result = promote(lib, child["id"], min_group=5)
    expected = child["id"] if result.passed else first
    assert model_store.active_model(lib)["id"] == expected


def test_a_first_model_must_beat_chance_to_be_promoted(
    pad_library: Path, trained: dict, tmp_path: Path
) -> None:
    """No active model is no free pass: below chance is refused, above it passes."""
    root = tmp_path / "copy"
    shutil.copytree(pad_library, root)
    with Library.open(root, actor="tester") as lib:
        lib.conn.execute("UPDATE model SET status = 'candidate'")  # as if nothing were active
        lib.conn.execute("DELETE FROM prediction")
        model = model_store.get_model(lib, trained["model_id"])
        classes = model["training_set"]["classes"]
        test = model["training_set"]["split"]["test"]
        labels = {i: lib.image(i)["diagnosis"] for i in test}
        wrong = {i: classes[(classes.index(dx) + 1) % len(classes)] for i, dx in labels.items()}
        as_probs = {i: {c: float(c == top) for c in classes} for i, top in wrong.items()}
        model_store.store_predictions(lib, model["id"], list(as_probs.items()))
        refused = check_promotion(lib, model["id"])
        assert not refused.passed and "does not clear chance" in refused.reason
        assert refused.rows[0].candidate == 0.0 and refused.images == len(test)
        assert any("vs chance" in line for line in refused.lines())
        promote(lib, model["id"])
        assert model_store.active_model(lib) is None
        right = {i: {c: float(c == dx) for c in classes} for i, dx in labels.items()}
        model_store.store_predictions(lib, model["id"], list(right.items()))
        passed = check_promotion(lib, model["id"])
        assert passed.passed and passed.rows[0].candidate == 1.0
        assert "passed the floor" in passed.reason


def test_cancel_and_resume_of_a_real_fine_tuning_job(shared_data: Path, tmp_path: Path) -> None:
    root = make_library(tmp_path / "library", shared_data, n=100)
    runner = JobRunner(root, actor="tester")
    try:
        job = runner.submit(
            "finetune", {**FAST, "epochs": 40, "quantize": False, "name": "resumed"}
        )
        deadline_steps = 0
        while deadline_steps < 3:
            for event in runner.poll():
                if event.type == "progress" and event.message and event.message.startswith("step"):
                    deadline_steps = int(event.message.split()[1].split("/")[0])
            assert runner.busy or runner.job(job)["status"] == "queued"
        assert runner.cancel(job) == "requested"
        row = runner.wait(job, timeout_s=TIMEOUT)
        assert row["status"] == "cancelled", row["error"]
        checkpoint = load_file(root / "jobs" / str(job) / "checkpoint.pt")
        stopped = checkpoint["step"]
        assert 3 <= stopped < 40 * 5
        runner.resume(job)
        row = runner.wait(job, timeout_s=TIMEOUT)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    assert f"resumed at step {stopped}" in row["log"]
    with Library.open(root) as lib:
        model = model_store.get_model(lib, row["model_id"])
        assert model["metrics"]["training"]["steps"] > stopped


def test_a_bad_starting_file_fails_the_job_with_a_clear_error(
    pad_library: Path, tmp_path: Path
) -> None:
    bogus = tmp_path / "weights.pt"
    bogus.write_text("not weights")
    runner = JobRunner(pad_library, actor="tester")
    try:
        job = runner.submit("finetune", {**FAST, "init": str(bogus)})
        row = runner.wait(job, timeout_s=TIMEOUT)
    finally:
        runner.close()
    assert row["status"] == "failed"
    assert (
        row["message"]
        == row["error"]
        == ("weights.pt: not a PyTorch checkpoint (unrecognised file content)")
    )
    assert "Traceback" in row["log"]  # the details are in the job's log


def test_copying_a_library_keeps_models_usable(
    pad_library: Path, tmp_path: Path, trained: dict
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(pad_library, copy)
    with Library.open(copy) as lib:
        model = model_store.get_model(lib, trained["model_id"])
        assert OnnxClassifier(lib.root / model["file"]).classes


def test_training_on_a_stored_split_uses_its_parts_as_they_are(lib: Library) -> None:
    from dermdesk.exchange.splits import plan_split
    from dermdesk.library import split_store

    plan = plan_split(lib, ImageFilter(synthetic=False), (0.6, 0.2, 0.2), seed=5)
    split_store.create_split(lib, "curated", plan.assignment, plan.params, plan.report)
    runner = JobRunner(lib.root, actor="tester")
    try:
        job = runner.submit("finetune", {**FAST, "epochs": 1, "split": "curated", "name": "s"})
        row = runner.wait(job, timeout_s=TIMEOUT)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    ts = model_store.get_model(lib, row["model_id"])["training_set"]
    assert ts["stored_split"] == "curated" and ts["method"] == "stored split 'curated'"
    classes = set(ts["classes"])
    for part in ("train", "val", "test"):
        expected = {
            i
            for i, p in plan.assignment.items()
            if p == part and lib.image(i)["diagnosis"] in classes
        }
        assert set(ts["split"][part]) == expected


def test_label_issues_from_a_real_model_s_held_out_predictions(
    lib: Library, trained: dict[str, Any]
) -> None:
    pytest.importorskip("cleanlab")
    from dermdesk.exchange.label_review import label_issues

    runner = JobRunner(lib.root, actor="tester")
    try:
        job = runner.submit("predict", {"model": trained["model_id"], "filter": {}})
        assert runner.wait(job, timeout_s=TIMEOUT)["status"] == "done"
    finally:
        runner.close()
    report = label_issues(lib, trained["model_id"], limit=500)
    split = model_store.get_model(lib, trained["model_id"])["training_set"]["split"]
    seen = set(split["train"]) | set(split["val"])
    assert report["held_out"] == len(
        [i for i in split["test"] if lib.image(i)["diagnosis"] in report["classes"]]
    )
    issues = report["issues"]
    assert report["issues_found"] == len(issues)
    assert all(i["image_id"] not in seen for i in issues)
    assert all(lib.image(i["image_id"])["diagnosis"] == i["label"] for i in issues)
    assert [i["p_label"] for i in issues] == sorted(i["p_label"] for i in issues)
