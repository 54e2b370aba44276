"""Metrics against values worked out by hand, and their subgroup and bootstrap plumbing."""

from __future__ import annotations

import numpy as np
import pytest

from dermdesk.ml import metrics


def onehot_probs(pred: list[int], n: int, conf: float = 0.9) -> np.ndarray:
    probs = np.full((len(pred), n), (1 - conf) / (n - 1))
    probs[np.arange(len(pred)), pred] = conf
    return probs


def test_confusion_matrix_and_balanced_accuracy() -> None:
    y = np.array([0, 0, 0, 1])
    probs = onehot_probs([0, 0, 1, 1], 2)
    cm = metrics.confusion_matrix(y, probs.argmax(1), 2)
    assert cm.tolist() == [[2, 1], [0, 1]]
    # recall class 0 = 2/3, class 1 = 1/1 -> mean 5/6; plain accuracy would be 3/4
    assert metrics.balanced_accuracy(y, probs) == pytest.approx(5 / 6)
    assert metrics.accuracy(y, probs) == pytest.approx(3 / 4)


def test_balanced_accuracy_ignores_classes_absent_from_the_labels() -> None:
    y = np.array([0, 0, 1, 1])
    probs = onehot_probs([0, 1, 1, 2], 3)  # class 2 never occurs in y
    # recall 1/2 for classes 0 and 1; class 2 has no recall and must not count as 0
    assert metrics.balanced_accuracy(y, probs) == pytest.approx(0.5)


def test_sensitivity_and_specificity_per_class() -> None:
    cm = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 5]])
    sens, spec = metrics.sensitivity_specificity(cm)
    assert sens.tolist() == pytest.approx([0.8, 0.8, 1.0])
    # class 0: 10 negatives, 1 predicted 0 -> 9/10; class 1: 15 negatives, 2 predicted 1
    assert spec.tolist() == pytest.approx([0.9, 13 / 15, 1.0])


def test_auroc_counts_pairs_and_halves_ties() -> None:
    is_pos = np.array([True, True, False, False])
    assert metrics.auroc(is_pos, np.array([0.8, 0.6, 0.7, 0.2])) == pytest.approx(0.75)
    assert metrics.auroc(is_pos, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert metrics.auroc(np.array([True, True]), np.array([0.1, 0.2])) is None


def test_macro_auroc_averages_defined_classes() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    # class 0 vs rest: scores pos [0.9, 0.6], neg [0.7, 0.2] -> 0.75; class 1 symmetric
    assert metrics.macro_auroc(y, probs) == pytest.approx(0.75)


def test_sensitivity_at_fixed_specificity() -> None:
    neg = np.linspace(0.1, 1.0, 10)
    pos = np.array([0.85, 0.9, 0.5])
    is_pos = np.r_[np.zeros(10, bool), np.ones(3, bool)]
    score = np.r_[neg, pos]
    # threshold 0.8 keeps 8 of 10 negatives below it (specificity 0.8); 2 of 3 positives above
    assert metrics.sensitivity_at_specificity(is_pos, score, 0.8) == pytest.approx(2 / 3)
    assert metrics.sensitivity_at_specificity(is_pos, score, 1.0) == 0.0


def test_expected_calibration_error() -> None:
    y = np.zeros(10, dtype=int)
    assert metrics.expected_calibration_error(y, onehot_probs([0] * 10, 2, 1.0)) == 0.0
    assert metrics.expected_calibration_error(y, onehot_probs([0] * 10, 2, 0.9)) == pytest.approx(
        0.1
    )
    half_wrong = onehot_probs([0] * 5 + [1] * 5, 2, 0.9)
    assert metrics.expected_calibration_error(y, half_wrong) == pytest.approx(0.4)


def test_bootstrap_interval_brackets_the_value_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    probs = onehot_probs(pred.tolist(), 3)
    value = metrics.balanced_accuracy(y, probs)
    lo, hi = metrics.bootstrap_ci(metrics.balanced_accuracy, y, probs, n_boot=200, seed=3)
    assert lo < value < hi and hi - lo < 0.2
    assert metrics.bootstrap_ci(metrics.balanced_accuracy, y, probs, n_boot=200, seed=3) == (lo, hi)


def test_evaluate_reports_counts_intervals_and_malignant_sensitivity() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    y[:5] = -1  # labels outside the model's classes are skipped and counted
    probs = rng.dirichlet(np.ones(3), 120)
    report = metrics.evaluate(y, probs, ["MEL", "NEV", "BCC"], n_boot=50)
    assert report["n"] == 115 and report["skipped_unknown_label"] == 5
    assert report["balanced_accuracy"]["ci"] is not None
    assert sum(c["n"] for c in report["per_class"].values()) == 115
    assert report["malignant"]["class"] == "MEL"
    assert report["malignant"]["n_positive"] == int((y == 0).sum())
    assert np.array(report["confusion_matrix"]["rows"]).sum() == 115


def test_evaluate_groups_splits_by_group_and_keeps_small_groups_as_counts() -> None:
    y = np.array([0, 1, 0, 1, 0, 1, 0])
    probs = onehot_probs([0, 1, 0, 0, 0, 1, 1], 2)
    groups = {"fitzpatrick": ["I-II"] * 4 + ["V-VI"] * 2 + ["unknown"]}
    report = metrics.evaluate_groups(y, probs, ["MEL", "NEV"], groups, min_n=2, n_boot=20)
    per = report["fitzpatrick"]
    assert per["I-II"]["n"] == 4
    assert per["I-II"]["balanced_accuracy"]["value"] == pytest.approx(0.75)
    assert per["V-VI"]["balanced_accuracy"]["value"] == pytest.approx(1.0)
    assert per["unknown"] == {"n": 1}
    assert "n=7 balanced accuracy" in metrics.headline(report["overall"])
