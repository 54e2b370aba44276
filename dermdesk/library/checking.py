"""(Re)run the quality checker over images already in the library.

Originals are decoded and checked on a thread pool (OpenCV and Pillow
release the GIL for their heavy loops); findings are written by the calling
thread in batches, each one transaction, like an import. Used by
``dermdesk check`` and by the GUI's "re-check" action.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
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
    workers = workers or os.cpu_count() or 1
    jobs = _jobs(lib, image_ids)
    pending: list[tuple[str, Assessment]] = []
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check") as pool:
        queue = iter(jobs)
        running: dict[Future[Assessment], str] = {}

        def top_up() -> None:
            while len(running) < workers * 4 and not cancel.is_set():
                job = next(queue, None)
                if job is None:
                    return
                image_id, (path, modality) = job
                running[pool.submit(assess, path, modality)] = image_id

        top_up()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                image_id = running.pop(fut)
                done += 1
                result = fut.result()
                readable = result.checks[0]
                if readable.check == "readable":
                    report.unreadable.append((image_id, readable.reason))
                pending.append((image_id, result))
            if len(pending) >= batch_size:
                save_assessments(lib, pending)
                report.checked += len(pending)
                pending.clear()
            if progress:
                progress(done, len(jobs))
            top_up()
    save_assessments(lib, pending)
    report.checked += len(pending)
    report.cancelled = cancel.is_set() and done < len(jobs)
    return report


def _jobs(lib: Library, image_ids: Sequence[str]) -> list[tuple[str, tuple[Path, str | None]]]:
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
