"""The entry point of a job's spawned worker process.

Runs one task and reports its end over the pipe: ``done`` with the result,
``cancelled``, or ``failed`` with a one-line error and, apart, the traceback
(which goes into the job's log, never into the user's error line). Ctrl-C in a terminal reaches
the whole process group; the worker ignores it and lets the runner cancel it
properly (with a checkpoint). Hard crashes (segfaults) leave a Python stack
in ``jobs/<id>/crash.log`` through faulthandler, which the runner reports.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import signal
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from dermdesk.errors import one_line
from dermdesk.jobs.context import JobCancelled, JobContext, job_dir
from dermdesk.jobs.kinds import resolve

CRASH_LOG = "crash.log"


TRAINING_STACK = {"torch", "torchvision", "timm", "diffusers", "onnx", "onnxscript"}


def worker_main(spec: dict[str, Any], conn: Connection) -> None:
    """Run ``spec['target']`` for job ``spec['job_id']``; report the outcome over ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    work = job_dir(Path(spec["library_dir"]), spec["job_id"])
    work.mkdir(parents=True, exist_ok=True)
    crash_log = open(work / CRASH_LOG, "w")  # noqa: SIM115 - must stay open for faulthandler
    faulthandler.enable(crash_log)
    parent = multiprocessing.parent_process()
    ctx = JobContext(
        spec["job_id"],
        Path(spec["library_dir"]),
        spec["params"],
        conn.send,
        resume=spec["resume"],
        owner_alive=parent.is_alive if parent is not None else None,
    )
    try:
        result = resolve(spec["target"])(ctx)
        outcome: tuple[str, Any] = ("done", result or {})
    except JobCancelled as exc:
        outcome = ("cancelled", {"message": str(exc) or "cancelled"})
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in TRAINING_STACK:
            # The packaged app and a plain `pip install dermdesk` leave the training
            # stack out: say how to get it rather than showing a traceback.
            error = (
                f"this job needs {exc.name}, which is not installed: install the "
                "training extra (pip install 'dermdesk[ml]') and run it again"
            )
        else:
            error = one_line(exc)
        outcome = ("failed", {"error": error, "traceback": traceback.format_exc()})
    except BaseException as exc:
        # One line for the user; the whole traceback goes into the job's log.
        outcome = ("failed", {"error": one_line(exc), "traceback": traceback.format_exc()})
    try:
        conn.send(outcome)
    except OSError:
        pass  # the runner is gone; the job's row is recovered as failed by the next runner
    finally:
        conn.close()
        faulthandler.disable()
        crash_log.close()
