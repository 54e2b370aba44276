"""ml/metrics against scikit-learn, on random predictions and on a real model's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from dermdesk.ml import metrics  # noqa: E402


def random_case(seed: int, n: int = 300, classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes)) + 1.5 * np.eye(classes)[y] * rng.random((n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def agree(y: np.ndarray, probs: np.ndarray) -> None:
    pred = probs.argmax(axis=1)
    classes = probs.shape[1]
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected
        warnings.simplefilter("ignore", UserWarning)
        expected = sklearn_metrics.balanced_accuracy_score(y, pred)
    assert metrics.balanced_accuracy(y, probs) == pytest.approx(expected)
    assert metrics.accuracy(y, probs) == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    assert np.array_equal(
        metrics.confusion_matrix(y, pred, classes),
        sklearn_metrics.confusion_matrix(y, pred, labels=range(classes)),
    )
    present = np.unique(y)
    if len(present) == classes:
        assert metrics.macro_auroc(y, probs) == pytest.approx(
            sklearn_metrics.roc_auc_score(y, probs, multi_class="ovr", average="macro")
        )
    for c in present:
        assert metrics.auroc(y == c, probs[:, c]) == pytest.approx(
            sklearn_metrics.roc_auc_score(y == c, probs[:, c])
        )
    sens, _ = metrics.sensitivity_specificity(metrics.confusion_matrix(y, pred, classes))
    recall = sklearn_metrics.recall_score(y, pred, labels=present, average=None)
    assert np.allclose(sens[present], recall)


@pytest.mark.parametrize("seed", range(8))
def test_metrics_match_sklearn_on_random_predictions(seed: int) -> None:
    agree(*random_case(seed))


def test_ties_and_a_missing_class_match_sklearn() -> None:
    y, probs = random_case(99, n=120, classes=4)
    probs = np.round(probs, 1) + 1e-3  # many tied scores
    probs /= probs.sum(axis=1, keepdims=True)
    agree(y, probs)
    y2 = np.where(y == 3, 0, y)  # class 3 absent from the labels
    agree(y2, probs)


def test_metrics_match_sklearn_on_a_real_model(shared_data: object, tmp_path: object) -> None:
    """Predictions of a model trained here (the tiny ViT of the fine-tuning tests,
    exported to ONNX) on real PAD-UFES-20 images."""
    from pathlib import Path

    pytest.importorskip("torch")
    from dermdesk.exchange.datasets import plan_path
    from dermdesk.exchange.importer import run_import
    from dermdesk.inference.predictor import OnnxClassifier, iter_predictions
    from dermdesk.jobs.runner import JobRunner
    from dermdesk.library import Library, model_store

    root = Path(str(tmp_path)) / "lib"
    with Library.open(root, actor="tester") as lib:
        run_import(lib, plan_path(Path(str(shared_data)) / "pad_ufes_20").items[:120], workers=2)
    runner = JobRunner(root, actor="tester")
    try:
        params = {"arch": "vit_test", "img_size": 32, "epochs": 3, "n_boot": 20,
                  "min_class_images": 5, "threads": 1, "augment": "none",
                  "quantize": False}  # fmt: skip
        row = runner.wait(runner.submit("finetune", params), timeout_s=300)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    with Library.open(root) as lib:
        model = model_store.get_model(lib, row["model_id"])
        onnx = OnnxClassifier(root / model["file"])
        items = [
            (r["id"], lib.original_path(r)) for r in lib.images() if r["diagnosis"] in onnx.classes
        ]
        ids, probs = [], []
        for batch_ids, batch in iter_predictions(onnx, items, batch_size=32):
            ids += batch_ids
            probs.append(batch)
        labels = {
            r["id"]: onnx.classes.index(r["diagnosis"])
            for r in lib.images()
            if r["diagnosis"] in onnx.classes
        }
    y = np.array([labels[i] for i in ids])
    agree(y, np.concatenate(probs))
