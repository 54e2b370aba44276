"""The ``predict`` job: run a registered model over a library query in a worker.

The worker only reads the library; each batch of probabilities goes to the
runner, which stores it (the runner is the library's writer).
Params: ``model`` (id, prefix, name or ``active``), ``filter`` (ImageFilter
fields), ``batch_size``, ``int8``.
"""

from __future__ import annotations

from typing import Any

from dermdesk.inference.predictor import (
    DEFAULT_BATCH,
    OnnxClassifier,
    PredictReport,
    as_rows,
    iter_predictions,
    load_registered,
    model_items,
)
from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import ImageFilter, Library


def run_job(ctx: JobContext) -> dict[str, Any]:
    params = ctx.params
    with Library.open(ctx.library_dir, readonly=True) as lib:
        model_row, path = load_registered(
            lib, str(params.get("model", "active")), int8=bool(params.get("int8"))
        )
        items = model_items(lib, ImageFilter(**params.get("filter", {})))
    model = OnnxClassifier(path)
    ctx.log(f"predicting {len(items)} images with {model_row['id']} ({path.name})")
    report = PredictReport()
    done = 0
    for ids, probs in iter_predictions(
        model,
        items,
        batch_size=int(params.get("batch_size", DEFAULT_BATCH)),
        report=report,
        should_stop=ctx.should_stop,
    ):
        ctx.request_write(
            "predictions", {"model_id": model_row["id"], "rows": as_rows(model.classes, ids, probs)}
        )
        done += len(ids)
        ctx.progress((done + len(report.failed)) / max(1, len(items)), f"{done} images")
    if report.cancelled:
        raise JobCancelled(f"cancelled after {done} of {len(items)} images")
    for image_id, reason in report.failed[:20]:
        ctx.log(f"image {image_id[:12]}: skipped: {reason}")
    return {
        "message": f"predicted {done} images, {len(report.failed)} unreadable",
        "model_id": model_row["id"],
        "predicted": done,
        "failed": len(report.failed),
    }
