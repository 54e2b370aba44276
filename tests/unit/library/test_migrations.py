"""Every schema version migrates to the newest, and data survives the trip."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from dermdesk.library import ImageFilter, Library
from dermdesk.library.db import DB_NAME, migrate, schema_version
from dermdesk.library.schema import LATEST_VERSION, MIGRATIONS


@pytest.mark.parametrize("start", range(0, LATEST_VERSION + 1))
def test_migrates_from_every_earlier_version(tmp_path: Path, start: int) -> None:
    path = tmp_path / "lib" / DB_NAME
    path.parent.mkdir()
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    assert migrate(db, target=start) == start
    if start >= 1:
        db.execute(
            "INSERT INTO patient (id, source, external_id, created_at) "
            "VALUES ('P-1', 'x', 'y', 'now')"
        )
    db.conn.close()
    with Library.open(path.parent) as lib:
        assert schema_version(lib.db) == LATEST_VERSION
        assert lib.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if start >= 1:
            assert lib.patient("P-1") is not None


def test_migrations_are_numbered_without_gaps() -> None:
    assert sorted(MIGRATIONS) == list(range(1, LATEST_VERSION + 1))


def test_version_2_adds_the_perceptual_hash_table(tmp_path: Path) -> None:
    with Library.open(tmp_path / "lib") as lib:
        assert "image_hash" in lib.db.table_names()
        indexes = {r[1] for r in lib.conn.execute("PRAGMA index_list(quality)")}
        assert "quality_check" in indexes


def test_version_3_indexes_the_images_already_there(tmp_path: Path) -> None:
    path = tmp_path / "lib" / DB_NAME
    path.parent.mkdir()
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    migrate(db, target=2)
    db.execute(
        "INSERT INTO image (id, file, format, width, height, bytes, modality, source, "
        "original_name, imported_at) VALUES ('ab12', 'originals/ab/ab12.jpg', 'JPEG', 1, 1, 1, "
        "'clinical', 'import', 'left forearm.jpg', 'now')"
    )
    db.conn.close()
    with Library.open(path.parent) as lib:
        assert [r["id"] for r in lib.images(ImageFilter(text="forearm"))] == ["ab12"]
