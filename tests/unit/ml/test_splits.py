"""Patient-grouped stratified splits: no patient in two splits, mix kept, seeded."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dermdesk.ml.groups import fitzpatrick_group
from dermdesk.ml.splits import (
    SplitItem,
    grouped_folds,
    grouped_split,
    item_from_row,
    summarize,
)


def population(seed: int = 0, patients: int = 300) -> list[SplitItem]:
    rng = np.random.default_rng(seed)
    items = []
    for p in range(patients):
        dx = rng.choice(["NEV", "BCC", "MEL", "SCC"], p=[0.55, 0.3, 0.1, 0.05])
        fitz = fitzpatrick_group(int(rng.integers(1, 7)))
        for k in range(int(rng.integers(1, 5))):
            items.append(SplitItem(f"img-{p}-{k}", f"patient:{p}", f"{dx}|{fitz}"))
    return items


def test_no_patient_is_in_two_splits_and_fractions_are_kept() -> None:
    items = population()
    split = grouped_split(items, (0.7, 0.15, 0.15), seed=1)
    assert set(split) == {it.image_id for it in items}
    where: dict[str, set[str]] = {}
    for it in items:
        where.setdefault(it.group, set()).add(split[it.image_id])
    assert all(len(s) == 1 for s in where.values())
    sizes = Counter(split.values())
    n = len(items)
    assert sizes["train"] / n == pytest.approx(0.7, abs=0.04)
    assert sizes["val"] / n == pytest.approx(0.15, abs=0.04)
    assert sizes["test"] / n == pytest.approx(0.15, abs=0.04)


def test_every_diagnosis_reaches_every_split_in_proportion() -> None:
    items = population()
    split = grouped_split(items, seed=2)
    for dx in ("NEV", "BCC", "MEL", "SCC"):
        ids = [it.image_id for it in items if it.stratum.startswith(dx)]
        counts = Counter(split[i] for i in ids)
        assert counts["val"] > 0 and counts["test"] > 0, dx
        assert counts["train"] / len(ids) == pytest.approx(0.7, abs=0.12), dx


def test_split_is_seeded() -> None:
    items = population()
    assert grouped_split(items, seed=5) == grouped_split(items, seed=5)
    assert grouped_split(items, seed=5) != grouped_split(items, seed=6)


def test_split_does_not_depend_on_the_libraries_random_patient_ids() -> None:
    items = population()
    renamed = [SplitItem(it.image_id, it.group[::-1], it.stratum) for it in items]  # new order
    assert grouped_split(items, seed=1) == grouped_split(renamed, seed=1)


def test_synthetic_images_only_ever_train() -> None:
    items = population(patients=50)
    items += [SplitItem(f"syn-{i}", f"image:syn-{i}", "MEL|unknown", True) for i in range(40)]
    split = grouped_split(items, seed=0)
    assert {split[f"syn-{i}"] for i in range(40)} == {"train"}
    folds = grouped_folds(items, 5, seed=0)
    assert {folds[f"syn-{i}"] for i in range(40)} == {-1}
    assert set(folds.values()) == {-1, 0, 1, 2, 3, 4}


def test_folds_are_grouped_and_balanced() -> None:
    items = population()
    folds = grouped_folds(items, 5, seed=0)
    per_group = {}
    for it in items:
        per_group.setdefault(it.group, set()).add(folds[it.image_id])
    assert all(len(s) == 1 for s in per_group.values())
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) < 0.05 * len(items)


def test_item_from_row_groups_by_patient_then_lesion_then_image() -> None:
    base = {"id": "a", "diagnosis": "MEL", "fitzpatrick": 5, "source": "import"}
    assert item_from_row({**base, "patient_id": "P-1", "lesion_id": "L-1"}).group == "patient:P-1"
    assert item_from_row({**base, "patient_id": None, "lesion_id": "L-1"}).group == "lesion:L-1"
    item = item_from_row({**base, "patient_id": None, "lesion_id": None})
    assert item.group == "image:a" and item.stratum == "MEL|V-VI"


def test_summary_counts_images_groups_and_strata() -> None:
    items = population(patients=40)
    split = grouped_split(items, seed=0)
    summary = summarize(split, items)
    assert sum(s["images"] for s in summary.values()) == len(items)
    assert sum(s["groups"] for s in summary.values()) == 40


def test_bad_fractions_are_refused() -> None:
    with pytest.raises(ValueError, match="three non-negative"):
        grouped_split(population(patients=5), (0.5, 0.5))


def test_a_zero_fraction_leaves_that_split_empty() -> None:
    split = grouped_split(population(patients=60), (0.85, 0.15, 0.0), seed=0)
    counts = Counter(split.values())
    assert counts["test"] == 0 and counts["val"] > 0 and counts["train"] > counts["val"]
