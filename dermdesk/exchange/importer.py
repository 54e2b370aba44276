"""Run an import: ingest files in parallel, then add rows through the single writer.

Files are hashed, checked, thumbnailed and stored by a pool of spawned worker
processes (the quality checks and EXIF parsing are Python and numpy code that
holds the GIL, so threads would not use the cores); small imports use threads,
which start at once. Workers write only content-addressed files; rows are
written by the calling thread in batches, each batch one transaction, so a
killed import keeps every finished batch and leaves only orphan files
(collected by ``verify --repair``) behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import wait as wait_for_ready
from pathlib import Path
from typing import Any

from dermdesk.exchange.ingest import AlreadyStored, StoreFull, ingest_file, ingest_mask
from dermdesk.imaging.decode import ImageRejected
from dermdesk.library.db import LibraryDiskFull, LibraryError
from dermdesk.library.library import Library
from dermdesk.library.records import (
    ImageRecord,
    LabelIn,
    LesionRef,
    PatientRef,
    SkinToneIn,
    StoredFile,
)
from dermdesk.library.store import Store


@dataclass
class ImportItem:
    """One file to import and what is known about it."""

    path: Path
    where: str  # how to name it in messages: a path, or "metadata.csv row 12"
    modality: str | None = "clinical"  # None: detected from the pixels
    dataset: str | None = None
    dataset_image_id: str | None = None
    patient: PatientRef | None = None
    lesion: LesionRef | None = None
    label: LabelIn | None = None
    skin_tones: list[SkinToneIn] = field(default_factory=list)
    mask_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)  # overrides the file's EXIF
    source: str = "import"


@dataclass
class ImportReport:
    """Outcome of an import: every item is added, already present, or refused with a reason."""

    added: list[str] = field(default_factory=list)
    existing: list[tuple[str, str]] = field(default_factory=list)  # (where, image id)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    warnings: list[str] = field(default_factory=list)
    # Added images whose modality the detector could not decide (stored as 'unsure' with
    # its guess): the user is told how many, and `ls --modality-method unsure` lists them.
    modality_unsure: list[str] = field(default_factory=list)
    cancelled: bool = False
    interrupted: bool = False  # stopped by Ctrl-C (what was stored before is kept)
    disk_full: bool = False  # stopped because the library's disk is full

    @property
    def total(self) -> int:
        return len(self.added) + len(self.existing) + len(self.refused)

    def merge(self, other: ImportReport) -> None:
        self.added += other.added
        self.existing += other.existing
        self.refused += other.refused
        self.warnings += other.warnings
        self.modality_unsure += other.modality_unsure
        self.cancelled = self.cancelled or other.cancelled

    def summary(self) -> str:
        text = (
            f"{len(self.added)} added, {len(self.existing)} already in library, "
            f"{len(self.refused)} refused"
        )
        if self.modality_unsure:
            text += (
                f"; modality undecided for {len(self.modality_unsure)} (stored as unsure with "
                "the detector's guess: set them with `dermdesk edit` or list them with "
                "`dermdesk ls --modality-method unsure`)"
            )
        if self.disk_full:
            return text + " (stopped: the disk is full; free some space and run it again)"
        if self.interrupted:
            return text + " (interrupted: run the same import again to finish it)"
        return text + (" (cancelled)" if self.cancelled else "")


@dataclass(frozen=True)
class ImportProgress:
    done: int
    total: int
    added: int
    refused: int


ProgressFn = Callable[[ImportProgress], None]


def run_import(
    lib: Library,
    items: Iterable[ImportItem],
    *,
    workers: int | None = None,
    batch_size: int = 200,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    checks: bool = True,
) -> ImportReport:
    """Import ``items`` into ``lib``; never raises for a bad file, only reports it.

    With ``checks`` (the default) every new image is quality-checked from the same
    decode that makes its thumbnail, and the findings, skin-tone estimate and hash
    are stored with its row; items without a modality get the detected one.

    While it runs the store marks it as a writer (``Store.writing``), so ``verify``
    does not call its files lost before their rows are written."""
    with lib.store.writing("import"):
        return _run_import(lib, list(items), workers, batch_size, progress, cancel, checks)


def _run_import(
    lib: Library,
    items: list[ImportItem],
    workers: int | None,
    batch_size: int,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
    checks: bool,
) -> ImportReport:
    report = ImportReport()
    known = frozenset(lib.known_ids())
    cancel = cancel or threading.Event()
    workers = workers or os.cpu_count() or 1
    pending: list[tuple[ImportItem, StoredFile, str | None]] = []
    done = 0

    def flush() -> None:
        if pending:
            _write_batch(lib, pending, report)
            pending.clear()

    pool, ingest = _pool(len(items), workers, lib.store.root, known, checks)
    running: dict[Future[Any], ImportItem] = {}
    queue = iter(items)  # what is left to submit
    try:
        with pool:
            # Keep a bounded number of files in flight so memory stays flat on huge imports.

            def top_up() -> None:
                while len(running) < workers * 4 and not cancel.is_set():
                    item = next(queue, None)
                    if item is None:
                        return
                    try:
                        running[pool.submit(ingest, item)] = item
                    except BrokenExecutor:  # a worker died (e.g. a crashing decoder)
                        for rest in (item, *queue):
                            report.refused.append((rest.where, WORKER_DIED))
                        return

            try:
                top_up()
                while running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        item = running.pop(fut)
                        done += 1
                        _collect(fut, item, pending, report)
                    if len(pending) >= batch_size:
                        flush()
                    if report.disk_full:
                        cancel.set()  # nothing more fits: stop submitting
                    if progress:
                        progress(
                            ImportProgress(
                                done,
                                len(items),
                                len(report.added) + len(pending),
                                len(report.refused),
                            )
                        )
                    top_up()
            except KeyboardInterrupt:
                # Ctrl-C: files not started are dropped (the pool would otherwise work
                # through all it was given before leaving); the few running finish.
                cancel.set()
                report.interrupted = True
                for fut in running:
                    fut.cancel()
    except KeyboardInterrupt:  # a second Ctrl-C while the running files finish
        cancel.set()
        report.interrupted = True
    if report.interrupted:
        # Those the pool stored get their rows too: an interrupted import leaves no
        # original without a row.
        for fut, item in running.items():
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                _collect(fut, item, pending, report)
    flush()
    if report.disk_full:  # every file never tried is named, one line each
        report.refused += [(item.where, DISK_FULL) for item in queue]
    report.cancelled = cancel.is_set() and done < len(items) and not report.disk_full
    return report


WORKER_DIED = "not imported: an import worker process died; run the import again"
DISK_FULL = "not imported: the disk holding the library is full"
# Worker processes start in about a second (imports of Pillow, OpenCV, numpy);
# below this many files a thread pool finishes first.
PROCESS_MIN_ITEMS = 48
_WORKER: dict[str, Any] = {}


def _pool(
    n_items: int, workers: int, root: Path, known: frozenset[str], checks: bool
) -> tuple[Executor, Callable[[ImportItem], Any]]:
    """Processes for big imports with quality checks (that work is largely Python and
    numpy code holding the GIL, so threads would not use the cores), threads otherwise:
    hashing, decoding and file writes release the GIL, and a thread pool skips the
    workers' start-up (866 reference images without checks: threads 0.87 s, processes
    1.13 s; with checks: threads 16.1 s, processes 13.6 s)."""
    if workers > 1 and checks and n_items >= PROCESS_MIN_ITEMS:
        pool: Executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a GUI or CUDA process
            initializer=_init_worker,
            initargs=(root, known, checks),
        )
        return pool, _ingest_in_worker
    threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
    return threads, partial(_ingest_one, store=Store(root), known=known, checks=checks)


def _init_worker(root: Path, known: frozenset[str], checks: bool) -> None:
    _WORKER.update(store=Store(root), known=known, checks=checks)
    # Ctrl-C reaches the whole process group; the parent alone acts on it (it drops the
    # files not started and lets the running ones finish). A worker interrupted in the
    # middle of taking its next task could leave the pool's queue locked for good.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()


def exit_with_parent() -> None:
    """End this worker process as soon as the process that started it is gone (killed
    with SIGKILL, say): a pool's workers would otherwise live on for minutes, ~90 MB
    each. A daemon thread waits on the parent's sentinel, which works on every OS."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait_for_ready([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ingest_in_worker(item: ImportItem) -> tuple[StoredFile | AlreadyStored, str | None]:
    return _ingest_one(item, _WORKER["store"], _WORKER["known"], _WORKER["checks"])


def _ingest_one(
    item: ImportItem, store: Store, known: frozenset[str], checks: bool
) -> tuple[StoredFile | AlreadyStored, str | None]:
    stored = ingest_file(item.path, store, known, checks=checks, modality=item.modality)
    mask = None
    if item.mask_path is not None and isinstance(stored, StoredFile):
        try:
            mask = ingest_mask(item.mask_path, stored.sha256, store)
        except ImageRejected as exc:
            raise ImageRejected(f"lesion mask {item.mask_path.name}: {exc}") from exc
    return stored, mask


def _collect(
    fut: Future[Any],
    item: ImportItem,
    pending: list[tuple[ImportItem, StoredFile, str | None]],
    report: ImportReport,
) -> None:
    try:
        stored, mask = fut.result()
    except StoreFull as exc:
        report.refused.append((item.where, str(exc)))
        report.disk_full = True
        return
    except ImageRejected as exc:
        report.refused.append((item.where, str(exc)))
        return
    except Exception as exc:  # an unexpected decoder failure must not stop the import
        report.refused.append((item.where, f"unexpected error: {type(exc).__name__}: {exc}"))
        return
    if isinstance(stored, AlreadyStored):
        report.existing.append((item.where, stored.sha256))
    else:
        pending.append((item, stored, mask))


def _take_back(store: Store, batch: list[tuple[ImportItem, StoredFile, str | None]]) -> None:
    for _, stored, mask in batch:
        if stored.new_file:
            for rel in (stored.file, store.thumb_rel(stored.sha256), mask):
                if rel:
                    with contextlib.suppress(OSError):
                        store.path(rel).unlink()


def _write_batch(
    lib: Library, batch: list[tuple[ImportItem, StoredFile, str | None]], report: ImportReport
) -> None:
    records = [_record(item, stored, mask) for item, stored, mask in batch]
    try:
        results = lib.add_images(records)
    except LibraryError as exc:
        # The batch's rows were rolled back as a whole: take back the files this import
        # added for them (copies of files the user still has where they were imported
        # from), so the library holds no original without its row.
        _take_back(lib.store, batch)
        if isinstance(exc, LibraryDiskFull):
            report.disk_full = True
            report.refused += [(item.where, DISK_FULL) for item, _, _ in batch]
        else:
            report.refused += [(item.where, f"not added: {exc}") for item, _, _ in batch]
        return
    for (item, _, _), rec, (status, sha) in zip(batch, records, results, strict=True):
        if status == "added":
            report.added.append(sha)
            if rec.modality_method == "unsure":
                report.modality_unsure.append(sha)
        else:
            report.existing.append((item.where, sha))


def _record(item: ImportItem, stored: StoredFile, mask: str | None) -> ImageRecord:
    if item.device:
        stored.device = {**stored.device, **item.device}
    modality, method = item.modality, "recorded"
    if modality is None:  # plain photos without --modality: what the pixels say
        guess = stored.quality.modality if stored.quality is not None else None
        modality = guess.modality if guess is not None else "clinical"
        method = "detected" if guess is not None and guess.sure else "unsure"
    return ImageRecord(
        stored=stored,
        modality=modality,
        modality_method=method,
        source=item.source,
        dataset=item.dataset,
        dataset_image_id=item.dataset_image_id,
        original_name=item.path.name,
        patient=item.patient,
        lesion=item.lesion,
        label=item.label,
        skin_tones=item.skin_tones,
        mask_file=mask,
        extra=item.extra,
    )
