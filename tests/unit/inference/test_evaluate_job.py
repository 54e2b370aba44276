"""The evaluation job's pieces: refusing an unscorable query, and the report's figures
(checked against scikit-learn) grouped by rated skin type unless asked otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from dermdesk.inference.evaluate_job import check_scorable, score
from dermdesk.library.db import LibraryError

CLASSES = ["MEL", "NEV", "BCC"]


def _row(i: int, diagnosis: str | None, fitz: int | None, est: int | None) -> dict:
    return {
        "id": f"img{i}",
        "diagnosis": diagnosis,
        "fitzpatrick": fitz,
        "fitzpatrick_est": est,
        "device_make": None,
        "device_model": None,
        "modality": "clinical",
        "dataset": "pad_ufes_20" if i % 2 else None,
    }


def test_a_query_without_the_models_labels_is_refused_naming_them() -> None:
    with pytest.raises(LibraryError, match="matches no images"):
        check_scorable([], CLASSES, "dataset x")
    rows = [_row(0, "SCC", 2, None), _row(1, None, 3, None)]
    with pytest.raises(LibraryError) as err:
        check_scorable(rows, CLASSES, "our clinic")
    assert "none of the 2 images of the query (our clinic)" in str(err.value)
    assert "MEL, NEV, BCC" in str(err.value) and "their labels are SCC" in str(err.value)


def test_report_matches_sklearn_and_groups_by_rated_tone() -> None:
    rng = np.random.default_rng(3)
    n = 240
    labels = rng.choice([*CLASSES, "SCC"], size=n)
    rows = [_row(i, str(d), [1, 3, 5, None][i % 4], 6) for i, d in enumerate(labels)]
    probs = rng.dirichlet(np.ones(3), size=n)
    y = np.array([CLASSES.index(d) if d in CLASSES else -1 for d in labels])
    probs[y >= 0] += 0.6 * np.eye(3)[y[y >= 0]]  # better than chance
    report = score(rows, probs, CLASSES, n_boot=50, min_group=5)
    keep = y >= 0
    expected = balanced_accuracy_score(y[keep], probs[keep].argmax(1))
    assert report["overall"]["balanced_accuracy"]["value"] == pytest.approx(expected)
    assert report["overall"]["skipped_unknown_label"] == int((~keep).sum())
    # Ratings only: the quarter with no rating is 'unknown', never the estimate (VI).
    assert set(report["fitzpatrick"]) == {"I-II", "III-IV", "V-VI", "unknown"}
    assert report["fitzpatrick"]["V-VI"]["n"] == int(keep[2::4].sum())
    assert set(report["domain"]) == {"clinical/local", "clinical/pad_ufes_20"}
    asked = score(rows, probs, CLASSES, tones="rated_or_estimated", n_boot=50, min_group=5)
    assert "unknown" not in asked["fitzpatrick"]
    assert asked["fitzpatrick"]["V-VI"]["n"] == int(keep[2::4].sum() + keep[3::4].sum())
