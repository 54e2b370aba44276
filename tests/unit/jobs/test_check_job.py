"""The ``check`` job: a spawned worker re-runs the quality checker, the runner stores it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.imaging.quality import CHECKER_VERSION, assess
from dermdesk.jobs.runner import JobRunner
from dermdesk.library import Library
from dermdesk.library import quality_store as qs
from dermdesk.library.verify import verify

TIMEOUT = 180  # spawning a worker and checking a few real images on a loaded 2-core machine


@pytest.fixture
def runner(lib: Library) -> Iterator[JobRunner]:
    r = JobRunner(lib.root, actor="tester")
    yield r
    r.close(timeout_s=20)


@pytest.fixture
def imported(lib: Library, shared_data: Path) -> list[str]:
    """Five real images (phone photos and dermoscopy), imported without checks."""
    items = plan_path(shared_data / "pad_ufes_20").items[:3]
    items += plan_path(shared_data / "ham10000").items[:2]
    report = run_import(lib, items, workers=1, checks=False)
    assert len(report.added) == 5, report.refused
    return report.added


def checkers(lib: Library, image_id: str) -> set[str]:
    return {r["checker_version"] for r in qs.findings(lib, image_id)}


def test_stale_images_are_rechecked_and_current_ones_left_alone(
    runner: JobRunner, lib: Library, imported: list[str]
) -> None:
    current, older, *never = imported
    path = lib.store.path(lib.image(current)["file"])
    qs.save_assessments(lib, [(current, assess(path))])
    qs.save_assessments(lib, [(older, replace(assess(path), checker_version="0.9"))])
    audit_before = len(lib.audit_entries(current))

    job = runner.submit("check", {"stale": True})
    row = runner.wait(job, timeout_s=TIMEOUT)

    assert row["status"] == "done", row
    assert row["result"]["checked"] == 4 and row["result"]["unreadable"] == 0
    assert f"checked 4 images with checker {CHECKER_VERSION}" in row["message"]
    assert qs.stale_ids(lib) == []
    for image_id in [older, *never]:
        assert checkers(lib, image_id) == {CHECKER_VERSION}
    assert len(lib.audit_entries(current)) == audit_before  # not checked again
    assert verify(lib, checksums=False).ok


def test_a_filter_rechecks_every_matching_image(
    runner: JobRunner, lib: Library, imported: list[str]
) -> None:
    job = runner.submit("check", {"filter": {"modality": ["dermoscopic"]}})
    row = runner.wait(job, timeout_s=TIMEOUT)
    assert row["status"] == "done" and row["result"]["checked"] == 2
    assert len(qs.stale_ids(lib)) == 3  # the three clinical photos were not asked for


def test_an_unreadable_original_is_reported_and_nothing_else_is_lost(
    runner: JobRunner, lib: Library, imported: list[str]
) -> None:
    broken = imported[0]
    path = lib.store.path(lib.image(broken)["file"])
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG any more")

    row = runner.wait(runner.submit("check", {"stale": True}), timeout_s=TIMEOUT)

    assert row["status"] == "done", row
    assert row["result"] == {"checked": 5, "unreadable": 1}
    assert row["message"] == f"checked 5 images with checker {CHECKER_VERSION}, 1 unreadable"
    assert f"image {broken[:12]}:" in row["log"]
    findings = {r["check_name"]: r for r in qs.findings(lib, broken)}
    assert findings["readable"]["verdict"] == "fail"
    assert all(checkers(lib, i) == {CHECKER_VERSION} for i in imported[1:])
    assert lib.count() == 5
