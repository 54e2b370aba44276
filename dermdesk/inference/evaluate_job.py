"""The ``evaluate`` job: score a registered model on a library query and keep the report.

This is how a clinic learns whether a model (its own or one it was given) works on
its patients before trusting it: the model's ONNX file predicts every image of the
query (ONNX Runtime, no torch), and the labels the images carry give balanced
accuracy, AUROC, calibration and per-class figures with bootstrap intervals, overall
and per rated skin type, device, modality and domain. The runner stores the report
with the model (``model_store.store_evaluation``), with the exact image ids.

Params: ``model`` (id, prefix, name or ``active``), ``filter`` (ImageFilter fields),
``name`` (optional words for the query), ``tones`` (``rated`` or
``rated_or_estimated``), ``n_boot``, ``min_group``, ``batch_size``, ``include_seen``.

Images the model (or a model it was made from) trained or was validated on are left out
of the scoring and counted in the report as ``left_out_seen``: a clinic filtering on
"our images" would otherwise score the model partly on its own training set and read
flattering figures. ``include_seen`` scores them anyway, and the report says how many
(``includes_seen``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dermdesk.inference.predictor import (
    DEFAULT_BATCH,
    OnnxClassifier,
    PredictReport,
    iter_predictions,
    load_registered,
)
from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import ImageFilter, Library
from dermdesk.library.browse import seen_note
from dermdesk.library.db import LibraryError
from dermdesk.library.model_store import seen_images
from dermdesk.ml import metrics
from dermdesk.ml.groups import (
    TONE_GROUPINGS,
    device_name,
    domain_name,
    fitzpatrick_group,
    fitzpatrick_of,
)

MIN_GROUP = 10  # groups smaller than this get their count only


def query_rows(lib: Library, flt: ImageFilter) -> list[dict[str, Any]]:
    """Every image row of the query, by id (so a rerun scores the same order)."""
    return lib.images(flt, order="id")


def split_seen(
    lib: Library,
    model: Mapping[str, Any],
    rows: Sequence[dict[str, Any]],
    what: str,
    *,
    include_seen: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """The rows to score and how many of the query's rows the model learnt from or was
    chosen on (``model_store.seen_images``): those are left out unless ``include_seen``,
    and a query made only of them is refused, naming the way to score them anyway."""
    seen = seen_images(lib, model)
    n_seen = sum(1 for r in rows if r["id"] in seen)
    if include_seen:
        return list(rows), n_seen
    if rows and n_seen == len(rows):
        raise LibraryError(
            f"all {len(rows)} images of the query ({what}) are training or validation images "
            f"of {model['id']} or of the models it was made from; scoring them would flatter "
            "it (models evaluate --include-seen, or the Models tab's 'Include its own training "
            "images', scores them anyway)"
        )
    return [r for r in rows if r["id"] not in seen], n_seen


def check_scorable(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], what: str) -> None:
    """Refuse a query the model cannot be scored on, naming what is missing."""
    if not rows:
        raise LibraryError(f"the query ({what}) matches no images")
    labelled = [r for r in rows if r.get("diagnosis") in classes]
    if not labelled:
        found = sorted({str(r["diagnosis"]) for r in rows if r.get("diagnosis")})
        raise LibraryError(
            f"none of the {len(rows)} images of the query ({what}) is labelled with one of the "
            f"model's classes ({', '.join(classes)})"
            + (f"; their labels are {', '.join(found[:8])}" if found else "; none is labelled")
        )


def group_labels(rows: Sequence[Mapping[str, Any]], tones: str) -> dict[str, list[str]]:
    """Group of each row per grouping the report covers (as training's reports do)."""
    return {
        "fitzpatrick": [fitzpatrick_group(fitzpatrick_of(r, tones)) for r in rows],
        "device": [device_name(r) for r in rows],
        "modality": [str(r["modality"]) for r in rows],
        "domain": [domain_name(str(r["modality"]), r.get("dataset")) for r in rows],
        "meta_domain": [str(r.get("meta_domain") or "unassigned") for r in rows],
    }


def score(
    rows: Sequence[Mapping[str, Any]],
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    tones: str = "rated",
    n_boot: int = metrics.DEFAULT_BOOTSTRAP,
    min_group: int = MIN_GROUP,
) -> dict[str, Any]:
    """The report for scored rows: overall and per group; images whose label is not one
    of the model's classes are counted as ``skipped_unknown_label``."""
    index = {code: i for i, code in enumerate(classes)}
    y = np.array([index.get(str(r.get("diagnosis")), -1) for r in rows], dtype=np.int64)
    report = metrics.evaluate_groups(
        y,
        probs,
        classes,
        group_labels(rows, tones),
        min_n=min_group,
        malignant="MEL" if "MEL" in classes else None,
        n_boot=n_boot,
    )
    report["tones"] = tones
    return report


def run_job(ctx: JobContext) -> dict[str, Any]:
    params = ctx.params
    flt = ImageFilter(**params.get("filter", {}))
    what = str(params.get("name") or flt.describe())
    tones = str(params.get("tones", "rated"))
    if tones not in TONE_GROUPINGS:
        raise LibraryError(f"tones must be one of {', '.join(TONE_GROUPINGS)}")
    with Library.open(ctx.library_dir, readonly=True) as lib:
        model_row, path = load_registered(lib, str(params.get("model", "active")))
        rows = query_rows(lib, flt)
        include_seen = bool(params.get("include_seen"))
        rows, n_seen = split_seen(lib, model_row, rows, what, include_seen=include_seen)
        items = [(r["id"], lib.original_path(r)) for r in rows]
    model = OnnxClassifier(path)
    check_scorable(rows, model.classes, what)
    ctx.log(f"evaluating {model_row['id']} on {len(rows)} images ({what})")
    if n_seen:
        ctx.log(
            f"{n_seen} images of the query are the model's training or validation images: "
            + ("scored anyway (asked)" if include_seen else "left out")
        )
    report = PredictReport()
    scored: dict[str, np.ndarray] = {}
    for ids, probs in iter_predictions(
        model,
        items,
        batch_size=int(params.get("batch_size", DEFAULT_BATCH)),
        report=report,
        should_stop=ctx.should_stop,
    ):
        scored.update(zip(ids, probs, strict=True))
        ctx.progress(0.95 * len(scored) / max(1, len(items)), f"{len(scored)} images")
    if report.cancelled:
        raise JobCancelled(f"cancelled after {len(scored)} of {len(items)} images; nothing stored")
    for image_id, reason in report.failed[:20]:
        ctx.log(f"image {image_id[:12]}: not scored: {reason}")
    kept = [r for r in rows if r["id"] in scored]
    check_scorable(kept, model.classes, what)
    result = score(
        kept,
        np.stack([scored[r["id"]] for r in kept]),
        model.classes,
        tones=tones,
        n_boot=int(params.get("n_boot", metrics.DEFAULT_BOOTSTRAP)),
        min_group=int(params.get("min_group", MIN_GROUP)),
    )
    result["unreadable"] = len(report.failed)
    result["includes_seen" if include_seen else "left_out_seen"] = n_seen
    ctx.request_write(
        "model_evaluation",
        {
            "model_id": model_row["id"],
            "name": what,
            "query": flt.as_params(),
            "image_ids": [r["id"] for r in kept],
            "report": result,
            "job_id": ctx.job_id,
        },
    )
    overall = result["overall"]
    return {
        "message": f"{model_row['id']} on {what}: {metrics.headline(overall)}"
        + (f"; {len(report.failed)} unreadable" if report.failed else "")
        + (f"; {seen_note(result)}" if n_seen else ""),
        "model_id": model_row["id"],
        "evaluated": overall["n"],
        "failed": len(report.failed),
    }
