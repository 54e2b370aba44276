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


def test_version_5_puts_estimates_beside_ratings(tmp_path: Path) -> None:
    """Before 5 an estimate filled image.fitzpatrick where no rating existed."""
    path = tmp_path / "lib" / DB_NAME
    path.parent.mkdir()
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    migrate(db, target=4)
    for image_id, fitz, monk in (("rated", 5, 7), ("estimated", 2, 3)):
        db.execute(
            "INSERT INTO image (id, file, format, width, height, bytes, modality, source, "
            "imported_at, fitzpatrick, monk) VALUES (?, 'f', 'JPEG', 1, 1, 1, 'clinical', "
            "'import', 'now', ?, ?)",
            [image_id, fitz, monk],
        )
    tones = [
        ("rated", "estimated", 3, 4, 0),  # an older estimate, no longer current
        ("rated", "estimated", 2, None, 1),
        ("rated", "manual", 5, None, 1),  # a rating without Monk: Monk 7 came from nowhere
        ("estimated", "estimated", 2, 3, 1),
    ]
    for image_id, method, fitz, monk, current in tones:
        db.execute(
            "INSERT INTO skin_tone (image_id, method, fitzpatrick, monk, rater, created_at, "
            "is_current) VALUES (?, ?, ?, ?, 'x', 'now', ?)",
            [image_id, method, fitz, monk, current],
        )
    db.conn.close()
    with Library.open(path.parent) as lib:
        rows = {
            r["id"]: (r["fitzpatrick"], r["monk"], r["fitzpatrick_est"], r["monk_est"])
            for r in lib.images()
        }
    assert rows == {"rated": (5, None, 2, None), "estimated": (None, None, 2, 3)}


def test_version_7_names_the_devices_already_there(tmp_path: Path) -> None:
    path = tmp_path / "lib" / DB_NAME
    path.parent.mkdir()
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    migrate(db, target=6)
    for image_id, make, model in (("a", "Canon", "Canon EOS 5D"), ("b", "Apple", "iPhone 15")):
        db.execute(
            "INSERT INTO image (id, file, format, width, height, bytes, modality, source, "
            "imported_at, device_make, device_model) VALUES (?, 'f', 'JPEG', 1, 1, 1, "
            "'clinical', 'import', 'now', ?, ?)",
            [image_id, make, model],
        )
    db.conn.close()
    with Library.open(path.parent) as lib:
        assert {r["id"]: r["device"] for r in lib.images()} == {
            "a": "Canon EOS 5D",
            "b": "Apple iPhone 15",
        }
        assert lib.count(ImageFilter(device="Apple iPhone")) == 1
