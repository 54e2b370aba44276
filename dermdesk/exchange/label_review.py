"""Label review (issue 16): where annotators disagree, and where a model confidently does.

- **Agreement**: each annotator's latest label on each image (the history keeps every
  label, current or not); for every pair of annotators with images in common, how often
  they agree and Cohen's kappa, overall and per class (one class against the rest), and
  the images on which they differ.
- **Label issues**: out-of-fold probabilities of every labelled image (a ``crossval``
  job's, `dermdesk train crossval`), else a model's stored probabilities on images it
  neither trained nor validated on (its held-out predictions), ranked by confident
  learning. cleanlab's ``find_label_issues`` is the well-kept implementation; it is an
  optional extra (``pip install dermdesk[curate]``) and the review says so in one line
  when it is absent.
- **Review queue**: both in one list for a person to work through (the GUI's Models ▸
  Review label issues): the model's issues in cleanlab's rank order, then the images whose
  annotators disagree; each row with every annotator's latest label.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from dermdesk.library import Library, LibraryError, model_store
from dermdesk.library.db import id_chunks

MIN_COMMON = 5  # image pairs an annotator pair needs for a kappa


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels on the same items (1 = perfect, 0 = chance)."""
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two equally long, non-empty label lists")
    classes = sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(classes)}
    table = np.zeros((len(classes), len(classes)))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    n = table.sum()
    observed = np.trace(table) / n
    expected = float((table.sum(axis=0) * table.sum(axis=1)).sum() / n**2)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return float((observed - expected) / (1.0 - expected))


def latest_labels(lib: Library) -> dict[str, dict[str, str]]:
    """image id -> annotator -> that annotator's most recent diagnosis on it."""
    out: dict[str, dict[str, str]] = {}
    for image_id, annotator, diagnosis in lib.conn.execute(
        "SELECT image_id, annotator, diagnosis FROM label ORDER BY id"
    ):
        out.setdefault(image_id, {})[annotator] = diagnosis  # later rows win
    return out


def agreement(lib: Library, min_common: int = MIN_COMMON) -> dict[str, Any]:
    """Per annotator pair: images in common, agreement, kappa overall and per class; and
    the images whose annotators disagree."""
    labels = latest_labels(lib)
    annotators = sorted({a for per in labels.values() for a in per})
    pairs = []
    for first, second in combinations(annotators, 2):
        common = [i for i, per in labels.items() if first in per and second in per]
        if len(common) < min_common:
            continue
        a = [labels[i][first] for i in common]
        b = [labels[i][second] for i in common]
        per_class = {}
        for code in sorted(set(a) | set(b)):
            x = ["yes" if v == code else "no" for v in a]
            y = ["yes" if v == code else "no" for v in b]
            per_class[code] = round(cohen_kappa(x, y), 3)
        pairs.append(
            {
                "annotators": [first, second],
                "images": len(common),
                "agreement": round(float(np.mean([p == q for p, q in zip(a, b, strict=True)])), 3),
                "kappa": round(cohen_kappa(a, b), 3),
                "per_class": per_class,
            }
        )
    disagreeing = sorted(
        (i for i, per in labels.items() if len(set(per.values())) > 1),
        key=lambda i: (-len(set(labels[i].values())), i),
    )
    return {
        "annotators": annotators,
        "pairs": pairs,
        "disagreeing": [{"image_id": i, "labels": labels[i]} for i in disagreeing],
    }


def label_issues(lib: Library, model: str = "active", limit: int = 50) -> dict[str, Any]:
    """Images whose label a model's held-out probabilities most doubt, ranked by cleanlab
    (self-confidence: the probability the model gives the given label, lowest first)."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        raise LibraryError(
            "label review needs cleanlab: pip install 'dermdesk[curate]' (or pip install cleanlab)"
        ) from None
    info = row = _review_model(lib, model)
    classes = list(info["training_set"]["classes"])
    if info["kind"] == "crossval":
        rows = _out_of_fold_rows(lib, info)
        seen: set[str] = set()  # every probability is out of fold
    else:
        seen = set(model_store.seen_images(lib, info))  # its lineage's training images too
        rows = lib.query(
            "SELECT p.image_id, p.probabilities, i.diagnosis FROM prediction p "
            "JOIN image i ON i.id = p.image_id WHERE p.model_id = ? AND i.diagnosis IS NOT NULL "
            "AND i.source != 'synthetic' ORDER BY p.image_id",
            [row["id"]],
        )
    held_out = [r for r in rows if r["image_id"] not in seen and r["diagnosis"] in classes]
    counts = {c: sum(r["diagnosis"] == c for r in held_out) for c in classes}
    if len(held_out) < 2 * len(classes) or min(counts.values()) == 0:
        raise LibraryError(
            f"model {row['name'] or row['id']} has held-out predictions on {len(held_out)} "
            "labelled images of its classes; predict on more labelled images it did not "
            "train on (dermdesk predict), every class at least once"
        )
    probs = np.array(
        [[json.loads(r["probabilities"]).get(c, 0.0) for c in classes] for r in held_out]
    )
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    labels = np.array([classes.index(r["diagnosis"]) for r in held_out])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    issues = []
    for i in ranked[:limit]:
        given, top = classes[labels[i]], classes[int(np.argmax(probs[i]))]
        issues.append(
            {
                "image_id": held_out[i]["image_id"],
                "label": given,
                "p_label": round(float(probs[i, labels[i]]), 3),
                "model_says": top,
                "p_model": round(float(probs[i].max()), 3),
                "probabilities": {
                    c: round(float(p), 3) for c, p in zip(classes, probs[i], strict=True)
                },
            }
        )
    return {
        "model": row["id"],
        "classes": classes,
        "held_out": len(held_out),
        "issues_found": len(ranked),
        "issues": issues,
        # cleanlab's own cautions (e.g. a class with too few images to flag them all)
        "warnings": sorted({str(w.message) for w in caught}),
    }


def _review_model(lib: Library, model: str) -> dict[str, Any]:
    """The model whose probabilities the review reads: ``auto`` is the newest
    cross-validation (out-of-fold probabilities of every labelled image), else the active
    classifier (its held-out predictions)."""
    from dermdesk.library import model_store

    if model == "auto":
        newest = lib.query(
            "SELECT id FROM model WHERE kind = 'crossval' ORDER BY created_at DESC, id LIMIT 1"
        )
        model = newest[0]["id"] if newest else "active"
    return model_store.get_model(lib, model)


def _out_of_fold_rows(lib: Library, info: dict[str, Any]) -> list[dict[str, Any]]:
    """A cross-validation's probabilities as prediction-like rows, with current labels."""
    path = lib.root / info["file"]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LibraryError(f"{info['id']}: its out-of-fold file cannot be read ({exc})") from None
    classes = data["classes"]
    probs = data["probabilities"]
    ids = sorted(probs)
    labels: dict[str, str] = {}
    for chunk in id_chunks(ids):
        for image_id, diagnosis in lib.conn.execute(
            f"SELECT id, diagnosis FROM image WHERE id IN ({', '.join('?' * len(chunk))}) "
            "AND diagnosis IS NOT NULL AND source != 'synthetic'",
            chunk,
        ):
            labels[image_id] = diagnosis
    return [
        {
            "image_id": i,
            "diagnosis": labels[i],
            "probabilities": json.dumps(dict(zip(classes, probs[i], strict=True))),
        }
        for i in ids
        if i in labels
    ]


def review_queue(lib: Library, model: str = "auto", limit: int = 200) -> dict[str, Any]:
    """The label issues (cleanlab's rank order) then the annotator disagreements not among
    them, each row with the current label (its wording and who gave it), the annotators'
    labels and, where the model flagged it, its top class and probabilities. When the model
    part cannot run (no cleanlab, no model, too few held-out predictions) ``unavailable``
    says why in one line and the disagreements are still listed."""
    agree = agreement(lib)
    by_image = {d["image_id"]: d["labels"] for d in agree["disagreeing"]}
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"unavailable": None, "model": None, "held_out": 0}
    try:
        issues = label_issues(lib, model, limit)
    except LibraryError as exc:
        report["unavailable"] = str(exc)
    else:
        report.update(model=issues["model"], held_out=issues["held_out"])
        report["warnings"] = issues["warnings"]
        for issue in issues["issues"]:
            annotators = by_image.get(issue["image_id"], {})
            rows.append({**issue, "why": "model", "annotators": annotators})
    listed = {r["image_id"] for r in rows}
    for image_id, labels in by_image.items():
        if image_id in listed or len(rows) >= limit:
            continue
        rows.append(
            {
                "image_id": image_id,
                "why": "annotators",
                "annotators": labels,
                "model_says": None,
                "p_label": None,
                "p_model": None,
                "probabilities": {},
            }
        )
    current = lib.current_labels([r["image_id"] for r in rows])
    for rank, row in enumerate(rows, start=1):
        label = current.get(row["image_id"], {})
        row.update(
            rank=rank,
            label=label.get("diagnosis"),
            free_text=label.get("free_text"),
            label_by=label.get("annotator"),
        )
    report["rows"] = rows
    report["pairs"] = agree["pairs"]
    return report
