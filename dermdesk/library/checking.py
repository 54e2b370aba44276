"""(Re)run the quality checker over images already in the library.

Originals are decoded and checked on a thread pool (OpenCV and Pillow
release the GIL for their heavy loops). :func:`check_images` writes the
findings from the calling thread in batches, each one transaction, like an
import (``dermdesk check``); the ``check`` job (:mod:`dermdesk.jobs.check_job`,
the GUI's re-check) runs :func:`iter_assessments` in a worker process and
hands each batch to the job runner, the library's writer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from dermdesk.imaging.quality import Assessment, assess
from dermdesk.library.library import Library
from dermdesk.library.quality_store import save_assessments

CheckProgressFn = Callable[[int, int], None]


@dataclass
class CheckReport:
    checked: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    cancelled: bool = False


def check_images(
    lib: Library,
    image_ids: Sequence[str],
    *,
    workers: int | None = None,
    batch_size: int = 200,
    progress: CheckProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> CheckReport:
    """Check the given images and store their findings; returns what happened."""
    report = CheckReport()
    cancel = cancel or threading.Event()
    items = check_items(lib, image_ids)
    pending: list[tuple[str, Assessment]] = []
    for done, (image_id, result) in enumerate(
        iter_assessments(items, workers=workers, cancel=cancel), 1
    ):
        if result.checks[0].check == "readable":
            report.unreadable.append((image_id, result.checks[0].reason))
        pending.append((image_id, result))
        if len(pending) >= batch_size:
            save_assessments(lib, pending)
            report.checked += len(pending)
            pending.clear()
        if progress:
            progress(done, len(items))
    save_assessments(lib, pending)
    report.checked += len(pending)
    report.cancelled = cancel.is_set() and report.checked < len(items)
    return report


CheckItem = tuple[str, tuple[Path, str | None]]


def iter_assessments(
    items: Sequence[CheckItem], *, workers: int | None = None, cancel: threading.Event
) -> Iterator[tuple[str, Assessment]]:
    """Assess each ``(image id, (path, modality))`` on a thread pool, a few images ahead;
    yields ``(image id, assessment)`` as they finish. Stops starting new images once
    ``cancel`` is set (the ones already running still come out)."""
    workers = workers or os.cpu_count() or 1
    queue = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check") as pool:
        running: dict[Future[Assessment], str] = {}

        def top_up() -> None:
            while len(running) < workers * 4 and not cancel.is_set():
                item = next(queue, None)
                if item is None:
                    return
                image_id, (path, modality) = item
                running[pool.submit(assess, path, modality)] = image_id

        top_up()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield running.pop(fut), fut.result()
            top_up()


def check_items(lib: Library, image_ids: Sequence[str]) -> list[CheckItem]:
    """(image id, (original's path, recorded modality or None for 'other')) per image."""
    rows: dict[str, tuple[str, str]] = {}
    ids = list(image_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for image_id, file, modality in lib.conn.execute(
            f"SELECT id, file, modality FROM image WHERE id IN ({marks})", chunk
        ):
            rows[image_id] = (file, modality)
    return [
        (
            i,
            (
                lib.store.path(rows[i][0]),
                rows[i][1] if rows[i][1] in ("clinical", "dermoscopic") else None,
            ),
        )
        for i in ids
        if i in rows
    ]
