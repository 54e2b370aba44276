"""Classification metrics, overall and per subgroup, with bootstrap intervals (numpy only).

Every number comes with the count behind it and, for the headline metrics, a
percentile bootstrap 95% interval, because subgroup figures on a few dozen
images are noisy and must be read that way. Nothing here imports torch: the
GUI, the promotion rule and the ONNX side use it too.

Conventions: ``y`` holds class indices (``-1`` = a label outside the model's
classes, skipped), ``probs`` is (N, C) with rows summing to 1. A metric that is
undefined on a group (e.g. AUROC with one class present) is ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_SPECIFICITY = 0.80
DEFAULT_BOOTSTRAP = 500
ECE_BINS = 15

Metric = Callable[[np.ndarray, np.ndarray], float | None]


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    flat = np.asarray(y, dtype=np.int64) * n_classes + np.asarray(pred, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def sensitivity_specificity(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class one-vs-rest sensitivity (recall) and specificity; NaN where undefined."""
    tp = np.diag(cm).astype(np.float64)
    pos = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    neg = cm.sum() - pos
    tn = neg - (predicted - tp)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / pos, tn / neg


def balanced_accuracy(y: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean recall over the classes present in ``y``."""
    if len(y) == 0:
        return None
    cm = confusion_matrix(y, probs.argmax(axis=1), probs.shape[1])
    sens, _ = sensitivity_specificity(cm)
    return float(np.nanmean(sens))


def accuracy(y: np.ndarray, probs: np.ndarray) -> float | None:
    return float(np.mean(probs.argmax(axis=1) == y)) if len(y) else None


def auroc(is_pos: np.ndarray, score: np.ndarray) -> float | None:
    """Binary AUROC (Mann-Whitney U with average ranks for ties)."""
    n_pos = int(is_pos.sum())
    n_neg = len(is_pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(score)
    u = ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # Boundaries of runs of equal values; each run gets the mean of its ranks.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks are 1-based
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def macro_auroc(y: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean one-vs-rest AUROC over classes with both positives and negatives."""
    values = [auroc(y == c, probs[:, c]) for c in range(probs.shape[1])]
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def sensitivity_at_specificity(
    is_pos: np.ndarray, score: np.ndarray, specificity: float = DEFAULT_SPECIFICITY
) -> float | None:
    """Sensitivity at the highest threshold whose specificity is at least ``specificity``."""
    neg = np.sort(score[~is_pos])
    if len(neg) == 0 or not is_pos.any():
        return None
    # Calling positive when score > t keeps specificity = mean(neg <= t).
    k = int(np.ceil(specificity * len(neg))) - 1
    threshold = neg[min(max(k, 0), len(neg) - 1)]
    return float(np.mean(score[is_pos] > threshold))


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE with equal-width confidence bins."""
    if len(y) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def bootstrap_ci(
    metric: Metric,
    y: np.ndarray,
    probs: np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``metric`` over resampled images."""
    if len(y) < 2 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        v = metric(y[idx], probs[idx])
        if v is not None and np.isfinite(v):
            values.append(v)
    if len(values) < n_boot // 2:
        return None
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def evaluate(
    y: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    malignant: str | None = "MEL",
    specificity: float = DEFAULT_SPECIFICITY,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics for one set of images; a JSON-ready dict.

    Scalar metrics are ``{"value": v, "ci": [lo, hi]}``; per-class figures
    carry their own counts (``n`` positives).
    """
    keep = y >= 0
    y, probs = np.asarray(y[keep], dtype=np.int64), np.asarray(probs[keep], dtype=np.float64)
    n_classes = len(classes)
    cm = confusion_matrix(y, probs.argmax(axis=1), n_classes) if len(y) else None
    out: dict[str, Any] = {"n": len(y), "skipped_unknown_label": int((~keep).sum())}

    def scalar(fn: Metric) -> dict[str, Any]:
        value = fn(y, probs) if len(y) else None
        ci = bootstrap_ci(fn, y, probs, n_boot=n_boot, seed=seed) if value is not None else None
        return {"value": value, "ci": list(ci) if ci else None}

    out["balanced_accuracy"] = scalar(balanced_accuracy)
    out["accuracy"] = scalar(accuracy)
    out["macro_auroc"] = scalar(macro_auroc)
    out["ece"] = scalar(lambda a, b: expected_calibration_error(a, b))
    out["per_class"] = _per_class(cm, classes) if cm is not None else {}
    out["confusion_matrix"] = {
        "classes": list(classes),
        "rows": cm.tolist() if cm is not None else [],
    }
    if malignant and malignant in classes:
        c = list(classes).index(malignant)

        def sens_at_spec(a: np.ndarray, b: np.ndarray) -> float | None:
            return sensitivity_at_specificity(a == c, b[:, c], specificity)

        out["malignant"] = {
            "class": malignant,
            "specificity": specificity,
            "n_positive": int((y == c).sum()),
            "sensitivity_at_specificity": scalar(sens_at_spec),
        }
    return out


def _per_class(cm: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    sens, spec = sensitivity_specificity(cm)
    return {
        code: {
            "n": int(cm[i].sum()),
            "sensitivity": _num(sens[i]),
            "specificity": _num(spec[i]),
        }
        for i, code in enumerate(classes)
    }


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def evaluate_groups(
    y: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    groups: Mapping[str, Sequence[str]],
    *,
    min_n: int = 1,
    **kwargs: Any,
) -> dict[str, Any]:
    """Metrics overall and per group of each grouping (e.g. fitzpatrick, device, domain).

    ``groups`` maps a grouping name to one group label per image. Groups with
    fewer than ``min_n`` images get only their count.
    """
    report: dict[str, Any] = {"overall": evaluate(y, probs, classes, **kwargs)}
    for name, labels in groups.items():
        labels_arr = np.asarray(labels, dtype=object)
        per: dict[str, Any] = {}
        for value in sorted(set(labels_arr.tolist()), key=str):
            sel = labels_arr == value
            if sel.sum() < min_n:
                per[str(value)] = {"n": int(sel.sum())}
            else:
                per[str(value)] = evaluate(y[sel], probs[sel], classes, **kwargs)
        report[name] = per
    return report


def headline(report: Mapping[str, Any]) -> str:
    """One line: n, balanced accuracy with its interval, macro AUROC, ECE."""
    ba = report["balanced_accuracy"]
    ci = ba["ci"]
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    auc = report["macro_auroc"]["value"]
    ece = report["ece"]["value"]
    return (
        f"n={report['n']} balanced accuracy {_fmt(ba['value'])}{interval}, "
        f"macro AUROC {_fmt(auc)}, ECE {_fmt(ece)}"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
