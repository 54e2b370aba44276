"""Lost rows never cost an original: verify reports them, repair quarantines, recover restores."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import Library
from dermdesk.library.db import DB_NAME
from dermdesk.library.records import SkinToneIn
from dermdesk.library.recover import (
    accept_restored_database,
    recover_originals,
    unlisted_originals,
)
from dermdesk.library.verify import verify


@pytest.fixture
def pad(shared_data: Path, tmp_path: Path) -> Library:
    lib = Library.open(tmp_path / "lib", actor="tester")
    run_import(lib, plan_path(shared_data / "pad_ufes_20").items[:12], checks=False)
    return lib


def drop_rows(lib: Library, ids: list[str]) -> None:
    """Rows lost behind the library's back (a user's sqlite3 session): the audit log,
    in the same file, still knows the images."""
    marks = ", ".join("?" * len(ids))
    for table in ("label", "skin_tone", "quality", "image_hash", "prediction", "mask"):
        lib.conn.execute(f"DELETE FROM {table} WHERE image_id IN ({marks})", ids)
    lib.conn.execute(f"DELETE FROM image WHERE id IN ({marks})", ids)


def test_rows_lost_with_the_audit_intact_come_back_as_they_were(pad: Library) -> None:
    lib = pad
    rows = lib.images(order="id")
    target = rows[0]["id"]
    lib.set_label([target], "MEL", certainty="histopathology", annotator="dr-a")
    lib.set_skin_tone([target], SkinToneIn(fitzpatrick=5, method="manual", rater="nurse"))
    before = {r["id"]: r for r in lib.images()}
    lost = [r["id"] for r in rows[:3]]
    drop_rows(lib, lost)
    report = verify(lib, checksums=False)
    assert any("3 originals/masks have no row" in e for e in report.errors)
    assert any("audit log names 3 images" in e for e in report.errors)
    assert len(unlisted_originals(lib)) == 3

    result = recover_originals(lib, checks=False)
    assert sorted(result.recovered) == sorted(lost) and result.from_audit == 3
    for image_id in lost:
        now, then = lib.image(image_id), before[image_id]
        for column in ("diagnosis", "fitzpatrick", "modality", "dataset", "patient_id"):
            assert now[column] == then[column], column
    label = lib.current_label(target)
    assert (label["diagnosis"], label["annotator"]) == ("MEL", "dr-a")
    (rating,) = [t for t in lib.skin_tones(target) if t["is_current"]]
    assert rating["rater"] == "nurse"
    assert verify(lib, checksums=True).ok
    assert unlisted_originals(lib) == []


def test_an_older_database_restored_loses_rows_but_no_original(
    pad: Library, shared_data: Path, tmp_path: Path
) -> None:
    """The rows and their audit entries are gone together: the originals come back as
    photos, and verify --repair moved them to quarantine/ first, deleting nothing."""
    lib = pad
    old = tmp_path / "older.sqlite"
    with sqlite3.connect(old) as copy:
        lib.conn.backup(copy)
    more = plan_path(shared_data / "pad_ufes_20").items[12:20]
    run_import(lib, more, checks=False)
    newer = [r["id"] for r in lib.images(order="imported")[:8]]
    root = lib.root
    lib.close()
    for suffix in ("", "-wal", "-shm"):
        (root / (DB_NAME + suffix)).unlink(missing_ok=True)
    shutil.copy(old, root / DB_NAME)
    lib = Library.open(root, actor="tester")
    try:
        files = sorted(p.name for p in (root / "originals").rglob("*.jpg"))
        report = verify(lib, checksums=False, repair=True)
        assert any("moved 8 originals/masks" in r for r in report.repaired)
        assert len(list((root / "quarantine").rglob("*.jpg"))) == 8
        assert any("older database was put back" in e for e in report.errors)
        assert "older database was put back" in (accept_restored_database(lib) or "")
        result = recover_originals(lib, checks=True)
        assert sorted(result.recovered) == sorted(newer) and result.from_audit == 0
        assert lib.count() == 20 and not list((root / "quarantine").rglob("*.jpg"))
        assert sorted(p.name for p in (root / "originals").rglob("*.jpg")) == files
        assert {lib.image(i)["modality"] for i in newer} <= {"clinical", "dermoscopic"}
        assert verify(lib, checksums=True).ok
    finally:
        lib.close()


def test_a_renamed_or_damaged_original_is_not_recovered_under_a_wrong_id(pad: Library) -> None:
    lib = pad
    target = lib.images(order="id")[0]
    drop_rows(lib, [target["id"]])
    path = lib.original_path(target)
    path.write_bytes(path.read_bytes()[:-100] + b"\0" * 100)
    result = recover_originals(lib, checks=False)
    assert result.recovered == [] and "do not match its name" in result.refused[0][1]
    assert path.exists()
