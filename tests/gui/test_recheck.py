"""Quality findings of an older checker are re-checked in the background, and on demand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from pytestqt.qtbot import QtBot

from dermdesk.gui.jobs_dock import JobView
from dermdesk.gui.main_window import MainWindow
from dermdesk.imaging.quality import CHECKER_VERSION, assess
from dermdesk.library import ImageFilter, Library, job_store
from dermdesk.library import quality_store as qs

pytestmark = pytest.mark.gui
JOB_TIMEOUT_MS = 180_000  # a spawned worker checking real images on a loaded 2-core machine


def open_window(qtbot: QtBot, lib: Library, settings: object) -> MainWindow:
    w = MainWindow(lib, settings)  # type: ignore[arg-type]
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.gallery_model.rowCount() > 0)
    return w


def check_jobs(w: MainWindow) -> list[JobView]:
    return [j for j in w.jobs.model.jobs if j.kind == "check"]


@pytest.fixture
def aged(lib: Library) -> Iterator[list[str]]:
    """Three images whose stored findings come from an older checker version."""
    ids = qs.image_ids(lib, ImageFilter(modality=["dermoscopic"]))[:3]
    for image_id in ids:
        path = lib.store.path(lib.image(image_id)["file"])
        qs.save_assessments(lib, [(image_id, replace(assess(path), checker_version="0.9"))])
    assert sorted(qs.stale_ids(lib)) == sorted(ids)
    yield ids


def test_opening_a_library_rechecks_findings_of_an_older_checker(
    qtbot: QtBot, lib: Library, settings: object, aged: list[str]
) -> None:
    w = open_window(qtbot, lib, settings)
    qtbot.waitUntil(lambda: bool(check_jobs(w)), timeout=20_000)
    assert "Checking the quality of 3 images" in w.statusBar().currentMessage()
    qtbot.waitUntil(lambda: check_jobs(w)[0].status == "done", timeout=JOB_TIMEOUT_MS)
    assert qs.stale_ids(lib) == []
    for image_id in aged:
        assert {r["checker_version"] for r in qs.findings(lib, image_id)} == {CHECKER_VERSION}
    w.close()

    again = open_window(qtbot, lib, settings)  # nothing stale: no second job
    qtbot.waitUntil(lambda: again.reader.pending == 0)  # the stale count is in
    qtbot.wait(1000)  # time for a (wrong) submission to reach the job table
    every = job_store.jobs_with_status(lib, "queued", "running", "done", "cancelled", "failed")
    assert [j["kind"] for j in every] == ["check"]
    again.close()


def test_recheck_quality_action_rechecks_the_filtered_images(
    qtbot: QtBot, lib: Library, settings: object
) -> None:
    w = open_window(qtbot, lib, settings)
    w.filters.set_state({**w.filters.state(), "modality": ["dermoscopic"]})
    qtbot.waitUntil(lambda: w.gallery_model.query.filter.modality == ["dermoscopic"])
    wanted = qs.image_ids(lib, ImageFilter(modality=["dermoscopic"]))
    assert 0 < len(wanted) < lib.count()
    before = {i: len(lib.audit_entries(i)) for i in wanted}
    w.actions_["recheck"].trigger()
    qtbot.waitUntil(lambda: bool(check_jobs(w)), timeout=20_000)
    qtbot.waitUntil(lambda: check_jobs(w)[0].status == "done", timeout=JOB_TIMEOUT_MS)
    done = check_jobs(w)[0]
    assert done.message == f"checked {len(wanted)} images with checker {CHECKER_VERSION}"
    assert all(len(lib.audit_entries(i)) == before[i] + 1 for i in wanted)
    w.close()


def test_quitting_during_a_recheck_stops_it_without_asking(
    qtbot: QtBot, lib: Library, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib.conn.execute("UPDATE quality SET checker_version = '0.9'")  # every image stale
    asked: list[object] = []
    monkeypatch.setattr(MainWindow, "_confirm_stop_jobs", lambda self, job: asked.append(job))
    w = open_window(qtbot, lib, settings)
    qtbot.waitUntil(
        lambda: any(j.status == "running" for j in check_jobs(w)), timeout=JOB_TIMEOUT_MS
    )
    assert w.close()
    assert asked == [] and not w.isVisible()
    job = job_store.jobs_with_status(lib, "cancelled", "done")
    assert [j["kind"] for j in job] == ["check"]
