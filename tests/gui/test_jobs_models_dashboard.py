"""Jobs dock (progress, ETA, log, cancel, result link), models panel, dashboard."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pytestqt.qtbot import QtBot

from dermdesk.gui.jobs_dock import (
    JobsDock,
    JobsModel,
    JobView,
    LibraryJobsBackend,
    RunnerJobsBackend,
)
from dermdesk.gui.main_window import MainWindow
from dermdesk.gui.models_panel import ModelsTableModel
from dermdesk.library import Library
from dermdesk.library.browse import model_rows
from tests.gui.stand_ins import add_job, add_model

pytestmark = pytest.mark.gui


class ScriptedJobs:
    """A JobsBackend whose training job advances on every poll, as a runner would report it."""

    def __init__(self) -> None:
        started = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
        self.jobs = {
            2: JobView(2, "finetune", "running", 0.0, "epoch 1", "", started_at=started),
            1: JobView(
                1,
                "finetune",
                "done",
                1.0,
                "finished",
                "loss 0.41\n",
                model_id="m-new",
                started_at=started,
            ),
        }
        self.cancelled: list[int] = []

    def poll(self) -> list[JobView]:
        job = self.jobs[2]
        if job.status == "running" and job.progress < 0.9:
            step = round(job.progress * 10) + 1
            self.jobs[2] = replace(
                job, progress=step / 10, log=job.log + f"step {step}: loss {1 / step:.3f}\n"
            )
        return list(self.jobs.values())

    def cancel(self, job_id: int) -> None:
        self.cancelled.append(job_id)
        self.jobs[job_id] = replace(
            self.jobs[job_id], status="cancelled", message="cancelled by user"
        )


def test_jobs_dock_shows_progress_eta_log_and_cancels(qtbot: QtBot, qtmodeltester: object) -> None:
    backend = ScriptedJobs()
    dock = JobsDock(backend)
    qtbot.addWidget(dock)
    dock.show()
    qtmodeltester.check(dock.model)  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: dock.model.jobs[0].progress >= 0.3)
    dock.table.selectRow(0)
    running = dock.selected_job()
    assert running is not None and running.id == 2
    assert dock.model.data(dock.model.index(0, 2)).endswith("%")
    assert dock.model.data(dock.model.index(0, 3)).endswith(("s", "min"))  # ETA
    qtbot.waitUntil(lambda: "step 3" in dock.log.toPlainText())
    assert dock.cancel_button.isEnabled()
    dock.cancel_button.click()
    assert backend.cancelled == [2]
    qtbot.waitUntil(lambda: dock.model.jobs[0].status == "cancelled")
    assert not dock.cancel_button.isEnabled()

    dock.table.selectRow(1)  # the finished job links to the model it produced
    assert dock.result_button.isEnabled() and dock.result_button.text() == "Open model"
    with qtbot.waitSignal(dock.open_model) as blocker:
        dock.result_button.click()
    assert blocker.args == ["m-new"]


def test_library_jobs_backend_reads_the_job_table_and_requests_cancel(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    job_id = add_job(lib, "finetune", "running", 0.25, "epoch 1 of 4\n")
    backend = LibraryJobsBackend(lib, window.writer)
    jobs = {j.id: j for j in backend.poll()}
    assert jobs[job_id].progress == 0.25 and "epoch 1" in jobs[job_id].log
    backend.cancel(job_id)
    qtbot.waitUntil(lambda: window.writer.pending == 0)
    assert lib.jobs()[0]["status"] == "cancelling"
    assert any(e["action"] == "job.cancel" for e in lib.audit_entries(str(job_id)))


def test_runner_backend_drives_a_runner_and_shows_its_rows() -> None:
    class Runner:  # the job runner's public surface: poll(), jobs(limit), cancel(id)
        def __init__(self) -> None:
            self.polls, self.cancelled = 0, []

        def poll(self) -> list[object]:
            self.polls += 1
            return []

        def jobs(self, limit: int) -> list[dict[str, object]]:
            return [
                {
                    "id": 7,
                    "kind": "finetune",
                    "status": "done",
                    "progress": 1.0,
                    "log": "ok",
                    "result": '{"model_id": "m7"}',
                    "params": "{}",
                    "pid": None,
                }
            ]

        def cancel(self, job_id: int) -> str:
            self.cancelled.append(job_id)
            return "requested"

    runner = Runner()
    backend = RunnerJobsBackend(runner)
    (job,) = backend.poll()
    assert runner.polls == 1 and job.result_link() == ("model", "m7")
    backend.cancel(7)
    assert runner.cancelled == [7]


def test_eta_is_extrapolated_from_progress() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    job = JobView(1, "train", "running", 0.25, started_at=start.isoformat())
    assert job.eta_seconds(start + timedelta(seconds=60)) == pytest.approx(180)
    assert replace(job, status="done").eta_seconds() is None


def test_models_panel_shows_lineage_metrics_and_activates(
    qtbot: QtBot, qtmodeltester: object, window: MainWindow, lib: Library
) -> None:
    metrics = {
        "balanced_accuracy": 0.71,
        "per_class": {"MEL": {"sensitivity": 0.8, "n": 12}},
        "per_fitzpatrick": {"V-VI": {"balanced_accuracy": 0.52, "n": 9}},
        "per_device": {"iPhone": {"balanced_accuracy": 0.69, "n": 40}},
    }
    add_model(lib, "base", status="active")
    add_model(lib, "child", parents=["base"], metrics=metrics)
    w = window
    w.actions_["show_models"].trigger()
    panel = w.models
    qtmodeltester.check(panel.model)  # type: ignore[attr-defined]
    panel.select("child")
    assert "model child" in panel.lineage.text() and "model base" in panel.lineage.text()
    sections = {panel.metrics.item(r, 0).text() for r in range(panel.metrics.rowCount())}
    assert {"overall", "per_class", "per_fitzpatrick", "per_device"} <= sections
    panel.activate_button.click()
    qtbot.waitUntil(lambda: {m["id"]: m["status"] for m in model_rows(lib)}["child"] == "active")
    assert {m["id"]: m["status"] for m in model_rows(lib)}["base"] == "candidate"


def test_models_table_model_on_its_own(qtmodeltester: object, lib: Library) -> None:
    add_model(lib, "solo")
    model = ModelsTableModel()
    model.set_rows(model_rows(lib))
    qtmodeltester.check(model)  # type: ignore[attr-defined]
    assert model.rowCount() == 1 and model.data(model.index(0, 0)) == "model solo"


def test_jobs_model_updates_rows_in_place(qtmodeltester: object) -> None:
    model = JobsModel()
    qtmodeltester.check(model)  # type: ignore[attr-defined]
    model.update([JobView(1, "export", "running", 0.1)])
    model.update([JobView(1, "export", "running", 0.5), JobView(2, "train", "queued")])
    assert [j.id for j in model.jobs] == [2, 1] and model.jobs[1].progress == 0.5


def test_dashboard_counts_and_gaps(qtbot: QtBot, window: MainWindow, lib: Library) -> None:
    w = window
    w.actions_["show_dashboard"].trigger()
    qtbot.waitUntil(lambda: w.dashboard.stats is not None)
    stats = w.dashboard.stats
    assert stats.total == lib.count()
    assert w.dashboard.total.value.text() == f"{lib.count():,}"
    texts = [w.dashboard.gap_list.item(i).text() for i in range(w.dashboard.gap_list.count())]
    # the library has no dermatofibroma images on dark skin: the dashboard says so
    assert any("dermatofibroma on Fitzpatrick V-VI" in t for t in texts)
    assert w.dashboard.dx_fitz.rowCount() == len([c for c in stats.by_diagnosis if c]) + 1
