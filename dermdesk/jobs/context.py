"""What a job task sees while it runs: progress, log, cancel, its work folder.

A task is a function ``run(ctx: JobContext) -> dict``. It reports through
``ctx.progress`` / ``ctx.log``, checks ``ctx.should_stop()`` (or calls
``ctx.check_cancel()``) often enough to stop within a few seconds, keeps its
checkpoint at ``ctx.checkpoint_path``, and returns a JSON-ready result. It
never writes to the library: it asks the parent to (``ctx.request_write``).

The same context serves a job's worker process (messages go over a pipe to
the runner) and rank 0 of a torchrun launch (messages go to a JSON-lines file
that the worker relays), so the training loop has one way to report.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dermdesk.processes import pid_alive, process_started  # noqa: F401  (re-exported)

JOBS_DIR = "jobs"
PROGRESS_INTERVAL_S = 0.1  # at most ~10 progress messages a second
LIVENESS_INTERVAL_S = 1.0

Message = tuple[str, Any]
Send = Callable[[Message], None]


class JobCancelled(Exception):
    """Raised inside a task when the user cancelled it (after its checkpoint is saved)."""


def job_dir(library_dir: Path, job_id: int) -> Path:
    return Path(library_dir) / JOBS_DIR / str(job_id)


def cancel_file(library_dir: Path, job_id: int) -> Path:
    """A cancel request is this file: any process (GUI, CLI) can make it."""
    return job_dir(library_dir, job_id) / "cancel"


class JobContext:
    """The running task's handle on its job."""

    def __init__(
        self,
        job_id: int,
        library_dir: Path,
        params: dict[str, Any],
        send: Send,
        *,
        resume: bool = False,
        owner_alive: Callable[[], bool] | None = None,
        echo: bool = False,
    ) -> None:
        self.job_id = job_id
        self.library_dir = Path(library_dir)
        self.params = params
        self.resume = resume
        self.work_dir = job_dir(self.library_dir, job_id)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._send = send
        self._owner_alive = owner_alive
        self.echo = echo
        self._last_progress = 0.0
        self._last_liveness = 0.0
        self._owner_gone = False

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / "checkpoint.pt"

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        """Report progress (0..1); throttled unless ``force``."""
        t = time.monotonic()
        if not force and t - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = t
        self._safe_send(("progress", {"progress": float(fraction), "message": message}))

    def log(self, line: str) -> None:
        """A line for the job's log (echoed to stderr too where ``echo`` was asked for)."""
        if self.echo:
            print(line, file=sys.stderr, flush=True)
        self._safe_send(("log", line))

    def request_write(self, op: str, payload: dict[str, Any]) -> None:
        """Ask the runner (the library's writer) to store something, e.g. predictions."""
        self._safe_send(("write", {"op": op, **payload}))

    def should_stop(self) -> bool:
        """True when the user asked to cancel or the process that owns the job is gone."""
        if cancel_file(self.library_dir, self.job_id).exists():
            return True
        t = time.monotonic()
        if self._owner_alive and t - self._last_liveness > LIVENESS_INTERVAL_S:
            self._last_liveness = t
            self._owner_gone = self._owner_gone or not self._owner_alive()
        return self._owner_gone

    def check_cancel(self) -> None:
        if self.should_stop():
            raise JobCancelled("cancelled")

    def _safe_send(self, message: Message) -> None:
        try:
            self._send(message)
        except (BrokenPipeError, EOFError, OSError):
            # The runner is gone: finish cleanly at the next should_stop() check.
            self._owner_gone = True


def file_sender(path: Path) -> Send:
    """A sender that appends JSON lines to ``path`` (used by torchrun's rank 0)."""

    def send(message: Message) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(list(message)) + "\n")

    return send
