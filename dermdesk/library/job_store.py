"""Rows of the ``job`` table: the record of every background job.

Only :class:`dermdesk.jobs.runner.JobRunner` calls the writers here (the GUI
and the CLI go through a runner), so job rows have one writer per process and
workers never write. State changes (queued, started, finished, failed,
cancelled, resumed) are audited; progress and log lines are not: they are
frequent, carry no clinical data and would flood the audit chain.

Statuses: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled``;
``failed`` and ``cancelled`` jobs can be re-queued to resume.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from dermdesk.library.db import LibraryError
from dermdesk.library.library import Library
from dermdesk.library.model_store import ModelRecord, insert_model

TERMINAL = ("done", "failed", "cancelled")
RESUMABLE = ("failed", "cancelled")
MAX_LOG_CHARS = 1_000_000  # keep the newest part of a runaway log


def create_job(lib: Library, kind: str, params: Mapping[str, Any]) -> int:
    """Queue a job; returns its id."""
    with lib.transaction() as txn:
        conn = txn.conn
        audit = txn.audit
        cur = conn.execute(
            "INSERT INTO job (kind, status, params, created_at) VALUES (?, 'queued', ?, ?)",
            (kind, json.dumps(dict(params), sort_keys=True), audit.at),
        )
        job_id = int(cur.lastrowid or 0)
        audit.record("job.submit", "job", str(job_id), None, {"kind": kind, "params": params})
    return job_id


def claim_next(lib: Library, pid: int, started: float | None = None) -> dict[str, Any] | None:
    """Atomically take the oldest queued job if no job is running; None otherwise."""
    # A plain read first: an idle GUI polls often and must not take the write lock each time.
    if not lib.conn.execute("SELECT 1 FROM job WHERE status = 'queued' LIMIT 1").fetchone():
        return None
    with lib.transaction() as txn:
        conn = txn.conn
        if conn.execute("SELECT 1 FROM job WHERE status = 'running'").fetchone():
            return None
        row = conn.execute(
            "SELECT id FROM job WHERE status = 'queued' ORDER BY id LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        audit = txn.audit
        conn.execute(
            "UPDATE job SET status = 'running', pid = ?, pid_started = ?, started_at = ?, "
            "message = 'starting', error = NULL, finished_at = NULL WHERE id = ?",
            (pid, started, audit.at, row[0]),
        )
        audit.record("job.start", "job", str(row[0]), {"status": "queued"}, {"status": "running"})
    return get_job(lib, int(row[0]))


def set_pid(lib: Library, job_id: int, pid: int, started: float | None = None) -> None:
    """Record the job's worker process: its pid and when it started (see pid_alive)."""
    with lib.transaction() as txn:
        txn.conn.execute(
            "UPDATE job SET pid = ?, pid_started = ? WHERE id = ?", (pid, started, job_id)
        )


def update_progress(
    lib: Library,
    job_id: int,
    progress: float | None,
    message: str | None,
    log_lines: list[str],
) -> None:
    """Record progress and append log lines (not audited; see the module docstring)."""
    with lib.transaction() as txn:
        conn = txn.conn
        if progress is not None:
            conn.execute(
                "UPDATE job SET progress = ?, message = coalesce(?, message) WHERE id = ?",
                (min(max(progress, 0.0), 1.0), message, job_id),
            )
        elif message is not None:
            conn.execute("UPDATE job SET message = ? WHERE id = ?", (message, job_id))
        if log_lines:
            _append_log(conn, job_id, log_lines)


def _append_log(conn: sqlite3.Connection, job_id: int, lines: list[str]) -> None:
    text = "".join(line.rstrip("\n") + "\n" for line in lines)
    conn.execute(
        "UPDATE job SET log = substr(log || ?, -?) WHERE id = ?", (text, MAX_LOG_CHARS, job_id)
    )


def finish_job(
    lib: Library,
    job_id: int,
    status: str,
    *,
    message: str | None = None,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    model: ModelRecord | None = None,
    log_lines: list[str] | None = None,
) -> None:
    """End a running job; registering its model (if any) in the same transaction."""
    if status not in TERMINAL:
        raise LibraryError(f"not a final job status: {status}")
    with lib.transaction() as txn:
        conn = txn.conn
        audit = txn.audit
        before = conn.execute("SELECT status FROM job WHERE id = ?", (job_id,)).fetchone()
        if before is None:
            raise LibraryError(f"no job {job_id}")
        if model is not None:
            insert_model(conn, audit, model)
        if log_lines:
            _append_log(conn, job_id, log_lines)
        conn.execute(
            "UPDATE job SET status = ?, message = coalesce(?, message), result = ?, error = ?, "
            "model_id = coalesce(?, model_id), finished_at = ?, "
            "progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END WHERE id = ?",
            (
                status,
                message,
                json.dumps(dict(result), sort_keys=True) if result is not None else None,
                error,
                model.id if model else None,
                audit.at,
                status,
                job_id,
            ),
        )
        audit.record(
            f"job.{status}",
            "job",
            str(job_id),
            {"status": before[0]},
            {"status": status, "model_id": model.id if model else None, "message": message},
        )


def requeue_job(lib: Library, job_id: int) -> None:
    """Put a failed or cancelled job back in the queue (it resumes from its checkpoint)."""
    with lib.transaction() as txn:
        conn = txn.conn
        row = conn.execute("SELECT status FROM job WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise LibraryError(f"no job {job_id}")
        if row[0] not in RESUMABLE:
            raise LibraryError(f"job {job_id} is {row[0]}; only failed or cancelled jobs resume")
        audit = txn.audit
        conn.execute(
            "UPDATE job SET status = 'queued', message = 'queued to resume', pid = NULL, "
            "pid_started = NULL "
            "WHERE id = ?",
            (job_id,),
        )
        audit.record("job.resume", "job", str(job_id), {"status": row[0]}, {"status": "queued"})


def cancel_queued(lib: Library, job_id: int) -> bool:
    """Cancel a job that has not started; False if it is not queued (any more)."""
    with lib.transaction() as txn:
        conn = txn.conn
        row = conn.execute("SELECT status FROM job WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise LibraryError(f"no job {job_id}")
        if row[0] != "queued":
            return False
        audit = txn.audit
        conn.execute(
            "UPDATE job SET status = 'cancelled', message = 'cancelled before it started', "
            "finished_at = ? WHERE id = ?",
            (audit.at, job_id),
        )
        audit.record(
            "job.cancelled", "job", str(job_id), {"status": "queued"}, {"status": "cancelled"}
        )
    return True


# -- reads -----------------------------------------------------------------------------------


def get_job(lib: Library, job_id: int) -> dict[str, Any]:
    """One job row with params and result decoded."""
    rows = list(lib.query("SELECT * FROM job WHERE id = ?", [job_id]))
    if not rows:
        raise LibraryError(f"no job {job_id}")
    row = rows[0]
    for col in ("params", "result"):
        if row.get(col):
            row[col] = json.loads(row[col])
    return row


def jobs_with_status(lib: Library, *statuses: str) -> list[dict[str, Any]]:
    marks = ", ".join("?" * len(statuses))
    return list(
        lib.query(
            "SELECT id, kind, status, pid, pid_started, progress FROM job "
            f"WHERE status IN ({marks}) ORDER BY id",
            list(statuses),
        )
    )
