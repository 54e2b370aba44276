"""Patient-grouped, stratified, seeded splits of images (numpy only).

Images of one patient (or, without a patient, one lesion) always land in the
same split, so a model is never tested on a patient it trained on. Within that
constraint groups are assigned greedily, largest and rarest first, to the split
that most lacks their diagnosis x skin-type mix (the idea of scikit-learn's
StratifiedGroupKFold). Synthetic images never enter validation or test: they
are returned as training-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dermdesk.ml.groups import fitzpatrick_group

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class SplitItem:
    """What the splitter needs to know about one image."""

    image_id: str
    group: str  # patient, else lesion, else the image itself
    stratum: str  # diagnosis x skin-type group
    synthetic: bool = False


def item_from_row(row: Mapping[str, Any]) -> SplitItem:
    """A SplitItem from an image row of the library."""
    if row.get("patient_id"):
        group = f"patient:{row['patient_id']}"
    elif row.get("lesion_id"):
        group = f"lesion:{row['lesion_id']}"
    else:
        group = f"image:{row['id']}"
    stratum = f"{row.get('diagnosis')}|{fitzpatrick_group(row.get('fitzpatrick'))}"
    return SplitItem(row["id"], group, stratum, row.get("source") == "synthetic")


def _groups(items: Sequence[SplitItem]) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    """Group names, their stratum-count matrix, and member image ids per group."""
    strata = sorted({it.stratum for it in items})
    col = {s: i for i, s in enumerate(strata)}
    members: dict[str, list[str]] = {}
    for it in items:
        members.setdefault(it.group, []).append(it.image_id)
    # Order groups by their smallest image id (a content hash), not by their name: patient
    # ids are random per library, so the same images split the same way in any library.
    names = sorted(members, key=lambda g: min(members[g]))
    row = {g: i for i, g in enumerate(names)}
    counts = np.zeros((len(names), len(strata)), dtype=np.float64)
    for it in items:
        counts[row[it.group], col[it.stratum]] += 1
    return names, counts, members


def _assign(counts: np.ndarray, fractions: np.ndarray, seed: int) -> np.ndarray:
    """Greedy stratified assignment of groups (rows of ``counts``) to bins.

    Each group goes to the bin that leaves the per-stratum shares (and the
    bin sizes), measured relative to each bin's target fraction, most even.
    """
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(fractions > 0)  # a bin with fraction 0 gets nothing
    totals = np.maximum(counts.sum(axis=0), 1)
    scale = 1.0 / (fractions[active, None] * totals[None, :])  # 1 when a bin is on target
    size_scale = 1.0 / (fractions[active] * counts.sum())
    filled = np.zeros((len(active), counts.shape[1]))
    # Groups with a peaked stratum mix and big groups are hardest to place: do them first.
    order = rng.permutation(len(counts))
    peaked = (counts / totals).std(axis=1)
    order = order[np.lexsort((-counts[order].sum(axis=1), -peaked[order]))]
    assignment = np.empty(len(counts), dtype=np.int64)
    for g in order:
        best, best_cost = 0, np.inf
        for b in range(len(active)):
            filled[b] += counts[g]
            strata_spread = (filled * scale).std(axis=0).mean()
            size_spread = (filled.sum(axis=1) * size_scale).std()
            filled[b] -= counts[g]
            cost = strata_spread + size_spread
            if cost < best_cost - 1e-12:
                best, best_cost = b, cost
        assignment[g] = active[best]
        filled[best] += counts[g]
    return assignment


def grouped_split(
    items: Sequence[SplitItem],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, str]:
    """Image id -> 'train' / 'val' / 'test'. Synthetic images are always 'train'."""
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError("split fractions must be three non-negative numbers (train, val, test)")
    fr = np.asarray(fractions, dtype=np.float64) / sum(fractions)
    real = [it for it in items if not it.synthetic]
    result = {it.image_id: "train" for it in items if it.synthetic}
    if not real:
        return result
    names, counts, members = _groups(real)
    assignment = _assign(counts, fr, seed)
    for g, name in enumerate(names):
        for image_id in members[name]:
            result[image_id] = SPLITS[assignment[g]]
    return result


def grouped_folds(items: Sequence[SplitItem], k: int, seed: int = 0) -> dict[str, int]:
    """Image id -> fold 0..k-1 for k-fold cross-validation; synthetic images -> -1 (train only)."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    real = [it for it in items if not it.synthetic]
    result = {it.image_id: -1 for it in items if it.synthetic}
    if not real:
        return result
    names, counts, members = _groups(real)
    assignment = _assign(counts, np.full(k, 1.0 / k), seed)
    for g, name in enumerate(names):
        for image_id in members[name]:
            result[image_id] = int(assignment[g])
    return result


def summarize(split: Mapping[str, str], items: Sequence[SplitItem]) -> dict[str, Any]:
    """Counts per split and per stratum: what the user is shown and what is recorded."""
    by_id = {it.image_id: it for it in items}
    out: dict[str, Any] = {}
    for name in sorted(set(split.values()), key=str):
        ids = [i for i, s in split.items() if s == name]
        strata: dict[str, int] = {}
        for i in ids:
            strata[by_id[i].stratum] = strata.get(by_id[i].stratum, 0) + 1
        out[str(name)] = {
            "images": len(ids),
            "groups": len({by_id[i].group for i in ids}),
            "strata": dict(sorted(strata.items())),
        }
    return out
