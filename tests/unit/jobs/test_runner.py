"""The job runner with real spawned workers: queue, progress, cancel, resume, crashes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dermdesk.jobs.context import cancel_file, job_dir
from dermdesk.jobs.kinds import register_kind
from dermdesk.jobs.runner import JobEvent, JobRunner
from dermdesk.library import Library, LibraryError, job_store
from dermdesk.library.verify import verify

register_kind("test.count", "tests.unit.jobs.tasks:counting")
register_kind("test.crash", "tests.unit.jobs.tasks:crashing")
register_kind("test.vanish", "tests.unit.jobs.tasks:vanishing")
register_kind("test.predict", "tests.unit.jobs.tasks:predicting")
register_kind("test.no_ml", "tests.unit.jobs.tasks:needs_missing_training_module")

TIMEOUT = 120  # generous: spawning a worker on a loaded 2-core machine can take seconds


@pytest.fixture
def runner(lib: Library) -> Iterator[JobRunner]:
    r = JobRunner(lib.root, actor="tester")
    yield r
    r.close(timeout_s=20)


def poll_until(runner: JobRunner, condition, timeout: float = TIMEOUT) -> list[JobEvent]:  # type: ignore[no-untyped-def]
    events: list[JobEvent] = []
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        events += runner.poll()
        time.sleep(0.05)
    return events


def test_a_job_runs_reports_progress_and_finishes(runner: JobRunner) -> None:
    job = runner.submit("test.count", {"steps": 4})
    events: list[JobEvent] = []
    row = runner.wait(job, on_event=events.append, timeout_s=TIMEOUT)
    assert row["status"] == "done" and row["progress"] == 1.0
    assert row["result"] == {"started_from": 0}
    assert row["message"] == "counted to 4"
    assert "counting from 0 to 4" in row["log"]
    types = [e.type for e in events]
    assert types[0] == "started" and types[-1] == "finished" and "progress" in types
    assert events[-1].status == "done"
    assert row["pid"] and row["started_at"] <= row["finished_at"]


def test_jobs_queue_and_run_one_at_a_time(runner: JobRunner) -> None:
    first = runner.submit("test.count", {"steps": 6, "delay": 0.1})
    second = runner.submit("test.count", {"steps": 1})
    poll_until(runner, lambda: runner.job(first)["status"] == "running")
    assert runner.job(second)["status"] == "queued"
    runner.wait(second, timeout_s=TIMEOUT)
    a, b = runner.job(first), runner.job(second)
    assert a["status"] == b["status"] == "done"
    assert b["started_at"] >= a["finished_at"]


def test_cancel_keeps_a_checkpoint_and_resume_continues_from_it(runner: JobRunner) -> None:
    job = runner.submit("test.count", {"steps": 150, "delay": 0.02})
    poll_until(runner, lambda: (job_dir(runner.library_dir, job) / "count.json").exists())
    assert runner.cancel(job) == "requested"
    row = runner.wait(job, timeout_s=TIMEOUT)
    assert row["status"] == "cancelled"
    assert not cancel_file(runner.library_dir, job).exists()
    stopped_at = int(row["message"].split()[-1])
    assert 0 < stopped_at < 150
    runner.resume(job)
    row = runner.wait(job, timeout_s=TIMEOUT)
    assert row["status"] == "done"
    assert row["result"]["started_from"] >= stopped_at
    assert "resuming from checkpoint" in row["log"]


def test_a_queued_job_is_cancelled_at_once(runner: JobRunner) -> None:
    blocker = runner.submit("test.count", {"steps": 3, "delay": 0.1})
    waiting = runner.submit("test.count", {"steps": 3})
    assert runner.cancel(waiting) == "cancelled"
    runner.wait(blocker, timeout_s=TIMEOUT)
    for _ in range(5):
        runner.poll()
    row = runner.job(waiting)
    assert row["status"] == "cancelled" and row["started_at"] is None


def test_a_crash_is_one_line_for_the_user_and_a_traceback_in_the_log(
    runner: JobRunner,
) -> None:
    job = runner.submit("test.crash", {})
    row = runner.wait(job, timeout_s=TIMEOUT)
    assert row["status"] == "failed"
    assert row["error"] == row["message"] == "broken input: boom"
    assert "about to fail" in row["log"]
    assert "Traceback" in row["log"] and "ValueError: broken input: boom" in row["log"]


def test_a_worker_that_dies_silently_is_reported(runner: JobRunner) -> None:
    job = runner.submit("test.vanish", {})
    row = runner.wait(job, timeout_s=TIMEOUT)
    assert row["status"] == "failed"
    assert "exited with status 3" in row["error"]


def test_a_killed_worker_fails_cleanly_and_the_job_resumes(runner: JobRunner) -> None:
    job = runner.submit("test.count", {"steps": 120, "delay": 0.02})
    poll_until(runner, lambda: (job_dir(runner.library_dir, job) / "count.json").exists())
    os.kill(runner.job(job)["pid"], signal.SIGKILL)
    row = runner.wait(job, timeout_s=TIMEOUT)
    assert row["status"] == "failed"
    assert "killed by signal SIGKILL" in row["error"]
    report = verify(runner.lib, checksums=False)
    assert report.ok, report.errors
    runner.resume(job)
    row = runner.wait(job, timeout_s=TIMEOUT)
    assert row["status"] == "done" and row["result"]["started_from"] > 0


def test_a_running_job_left_by_a_dead_process_is_recovered(lib: Library) -> None:
    job = job_store.create_job(lib, "test.count", {})
    job_store.claim_next(lib, pid=2**22 + 12345)  # no such process
    runner = JobRunner(lib.root)
    try:
        runner.poll()
        row = runner.job(job)
        assert row["status"] == "failed" and "resume it" in row["error"]
    finally:
        runner.close()


def test_a_reused_pid_does_not_keep_a_dead_job_running(lib: Library) -> None:
    """After a reboot the recorded pid may belong to another, living process: the start
    time tells them apart, so the queue is not blocked for ever."""
    import os

    from dermdesk.jobs.context import pid_alive, process_started

    job = job_store.create_job(lib, "test.count", {})
    living = os.getppid()  # a process that exists, but is not the job's worker
    started = process_started(living)
    assert started is not None and pid_alive(living, started)
    job_store.claim_next(lib, pid=living, started=started - 3600)  # "an hour before boot"
    assert not pid_alive(living, started - 3600)
    runner = JobRunner(lib.root)
    try:
        runner.poll()
        assert runner.job(job)["status"] == "failed"
    finally:
        runner.close()


def test_a_job_of_a_living_runner_is_left_alone(lib: Library) -> None:
    import os

    from dermdesk.jobs.context import process_started

    job = job_store.create_job(lib, "test.count", {})
    job_store.claim_next(lib, pid=os.getppid(), started=process_started(os.getppid()))
    runner = JobRunner(lib.root)
    try:
        runner.poll()
        assert runner.job(job)["status"] == "running"
    finally:
        lib.conn.execute("UPDATE job SET status = 'failed' WHERE id = ?", (job,))
        runner.close()


def test_workers_ask_the_runner_to_write(runner: JobRunner, lib: Library) -> None:
    from dermdesk.library import model_store
    from tests.unit.library.test_model_store import add_image, record

    rec = record(lib)
    model_store.register_model(lib, rec)
    image = add_image(lib)
    job = runner.submit("test.predict", {"model_id": rec.id, "image_id": image})
    assert runner.wait(job, timeout_s=TIMEOUT)["status"] == "done"
    assert lib.predictions(image)[0]["top"] == "MEL"


def test_unknown_kinds_are_refused(runner: JobRunner) -> None:
    with pytest.raises(LibraryError, match="unknown job kind 'nope'"):
        runner.submit("nope", {})


def test_runner_needs_an_existing_library(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no library here"):
        JobRunner(tmp_path / "missing")


def test_a_locked_library_delays_recording_but_loses_nothing(lib: Library) -> None:
    import sqlite3

    runner = JobRunner(lib.root, actor="tester", busy_timeout_s=0.05)
    try:
        job = runner.submit("test.count", {"steps": 3})
        poll_until(runner, lambda: runner.busy)
        blocker = sqlite3.connect(lib.root / "library.sqlite", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process writing for a long time
        try:
            process = runner._running.process  # type: ignore[union-attr]
            deadline = time.monotonic() + TIMEOUT
            while process.is_alive() or process.exitcode is None:
                runner.poll()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            runner.poll()  # drains the last messages
            for _ in range(3):
                assert [e for e in runner.poll() if e.type == "finished"] == []
            assert runner.busy and runner.job(job)["status"] == "running"  # not recorded yet
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        row = runner.wait(job, timeout_s=TIMEOUT)
        assert row["status"] == "done" and "counting from 0 to 3" in row["log"]
    finally:
        runner.close()


def test_a_job_without_the_training_stack_says_what_to_install(runner: JobRunner) -> None:
    row = runner.wait(runner.submit("test.no_ml", {}), timeout_s=TIMEOUT)
    assert row["status"] == "failed"
    assert "pip install 'dermdesk[ml]'" in row["error"] and "Traceback" not in row["error"]
