"""Annotator agreement (Cohen's kappa, scikit-learn as the oracle) on real PAD-UFES-20 images
relabelled by two clinicians who disagree on some."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.exchange.label_review import agreement, cohen_kappa, label_issues, review_queue
from dermdesk.library import Library, LibraryError


@pytest.fixture(scope="module")
def library(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    lib = Library.open(tmp_path_factory.mktemp("review") / "lib", actor="tester")
    run_import(lib, plan_path(shared_data / "pad_ufes_20").items[:60], checks=False)
    rows = lib.images(order="id")
    # Dr A re-reads 40 images and keeps the dataset's label on all but every 7th;
    # Dr B re-reads 30 of the same and calls every 4th of them a naevus.
    for n, r in enumerate(rows[:40]):
        code = r["diagnosis"] if n % 7 else ("MEL" if r["diagnosis"] != "MEL" else "NEV")
        lib.set_label([r["id"]], code, annotator="dr_a", certainty="single_expert")
    for n, r in enumerate(rows[10:40]):
        code = "NEV" if n % 4 == 0 else lib.image(r["id"])["diagnosis"]
        lib.set_label([r["id"]], code, annotator="dr_b", certainty="single_expert")
    yield lib
    lib.close()


def test_kappa_matches_scikit_learn() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = ["MEL", "NEV", "NEV", "BCC", "MEL", "NEV", "BCC", "BCC", "NEV", "MEL"]
    b = ["MEL", "NEV", "BCC", "BCC", "NEV", "NEV", "BCC", "MEL", "NEV", "MEL"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(a, a) == 1.0
    with pytest.raises(ValueError):
        cohen_kappa([], [])


def test_agreement_per_annotator_pair_and_class(library: Library) -> None:
    from sklearn.metrics import cohen_kappa_score

    report = agreement(library)
    assert {"dr_a", "dr_b", "dataset:pad_ufes_20"} <= set(report["annotators"])
    pair = next(p for p in report["pairs"] if p["annotators"] == ["dr_a", "dr_b"])
    assert pair["images"] == 30
    rows = library.images(order="id")[10:40]
    latest = {
        r["image_id"]: r["diagnosis"]
        for r in library.query("SELECT image_id, annotator, diagnosis FROM label ORDER BY id")
        if r["annotator"] == "dr_a"
    }
    a = [latest[r["id"]] for r in rows]
    b = [library.image(r["id"])["diagnosis"] for r in rows]  # dr_b labelled last: current
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-3)
    assert set(pair["per_class"]) == set(a) | set(b)
    disagreeing = {d["image_id"] for d in report["disagreeing"]}
    assert disagreeing and all(len(set(d["labels"].values())) > 1 for d in report["disagreeing"])
    assert rows[0]["id"] in disagreeing  # dr_b called it a naevus


def test_label_issues_need_a_model_with_held_out_predictions(library: Library) -> None:
    pytest.importorskip("cleanlab")
    with pytest.raises(LibraryError, match="no active model"):
        label_issues(library)


def test_the_review_queue_lists_disagreements_even_without_a_model(library: Library) -> None:
    """No active model (and perhaps no cleanlab): the model part says why in one line, the
    annotators' disagreements are still queued, each with its current label and who gave it."""
    report = review_queue(library)
    assert report["unavailable"] and report["model"] is None
    disagreeing = [d["image_id"] for d in agreement(library)["disagreeing"]]
    assert [r["image_id"] for r in report["rows"]] == disagreeing
    assert [r["rank"] for r in report["rows"]] == list(range(1, len(disagreeing) + 1))
    for row in report["rows"][:5]:
        label = library.current_label(row["image_id"])
        assert label is not None and row["why"] == "annotators"
        assert (row["label"], row["free_text"], row["label_by"]) == (
            label["diagnosis"],
            label["free_text"],
            label["annotator"],
        )
        assert len(set(row["annotators"].values())) > 1 and row["probabilities"] == {}


def test_the_cli_twin(library: Library) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dermdesk",
            "--library",
            str(library.root),
            "curate",
            "label-review",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "dr_a / dr_b" in out.stdout and "images whose annotators disagree" in out.stdout
    assert "label issues: there is no active model" in out.stdout
