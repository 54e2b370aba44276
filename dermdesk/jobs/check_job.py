"""The ``check`` job: (re)run the quality checker over library images in a worker.

The worker only reads the library; each batch of assessments goes to the
runner, which stores it (the runner is the library's writer), so a cancelled
or failed job keeps every batch it finished. Params: ``stale`` (true: only the
images never checked or checked by another checker version) and ``filter``
(ImageFilter fields; default: the whole library).
"""

from __future__ import annotations

import threading
from typing import Any

from dermdesk.imaging.quality import CHECKER_VERSION, Assessment
from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import ImageFilter, Library
from dermdesk.library.checking import check_items, iter_assessments
from dermdesk.library.quality_store import image_ids, stale_ids

BATCH = 100  # assessments per write request: a few seconds of work, one transaction


def run_job(ctx: JobContext) -> dict[str, Any]:
    params = ctx.params
    with Library.open(ctx.library_dir, readonly=True) as lib:
        flt = ImageFilter(**params.get("filter", {}))
        ids = stale_ids(lib, flt) if params.get("stale") else image_ids(lib, flt)
        items = check_items(lib, ids)
    ctx.log(f"checking {len(items)} images with checker {CHECKER_VERSION}")
    cancel = threading.Event()
    batch: list[tuple[str, Assessment]] = []
    done, unreadable = 0, 0
    for image_id, assessment in iter_assessments(items, cancel=cancel):
        done += 1
        first = assessment.checks[0]
        if first.check == "readable":
            unreadable += 1
            ctx.log(f"image {image_id[:12]}: {first.reason}")
        batch.append((image_id, assessment))
        if len(batch) >= BATCH:
            ctx.request_write("assessments", {"items": batch})
            batch = []
        ctx.progress(done / max(1, len(items)), f"{done} of {len(items)} images")
        if ctx.should_stop():
            cancel.set()
    if batch:
        ctx.request_write("assessments", {"items": batch})
    if cancel.is_set() and done < len(items):
        raise JobCancelled(f"cancelled after {done} of {len(items)} images (their findings kept)")
    return {
        "message": f"checked {done} images with checker {CHECKER_VERSION}"
        + (f", {unreadable} unreadable" if unreadable else ""),
        "checked": done,
        "unreadable": unreadable,
    }
