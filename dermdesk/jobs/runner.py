"""The job runner: queue, start, watch, cancel and resume background jobs.

Plain Python, no Qt: the GUI creates one :class:`JobRunner` on its main thread
and calls :meth:`JobRunner.poll` from a 100 ms timer; the CLI calls
:meth:`JobRunner.wait`. Heavy work runs in a *spawned* worker process (CUDA
cannot be forked) that reports over a pipe; the runner is the only writer of
job rows and of what a job produces (model registration, predictions).

One job runs at a time per library, across processes: a job is claimed with
an atomic update that fails while another job is running. A cancel request is
a file (``jobs/<id>/cancel``), so any process can cancel any job. A worker
that dies without reporting (killed, crashed) is marked failed with its exit
status and crash log; its last checkpoint stays for a resume.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from dermdesk.errors import one_line
from dermdesk.jobs import kinds
from dermdesk.jobs.context import cancel_file, job_dir, pid_alive, process_started
from dermdesk.jobs.worker import CRASH_LOG, worker_main
from dermdesk.library import Library, LibraryBusyError, LibraryError, job_store
from dermdesk.library.experiment_store import store_run_result
from dermdesk.library.model_store import ModelRecord, store_evaluation, store_predictions
from dermdesk.library.quality_store import save_assessments

DB_FLUSH_INTERVAL_S = 0.5  # progress reaches the job row at most twice a second
KILL_AFTER_CANCEL_S = 60.0  # a worker that ignores a cancel this long is killed


@dataclass(frozen=True)
class JobEvent:
    """Something that happened to a job, for the GUI or the CLI to show.

    ``type`` is ``started``, ``progress``, ``log``, ``cancelling`` or
    ``finished`` (then ``status`` is done, failed or cancelled).
    """

    job_id: int
    type: str
    progress: float | None = None
    message: str | None = None
    status: str | None = None
    line: str | None = None


@dataclass
class _Running:
    job_id: int
    kind: str
    process: BaseProcess
    conn: Connection | None
    started: float = field(default_factory=time.monotonic)
    cancel_requested_at: float | None = None
    progress: float | None = None
    message: str | None = None
    log: list[str] = field(default_factory=list)
    outcome: tuple[str, Any] | None = None
    last_flush: float = 0.0
    dirty: bool = False
    writes: list[dict[str, Any]] = field(default_factory=list)  # asked for, not yet stored


class JobRunner:
    """Runs the library's queued jobs one at a time in spawned worker processes."""

    def __init__(
        self,
        library_dir: str | os.PathLike[str],
        *,
        actor: str | None = None,
        busy_timeout_s: float = 2.0,
    ) -> None:
        # A short busy timeout: poll() runs on the GUI thread and must not hang on a lock
        # another process holds; progress and results that cannot be written are retried.
        self.lib = Library.open(
            library_dir, create=False, actor=actor, busy_timeout_s=busy_timeout_s
        )
        self.library_dir = self.lib.root
        self._mp = multiprocessing.get_context("spawn")
        self._running: _Running | None = None

    # -- public API ----------------------------------------------------------------------------

    def submit(self, kind: str, params: Mapping[str, Any]) -> int:
        """Queue a job; it starts at a later :meth:`poll` when nothing else runs."""
        try:
            kinds.target_of(kind)
        except KeyError as exc:
            raise LibraryError(str(exc.args[0])) from None
        return job_store.create_job(self.lib, kind, params)

    def cancel(self, job_id: int) -> str:
        """Cancel a job: a queued one at once, a running one at its next check (seconds).

        Returns ``cancelled``, ``requested`` or the job's status if it has ended.
        """
        row = job_store.get_job(self.lib, job_id)
        if row["status"] == "queued" and job_store.cancel_queued(self.lib, job_id):
            return "cancelled"
        row = job_store.get_job(self.lib, job_id)
        if row["status"] != "running":
            return str(row["status"])
        flag = cancel_file(self.library_dir, job_id)
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()
        if self._running and self._running.job_id == job_id:
            self._running.cancel_requested_at = time.monotonic()
        job_store.update_progress(self.lib, job_id, None, "cancelling", [])
        return "requested"

    def resume(self, job_id: int) -> None:
        """Queue a failed or cancelled job again; it continues from its checkpoint."""
        job_store.requeue_job(self.lib, job_id)
        cancel_file(self.library_dir, job_id).unlink(missing_ok=True)

    def jobs(self, limit: int = 200) -> list[dict[str, Any]]:
        """Job rows, newest first (what a jobs panel lists)."""
        return self.lib.jobs(limit)

    def job(self, job_id: int) -> dict[str, Any]:
        """One job row with params and result decoded."""
        return job_store.get_job(self.lib, job_id)

    @property
    def busy(self) -> bool:
        """Whether this runner has a worker running."""
        return self._running is not None

    def poll(self) -> list[JobEvent]:
        """Drain the worker's messages, record them, start the next job. Never blocks."""
        events: list[JobEvent] = []
        if self._running is not None:
            events += self._drain(self._running)
            events += self._check_ended(self._running)
        if self._running is None:
            self._recover_stale()
            started = self._start_next()
            if started is not None:
                events.append(started)
        return events

    def wait(
        self,
        job_id: int,
        *,
        on_event: Callable[[JobEvent], None] | None = None,
        timeout_s: float | None = None,
        interval_s: float = 0.1,
    ) -> dict[str, Any]:
        """Run the queue until job ``job_id`` ends (even if another runner runs it)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            for event in self.poll():
                if on_event:
                    on_event(event)
            row = job_store.get_job(self.lib, job_id)
            if row["status"] in job_store.TERMINAL and not (
                self._running and self._running.job_id == job_id
            ):
                return row
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {row['status']} after {timeout_s} s")
            time.sleep(interval_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Cancel a running job (it checkpoints), wait for it, then close the library."""
        if self._running is not None:
            self.cancel(self._running.job_id)
            deadline = time.monotonic() + timeout_s
            while self._running is not None and time.monotonic() < deadline:
                self.poll()
                time.sleep(0.05)
            if self._running is not None:
                self._kill(self._running)
                self.poll()
        self.lib.close()

    # -- starting ------------------------------------------------------------------------------

    def _start_next(self) -> JobEvent | None:
        row = job_store.claim_next(self.lib, os.getpid(), process_started(os.getpid()))
        if row is None:
            return None
        job_id = int(row["id"])
        work = job_dir(self.library_dir, job_id)
        cancel_file(self.library_dir, job_id).unlink(missing_ok=True)
        try:
            target = kinds.target_of(row["kind"])
        except KeyError as exc:
            job_store.finish_job(self.lib, job_id, "failed", error=str(exc.args[0]))
            return JobEvent(job_id, "finished", status="failed", message=str(exc.args[0]))
        spec = {
            "job_id": job_id,
            "kind": row["kind"],
            "target": target,
            "params": row["params"] or {},
            "library_dir": str(self.library_dir),
            "resume": (work / "checkpoint.pt").is_file(),
        }
        reader, writer = self._mp.Pipe(duplex=False)
        process = self._mp.Process(
            target=worker_main, args=(spec, writer), name=f"dermdesk-job-{job_id}"
        )
        process.start()
        # Keep no copy of the write end here: when the worker dies, reads see EOF.
        writer.close()
        job_store.set_pid(self.lib, job_id, process.pid or 0, process_started(process.pid or 0))
        self._running = _Running(job_id, row["kind"], process, reader)
        message = "resuming from checkpoint" if spec["resume"] else "started"
        self._running.log.append(f"[runner] {message} in worker process {process.pid}")
        return JobEvent(job_id, "started", progress=row["progress"], message=message)

    def _recover_stale(self) -> None:
        """Mark failed any 'running' job whose worker no longer exists (its runner died)."""
        for row in job_store.jobs_with_status(self.lib, "running"):
            if row["pid"] and pid_alive(int(row["pid"]), row.get("pid_started")):
                continue
            job_store.finish_job(
                self.lib,
                int(row["id"]),
                "failed",
                message="worker process vanished",
                error="the job's worker process ended without reporting (the app or worker "
                "was killed); resume it to continue from its last checkpoint",
            )

    # -- watching ------------------------------------------------------------------------------

    def _drain(self, run: _Running) -> list[JobEvent]:
        events: list[JobEvent] = []
        while run.conn is not None:
            try:
                if not run.conn.poll(0):
                    break
                kind, payload = run.conn.recv()
            except (EOFError, OSError):
                run.conn.close()
                run.conn = None
                break
            events += self._handle(run, kind, payload)
        if run.dirty:
            self._flush(run)
        return events

    def _handle(self, run: _Running, kind: str, payload: Any) -> list[JobEvent]:
        run.dirty = run.dirty or kind in ("progress", "log")
        if kind == "progress":
            run.progress, run.message = payload["progress"], payload.get("message") or run.message
            return [JobEvent(run.job_id, "progress", run.progress, run.message)]
        if kind == "log":
            run.log.append(str(payload))
            return [JobEvent(run.job_id, "log", line=str(payload))]
        if kind == "write":
            run.writes.append(payload)
            self._apply_writes(run)
            return []
        run.outcome = (kind, payload)
        return []

    def _apply_writes(self, run: _Running) -> bool:
        """Store what the worker asked for; False if the library is busy (retried later)."""
        while run.writes:
            payload = run.writes[0]
            store = _WRITES.get(payload.get("op"))
            if store is None:
                run.log.append(f"[runner] ignored an unknown write {payload.get('op')!r}")
            else:
                try:
                    store(self.lib, payload)
                except LibraryBusyError:
                    return False
            run.writes.pop(0)
        return True

    def _flush(self, run: _Running, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t - run.last_flush < DB_FLUSH_INTERVAL_S:
            return
        try:
            job_store.update_progress(self.lib, run.job_id, run.progress, run.message, run.log)
        except LibraryBusyError:
            return  # another process holds the write lock; the lines wait for the next flush
        run.log = []
        run.last_flush = t
        run.dirty = False

    def _check_ended(self, run: _Running) -> list[JobEvent]:
        if run.outcome is None and run.process.is_alive():
            if run.cancel_requested_at and (
                time.monotonic() - run.cancel_requested_at > KILL_AFTER_CANCEL_S
            ):
                self._kill(run)
            return []
        if run.process.is_alive():
            run.process.join(timeout=5)
        if run.process.is_alive():
            return []  # reported its end, still tearing down: look again next poll
        if run.conn is not None:
            self._drain(run)
        if not self._apply_writes(run):
            return []  # the library is busy: finish at a later poll, nothing is lost
        try:
            event = self._finish(run)
        except LibraryBusyError:
            return []
        self._running = None
        return [event]

    def _finish(self, run: _Running) -> JobEvent:
        status, message, result, error, model = self._outcome(run)
        try:
            job_store.finish_job(
                self.lib,
                run.job_id,
                status,
                message=message,
                result=result,
                error=error,
                model=model,
                log_lines=run.log,
            )
        except LibraryBusyError:
            raise
        except (LibraryError, TypeError, ValueError) as exc:
            # The result could not be recorded (e.g. its parent model was deleted meanwhile):
            # the job fails with the reason; nothing half-written stays behind.
            status, message = "failed", f"could not record the job's result: {exc}"
            job_store.finish_job(
                self.lib, run.job_id, status, message=message, error=message, log_lines=run.log
            )
        cancel_file(self.library_dir, run.job_id).unlink(missing_ok=True)
        return JobEvent(
            run.job_id, "finished", 1.0 if status == "done" else run.progress, message, status
        )

    def _outcome(
        self, run: _Running
    ) -> tuple[str, str, dict[str, Any] | None, str | None, ModelRecord | None]:
        if run.outcome is None and run.cancel_requested_at is not None:
            return "cancelled", "cancelled (worker killed; last checkpoint kept)", None, None, None
        if run.outcome is None:
            return "failed", "worker process died", None, self._death_report(run), None
        kind, payload = run.outcome
        if kind == "done":
            result = dict(payload)
            model = ModelRecord.from_json(result.pop("model")) if "model" in result else None
            if model is not None:
                result["model_id"] = model.id
            return "done", str(result.pop("message", "finished")), result, None, model
        if kind == "cancelled":
            return "cancelled", str(payload.get("message") or "cancelled"), None, None, None
        error = one_line(str(payload.get("error") or "unknown error"))
        trace = str(payload.get("traceback") or "").rstrip()
        if trace:
            run.log.append("[worker] the job failed; its traceback:")
            run.log.extend(trace.splitlines())
        return "failed", error, None, error, None

    def _death_report(self, run: _Running) -> str:
        code = run.process.exitcode
        if code is not None and code < 0:
            try:
                what = f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        else:
            what = f"exited with status {code}"
        text = f"the worker process {what} without reporting a result"
        crash = job_dir(self.library_dir, run.job_id) / CRASH_LOG
        with contextlib.suppress(OSError):
            dump = crash.read_text(errors="replace").strip()
            if dump:
                text += "\n" + dump
        return text + "\n(resume the job to continue from its last checkpoint)"

    def _kill(self, run: _Running) -> None:
        run.log.append("[runner] worker did not stop after the cancel request; killed")
        run.process.kill()
        run.process.join(timeout=10)


def _store_predictions(lib: Library, payload: dict[str, Any]) -> None:
    rows = [(image_id, probs) for image_id, probs in payload["rows"]]
    store_predictions(lib, payload["model_id"], rows)


def _store_assessments(lib: Library, payload: dict[str, Any]) -> None:
    save_assessments(lib, payload["items"])


def _store_embedding_pairs(lib: Library, payload: dict[str, Any]) -> None:
    from dermdesk.library.curation_store import save_embedding_pairs

    pairs = [(a, b, float(c)) for a, b, c in payload["pairs"]]
    save_embedding_pairs(lib, payload["model_id"], float(payload["min_cosine"]), pairs)


def _store_meta_domains(lib: Library, payload: dict[str, Any]) -> None:
    from dermdesk.library.domain_store import save_assignment

    save_assignment(lib, payload["assignment"])


# What a worker may ask the runner to write (``JobContext.request_write``): op -> store.
_WRITES: dict[str | None, Callable[[Library, dict[str, Any]], None]] = {
    "predictions": _store_predictions,
    "assessments": _store_assessments,
    "meta_domains": _store_meta_domains,
    "embedding_pairs": _store_embedding_pairs,
    "experiment_result": store_run_result,
    "model_evaluation": store_evaluation,
}
