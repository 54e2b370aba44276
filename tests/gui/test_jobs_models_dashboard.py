"""Jobs dock (progress, ETA, log, cancel, result link), models panel, dashboard."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from dermdesk.gui.jobs_dock import (
    JobsDock,
    JobsModel,
    JobView,
    LibraryJobsBackend,
    RunnerThreadBackend,
)
from dermdesk.gui.main_window import MainWindow
from dermdesk.gui.models_panel import ModelsTableModel
from dermdesk.jobs.kinds import register_kind
from dermdesk.library import Library
from dermdesk.library.browse import model_rows
from tests.gui.stand_ins import add_job, add_model

pytestmark = pytest.mark.gui
register_kind("test.count", "tests.unit.jobs.tasks:counting")


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

    def take_errors(self) -> list[str]:
        return []

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


def wait_for(condition, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_runner_thread_backend_runs_cancels_and_resumes_real_jobs(lib: Library) -> None:
    """The app's backend: the real job runner on its own thread, spawned workers and all."""
    backend = RunnerThreadBackend(lib.root, "tester")
    try:
        backend.submit("test.count", {"steps": 60, "delay": 0.05})
        wait_for(lambda: any(j.status == "running" and j.progress > 0 for j in backend.poll()))
        (job,) = backend.poll()
        assert job.kind == "test.count" and "counting from 0" in job.log
        backend.cancel(job.id)
        wait_for(lambda: backend.poll()[0].status == "cancelled")
        backend.resume(job.id)
        wait_for(lambda: backend.poll()[0].status == "done")
        done = backend.poll()[0]
        assert done.result is not None and done.result["started_from"] > 0
    finally:
        backend.close()
    assert lib.jobs()[0]["status"] == "done"  # the runner recorded it in the library


def test_a_refused_job_command_reaches_the_user(qtbot: QtBot, lib: Library) -> None:
    """While the runner thread is alive, a refused submission must not look 'queued'."""
    backend = RunnerThreadBackend(lib.root, "tester")
    dock = JobsDock(backend)
    try:
        with qtbot.waitSignal(dock.refused, timeout=10_000) as refused:
            backend.submit("no-such-kind", {})
        assert "no-such-kind" in refused.args[0]
        qtbot.waitUntil(lambda: "Refused:" in dock.summary.text())
        assert "no-such-kind" in dock.summary.text() and dock.model.jobs == []
        assert backend.take_errors() == []  # shown once, then gone
    finally:
        dock.timer.stop()
        backend.close()


def test_eta_is_extrapolated_from_progress() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    job = JobView(1, "train", "running", 0.25, started_at=start.isoformat())
    assert job.eta_seconds(start + timedelta(seconds=60)) == pytest.approx(180)
    assert replace(job, status="done").eta_seconds() is None


def test_training_dialog_queues_a_fine_tuning_job(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    w = window
    dialog = w.open_train()
    dialog.epochs.setValue(2)
    dialog.img_size.setValue(64)
    dialog.name.setText("clinic-v1")
    dialog.buttons.accepted.emit()
    qtbot.waitUntil(lambda: any(j.kind == "finetune" for j in w.jobs.model.jobs), timeout=20000)
    job = next(j for j in w.jobs.model.jobs if j.kind == "finetune")
    assert job.params is not None and job.params["name"] == "clinic-v1"
    assert job.params["loop"]["epochs"] == 2 and job.params["img_size"] == 64
    assert w.jobs.isVisible()
    w.jobs.backend.cancel(job.id)
    qtbot.waitUntil(
        lambda: next(j for j in w.jobs.model.jobs if j.id == job.id).status == "cancelled",
        timeout=120000,
    )


def test_training_dialog_queues_pretraining_and_distillation(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    add_model(lib, "M-teacher")
    w = window
    dialog = w.open_train()
    dialog.kind.setCurrentIndex(dialog.kind.findData("pretrain"))
    assert dialog.form.isRowVisible(dialog.mask_ratio) and not dialog.form.isRowVisible(
        dialog.teacher
    )
    assert not dialog.form.isRowVisible(dialog.start) and dialog.epochs.value() == 100
    dialog.arch.setCurrentIndex(dialog.arch.findData("resnet18"))
    dialog.buttons.accepted.emit()  # a CNN cannot be MAE-pretrained: said, nothing queued
    assert "choose a ViT" in dialog.error.text() and dialog.isVisible()
    dialog.arch.setCurrentIndex(dialog.arch.findData("vit_tiny"))
    dialog.mask_ratio.setValue(0.8)
    dialog.epochs.setValue(1)
    dialog.buttons.accepted.emit()
    qtbot.waitUntil(lambda: any(j.kind == "pretrain" for j in w.jobs.model.jobs), timeout=20000)
    job = next(j for j in w.jobs.model.jobs if j.kind == "pretrain")
    assert job.params is not None and job.params["mask_ratio"] == 0.8
    w.jobs.backend.cancel(job.id)

    dialog = w.open_train()
    dialog.kind.setCurrentIndex(dialog.kind.findData("distill"))
    assert dialog.form.isRowVisible(dialog.teacher) and dialog.teacher.count() == 1
    dialog.epochs.setValue(1)
    dialog.buttons.accepted.emit()
    qtbot.waitUntil(lambda: any(j.kind == "distill" for j in w.jobs.model.jobs), timeout=20000)
    job = next(j for j in w.jobs.model.jobs if j.kind == "distill")
    assert job.params is not None and job.params["teacher"] == "M-teacher"
    w.jobs.backend.cancel(job.id)


def test_jobs_dock_shows_a_pretraining_jobs_latest_reconstruction(
    qtbot: QtBot, tmp_path: Path
) -> None:
    from PIL import Image

    backend = ScriptedJobs()
    backend.library_dir = tmp_path  # type: ignore[attr-defined]
    backend.jobs[3] = JobView(3, "pretrain", "running", 0.5, "step 5", "evaluation\n")
    previews = tmp_path / "jobs" / "3" / "previews"
    previews.mkdir(parents=True)
    Image.new("RGB", (8 * 34, 3 * 34), (180, 120, 110)).save(previews / "latest.png")
    dock = JobsDock(backend)
    qtbot.addWidget(dock)
    dock.show()
    row = [j.id for j in dock.model.jobs].index(3)
    dock.table.selectRow(row)
    qtbot.waitUntil(lambda: dock.preview.isVisible())
    assert dock.preview.pixmap().width() >= 8 * 34  # scaled up, never down, when small
    dock.table.selectRow([j.id for j in dock.model.jobs].index(1))  # a fine-tuning job
    qtbot.waitUntil(lambda: not dock.preview.isVisible())


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


def test_dashboard_gaps_and_bars_filter_the_gallery(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    from PySide6.QtCore import Qt

    w = window
    w.actions_["show_dashboard"].trigger()
    qtbot.waitUntil(lambda: w.dashboard.stats is not None)
    gaps = w.dashboard.gap_list
    row = next(
        i
        for i in range(gaps.count())
        if "basal cell carcinoma on Fitzpatrick" in gaps.item(i).text()
    )
    gaps.scrollToItem(gaps.item(row))
    rect = gaps.visualItemRect(gaps.item(row))
    qtbot.mouseClick(gaps.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert w.tabs.currentIndex() == 0  # back in the gallery, filtered
    flt = w.filters.image_filter()
    assert flt.diagnosis == ["BCC"] and flt.tone == "rated" and flt.fitzpatrick
    qtbot.waitUntil(
        lambda: not w.gallery_model.is_fetching and w.gallery_model.total == lib.count(flt)
    )
    w.actions_["show_dashboard"].trigger()
    w.dashboard.quality.clicked.emit("warn")  # what a click on the "warn" bar sends
    assert w.filters.image_filter().quality == "warn"
    assert w.filters.image_filter().diagnosis == []  # a bar replaces the filter, not adds


def test_meta_domains_are_assigned_shown_and_filter_the_gallery(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    """Issue 18: the dashboard's button runs the domains job; its matrix of meta-domain x
    diagnosis filters the gallery on a click; the details say the domain is an estimate."""
    from dermdesk.library import ImageFilter

    w = window
    w.actions_["show_dashboard"].trigger()
    qtbot.waitUntil(lambda: w.dashboard.stats is not None)
    assert "No meta-domains yet" in w.dashboard.domain_note.text()
    w.dashboard.assign_domains.click()
    domain_jobs = lambda: [j for j in w.jobs.model.jobs if j.kind == "domains"]  # noqa: E731
    qtbot.waitUntil(
        lambda: bool(domain_jobs()) and domain_jobs()[0].status == "done", timeout=180_000
    )
    qtbot.waitUntil(lambda: "have an estimated meta-domain" in w.dashboard.domain_note.text())
    table = w.dashboard.dx_domain
    domains, codes = w.dashboard._domain_axes
    assert table.rowCount() == len(domains) and all(d and "-" in d for d in domains)
    row = 0
    column = next(i for i, c in enumerate(codes) if c is not None)
    table.cellClicked.emit(row, column)
    flt = w.filters.image_filter()
    assert flt.meta_domain == [domains[row]] and flt.diagnosis == [codes[column]]
    expected = lib.count(flt)
    assert expected == int(table.item(row, column).text())
    qtbot.waitUntil(lambda: not w.gallery_model.is_fetching and w.gallery_model.total == expected)
    image_id = lib.images(ImageFilter(meta_domain=[domains[row]]), limit=1)[0]["id"]
    w.viewer.info.show_image(image_id)
    details = w.viewer.info.details
    rows = {details.item(r, 0).text(): details.item(r, 1).text() for r in range(details.rowCount())}
    assert rows["Meta-domain"] == f"{domains[row]} (estimated: look-kmeans 1 seed 0)"
    if os.environ.get("DERMDESK_SCREENSHOTS"):
        w.actions_["show_dashboard"].trigger()
        w.dashboard.widget().grab().save(os.environ["DERMDESK_SCREENSHOTS"])


def test_the_dashboard_charts_failures_per_check_and_a_bar_filters_the_gallery(
    qtbot: QtBot, window: MainWindow, lib: Library
) -> None:
    from PySide6.QtCore import QPoint, Qt

    from dermdesk.library import ImageFilter

    w = window
    w.actions_["show_dashboard"].trigger()
    chart = w.dashboard.failures
    qtbot.waitUntil(lambda: bool(chart.rows))
    counts = {title: n for title, n, _ in chart.rows}
    for title, n in counts.items():  # each bar: the images that check flags
        check = w.dashboard._check_of[title]
        assert n == lib.count(ImageFilter(failing=[check], synthetic=False)), title
    assert [n for _, n, _ in chart.rows] == sorted(counts.values(), reverse=True)
    top_title = chart.rows[0][0]
    qtbot.mouseClick(chart, Qt.MouseButton.LeftButton, pos=chart.rect().topLeft() + QPoint(5, 10))
    assert w.tabs.currentIndex() == 0
    check = w.dashboard._check_of[top_title]
    assert w.filters.image_filter().failing == [check]
    qtbot.waitUntil(
        lambda: (
            not w.gallery_model.is_fetching
            and w.gallery_model.total == lib.count(ImageFilter(failing=[check]))
        )
    )
