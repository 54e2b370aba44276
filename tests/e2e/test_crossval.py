"""`dermdesk train crossval` (issue 16): out-of-fold probabilities of every labelled image,
from patient-grouped folds, and the label review that reads them."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.test_cli import run
from tests.e2e.test_cli_models import home  # noqa: F401  (the 120 PAD-UFES-20 photos)

pytestmark = [pytest.mark.ml, pytest.mark.slow]

TINY = [
    "--arch", "vit_test", "--img-size", "32", "--epochs", "2", "--batch-size", "16",
    "--micro-batch", "16", "--threads", "1", "--boot", "30", "--min-class-images", "5",
    "--augment", "none",
]  # fmt: skip


def test_every_labelled_image_gets_an_out_of_fold_probability(home: Path) -> None:  # noqa: F811
    out = run(home, "train", "crossval", "--folds", "3", *TINY).stdout
    model_id = re.search(r"model (M-\w+) registered", out).group(1)  # type: ignore[union-attr]
    db = sqlite3.connect(home / "library.sqlite")
    kind, file, training = db.execute(
        "SELECT kind, file, training_set FROM model WHERE id = ?", (model_id,)
    ).fetchone()
    owners = dict(db.execute("SELECT id, coalesce(patient_id, lesion_id, id) FROM image"))
    labels = dict(db.execute("SELECT id, diagnosis FROM image WHERE diagnosis IS NOT NULL"))
    db.close()
    assert kind == "crossval"
    data = json.loads((home / file).read_text())
    classes = json.loads(training)["classes"]
    wanted = {i for i, dx in labels.items() if dx in classes}
    assert set(data["probabilities"]) == wanted  # every labelled image of the classes
    assert set(data["folds"]) == wanted and set(data["folds"].values()) == {0, 1, 2}
    by_owner: dict[str, set[int]] = {}
    for image_id, fold in data["folds"].items():
        by_owner.setdefault(owners[image_id], set()).add(fold)
    assert all(len(folds) == 1 for folds in by_owner.values())  # no patient in two folds
    for row in data["probabilities"].values():
        assert len(row) == len(classes) and abs(sum(row) - 1) < 1e-3
    review = json.loads(run(home, "curate", "label-review", "--json").stdout)
    assert review["issues"]["model"] == model_id  # auto: the newest cross-validation
    assert review["issues"]["held_out"] == len(wanted)
    refused = run(home, "models", "promote", model_id, check=False)
    assert refused.returncode != 0 and "not a classifier" in refused.stdout + refused.stderr


def test_a_bad_cross_validation_request_fails_in_one_line(home: Path) -> None:  # noqa: F811
    proc = run(home, "train", "crossval", "--folds", "1", *TINY, check=False)
    assert proc.returncode == 2 and "folds must be between 2 and 20" in proc.stderr
    proc = run(home, "train", "crossval", "--split", "v1", *TINY, check=False)
    assert proc.returncode == 2
