"""Small job tasks for the runner tests (imported by the spawned workers)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from dermdesk.jobs.context import JobCancelled, JobContext


def counting(ctx: JobContext) -> dict[str, Any]:
    """Counts to ``steps``, checkpointing the count; resumes from the checkpoint."""
    steps, delay = int(ctx.params.get("steps", 5)), float(ctx.params.get("delay", 0.05))
    ckpt = ctx.work_dir / "count.json"
    start = json.loads(ckpt.read_text())["i"] if ctx.resume or ckpt.exists() else 0
    ctx.log(f"counting from {start} to {steps}")
    for i in range(start, steps):
        if ctx.should_stop():
            raise JobCancelled(f"cancelled at {i}")
        time.sleep(delay)
        tmp = ckpt.with_suffix(".part")  # atomic, like real checkpoints: the test kills us
        tmp.write_text(json.dumps({"i": i + 1}))
        os.replace(tmp, ckpt)
        (ctx.work_dir / "checkpoint.pt").write_text("marker: a checkpoint exists")
        ctx.progress((i + 1) / steps, f"step {i + 1}")
    return {"message": f"counted to {steps}", "started_from": start}


def crashing(ctx: JobContext) -> dict[str, Any]:
    ctx.log("about to fail")
    raise ValueError("broken input: boom")


def vanishing(ctx: JobContext) -> dict[str, Any]:
    ctx.log("exiting without a word")
    os._exit(3)


def predicting(ctx: JobContext) -> dict[str, Any]:
    """Asks the runner to store predictions (workers never write to the library)."""
    ctx.request_write(
        "predictions",
        {
            "model_id": ctx.params["model_id"],
            "rows": [[ctx.params["image_id"], {"MEL": 0.9, "NEV": 0.1}]],
        },
    )
    return {"message": "asked"}


def needs_missing_training_module(ctx: JobContext) -> dict[str, Any]:
    """Imports a training-stack module that is not installed (as without the [ml] extra)."""
    import importlib

    importlib.import_module("torch.no_such_submodule_in_this_install")
    return {}
