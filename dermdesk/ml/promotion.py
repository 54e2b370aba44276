"""The promotion rule: a candidate becomes the active model only if it is not worse.

Both models are compared on the same images: the candidate's held-out test
split, minus any image the active model trained or validated on. The
candidate must reach at least the active model's balanced accuracy (less an
optional margin) overall *and* in every Fitzpatrick group and every device
group with at least ``min_group`` images; smaller groups are listed but not
judged, because their figures are noise. With no active model yet, the floor
is chance: the candidate's 95 % bootstrap interval on its test split must lie
above what predicting one class for everything scores. The whole table is shown to the user
and stored in the audit entry of the promotion.

No torch here (ONNX Runtime and numpy): the GUI runs this directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dermdesk.inference.predictor import (
    OnnxClassifier,
    as_rows,
    check_model_file,
    iter_predictions,
)
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.model_store import (
    active_model,
    get_model,
    predictions_for,
    seen_images,
    set_active,
    store_predictions,
)
from dermdesk.ml import metrics
from dermdesk.ml.groups import device_name, fitzpatrick_group

MIN_GROUP = 30
MARGIN = 0.0


@dataclass
class GroupCheck:
    grouping: str  # overall, fitzpatrick, device
    group: str
    n: int
    candidate: float | None
    active: float | None
    verdict: str  # ok, worse, not judged (too few images)

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.active is None:
            return None
        return self.candidate - self.active


@dataclass
class PromotionCheck:
    candidate_id: str
    active_id: str | None
    images: int
    min_group: int
    margin: float
    passed: bool
    reason: str
    rows: list[GroupCheck] = field(default_factory=list)
    chance: float | None = None  # the floor when there is no active model
    interval: list[float] | None = None  # the candidate's 95 % interval against that floor

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rule"] = rule_text(self.min_group, self.margin)
        return out

    def lines(self) -> list[str]:
        """The rule, the table of numbers and the verdict, for the user."""
        out = [f"rule: {rule_text(self.min_group, self.margin)}"]
        if self.active_id is None:
            if self.chance is not None and self.rows:
                row = self.rows[0]
                ci = self.interval
                shown = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
                out.append(
                    f"no active model: judged against chance on {row.n} test images of "
                    f"{self.candidate_id}"
                )
                out.append(
                    f"balanced accuracy {_f(row.candidate)}{shown} vs chance {self.chance:.3f}"
                )
            return [*out, f"verdict: {self.reason}"]
        out.append(
            f"compared on {self.images} test images of {self.candidate_id} that "
            f"{self.active_id} never trained on (balanced accuracy)"
        )
        out.append(f"{'group':<28} {'n':>5} {'candidate':>9} {'active':>7} {'change':>7}  verdict")
        for r in self.rows:
            delta = "" if r.delta is None else f"{r.delta:+.3f}"
            out.append(
                f"{r.grouping + ': ' + r.group:<28} {r.n:>5} {_f(r.candidate):>9} "
                f"{_f(r.active):>7} {delta:>7}  {r.verdict}"
            )
        out.append(f"verdict: {self.reason}")
        return out


def rule_text(min_group: int, margin: float) -> str:
    slack = f" - {margin:.3f}" if margin else ""
    return (
        f"promote only if balanced accuracy >= active{slack} overall and in every "
        f"Fitzpatrick and device group with >= {min_group} images; with no active model, "
        "only if its 95 % interval is above chance"
    )


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def balanced_accuracy_labels(y: Sequence[str], pred: Sequence[str]) -> float | None:
    """Balanced accuracy over string labels (models may have different class lists)."""
    y_arr, p_arr = np.asarray(y, dtype=object), np.asarray(pred, dtype=object)
    recalls = [float(np.mean(p_arr[y_arr == c] == c)) for c in sorted(set(y_arr.tolist()))]
    return float(np.mean(recalls)) if recalls else None


def check_promotion(
    lib: Library,
    candidate_id: str,
    *,
    min_group: int = MIN_GROUP,
    margin: float = MARGIN,
    batch_size: int = 32,
) -> PromotionCheck:
    """Apply the rule; predicts (and stores) whatever predictions are missing."""
    candidate = get_model(lib, candidate_id)
    if candidate["kind"] != "classifier":
        raise LibraryError(
            f"model {candidate['id']} is a {candidate['kind']}, not a classifier: it predicts "
            f"nothing (fine-tune one from it: dermdesk train finetune --from {candidate['id']})"
        )
    active = active_model(lib, candidate["kind"])
    if active is not None and active["id"] == candidate["id"]:
        return PromotionCheck(
            candidate["id"], None, 0, min_group, margin, True, "already the active model"
        )
    if active is None:
        return _floor_check(lib, candidate, min_group, margin, batch_size)
    ids = _comparison_images(lib, candidate, active)
    rows = {r["id"]: r for r in lib.images(ImageFilter(ids=ids))} if ids else {}
    common = set(_classes(candidate)) & set(_classes(active))
    ids = [i for i in ids if i in rows and rows[i]["diagnosis"] in common]
    if not ids:
        return PromotionCheck(
            candidate["id"],
            active["id"],
            0,
            min_group,
            margin,
            False,
            "no test images both models can be compared on: not promoted",
        )
    pred_c = _top_classes(lib, candidate, ids, batch_size)
    pred_a = _top_classes(lib, active, ids, batch_size)
    checks = _group_checks(ids, rows, pred_c, pred_a, min_group, margin)
    worse = [c for c in checks if c.verdict == "worse"]
    reason = (
        "passed: not worse overall or in any judged group"
        if not worse
        else "not promoted: worse in " + ", ".join(f"{c.grouping} {c.group}" for c in worse)
    )
    return PromotionCheck(
        candidate["id"], active["id"], len(ids), min_group, margin, not worse, reason, checks
    )


def _floor_check(
    lib: Library, candidate: dict[str, Any], min_group: int, margin: float, batch_size: int
) -> PromotionCheck:
    """With no active model the rule still holds a floor: the candidate's balanced
    accuracy on its own test split must beat chance (one class for everything) with its
    whole 95 % bootstrap interval."""
    ids = list(((candidate.get("training_set") or {}).get("split") or {}).get("test") or [])
    if not ids:
        raise LibraryError(f"model {candidate['id']} has no held-out test images to judge it on")
    classes = _classes(candidate)
    rows = {r["id"]: r for r in lib.images(ImageFilter(ids=ids))}
    ids = [i for i in ids if i in rows and rows[i]["diagnosis"] in classes]
    pred = _top_classes(lib, candidate, ids, batch_size)
    ids = [i for i in ids if i in pred]
    check = PromotionCheck(candidate["id"], None, len(ids), min_group, margin, False, "")
    if not ids:
        check.reason = "no labelled test images to judge it on: not promoted"
        return check
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[rows[i]["diagnosis"]] for i in ids])
    onehot = np.eye(len(classes))[[index[pred[i]] for i in ids]]
    value = metrics.balanced_accuracy(y, onehot)
    ci = metrics.bootstrap_ci(metrics.balanced_accuracy, y, onehot, n_boot=1000, seed=0)
    check.chance = 1.0 / len(set(y.tolist()))
    check.interval = list(ci) if ci else None
    check.rows = [GroupCheck("overall", "all", len(ids), value, None, "")]
    if ci is not None and ci[0] > check.chance:
        check.passed = True
        check.reason = (
            f"passed the floor (no active model yet): balanced accuracy {_f(value)} "
            f"[{ci[0]:.3f}, {ci[1]:.3f}] is above chance {check.chance:.3f}"
        )
    else:
        shown = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "(no interval: too few images)"
        check.reason = (
            f"not promoted: balanced accuracy {_f(value)} {shown} does not clear chance "
            f"{check.chance:.3f} (no active model yet, so the floor is chance)"
        )
    check.rows[0].verdict = "ok" if check.passed else "worse than chance"
    return check


def promote(
    lib: Library, candidate_id: str, *, force: bool = False, **kwargs: Any
) -> PromotionCheck:
    """Check the rule and make the candidate active if it passes (or ``force``)."""
    check = check_promotion(lib, candidate_id, **kwargs)
    if check.passed or force:
        record = check.to_json()
        record["forced"] = force and not check.passed
        set_active(lib, check.candidate_id, reason=record)
    return check


def _classes(model: dict[str, Any]) -> list[str]:
    classes = (model.get("training_set") or {}).get("classes")
    if not classes:
        raise LibraryError(f"model {model['id']} does not record its classes")
    return list(classes)


def _comparison_images(
    lib: Library, candidate: dict[str, Any], active: dict[str, Any]
) -> list[str]:
    """The candidate's test images that neither model nor any model either was made from
    learnt from or was chosen on (``model_store.seen_images``)."""
    split = (candidate.get("training_set") or {}).get("split") or {}
    test = list(split.get("test") or [])
    if not test:
        raise LibraryError(f"model {candidate['id']} has no held-out test images to compare on")
    exclude = seen_images(lib, active).keys() | seen_images(lib, candidate).keys()
    return [i for i in test if i not in exclude]


def _top_classes(
    lib: Library, model: dict[str, Any], ids: list[str], batch_size: int
) -> dict[str, str]:
    stored = predictions_for(lib, model["id"], ids)
    missing = [i for i in ids if i not in stored]
    if missing:
        path = lib.root / model["file"]
        check_model_file(model["id"], path, model.get("sha256"))
        onnx = OnnxClassifier(path)
        rows = {r["id"]: r for r in lib.images(ImageFilter(ids=missing))}
        items = [(i, lib.original_path(rows[i])) for i in missing]
        for batch_ids, probs in iter_predictions(onnx, items, batch_size=batch_size):
            batch_rows = as_rows(onnx.classes, batch_ids, probs)
            store_predictions(lib, model["id"], batch_rows)
            stored.update(dict(batch_rows))
    return {i: max(p, key=p.__getitem__) for i, p in stored.items() if i in set(ids)}


def _group_checks(
    ids: list[str],
    rows: dict[str, dict[str, Any]],
    pred_c: dict[str, str],
    pred_a: dict[str, str],
    min_group: int,
    margin: float,
) -> list[GroupCheck]:
    ids = [i for i in ids if i in pred_c and i in pred_a]
    groupings = {
        "overall": {i: "all" for i in ids},
        "fitzpatrick": {i: fitzpatrick_group(rows[i]["fitzpatrick"]) for i in ids},
        "device": {i: device_name(rows[i]) for i in ids},
    }
    checks = []
    for grouping, label in groupings.items():
        for group in sorted(set(label.values())):
            members = [i for i in ids if label[i] == group]
            y = [rows[i]["diagnosis"] for i in members]
            c = balanced_accuracy_labels(y, [pred_c[i] for i in members])
            a = balanced_accuracy_labels(y, [pred_a[i] for i in members])
            judged = grouping == "overall" or len(members) >= min_group
            if not judged:
                verdict = f"not judged (< {min_group} images)"
            elif c is not None and a is not None and c < a - margin:
                verdict = "worse"
            else:
                verdict = "ok"
            checks.append(GroupCheck(grouping, group, len(members), c, a, verdict))
    return checks
