"""A damaged database: one clear line everywhere, verify reports it, recover --database
rebuilds from what SQLite can read plus the originals, keeping the damaged file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import Library, LibraryError
from dermdesk.library.db import DB_NAME, LibraryDamaged
from dermdesk.library.rebuild import rebuild_database
from dermdesk.library.verify import verify


@pytest.fixture
def ham(shared_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    with Library.open(root, actor="tester") as lib:
        run_import(lib, plan_path(shared_data / "ham10000").items[:60], workers=2)
        lib.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


def damage_page_of(root: Path, table: str) -> None:
    """Overwrite the cell area of one page holding ``table``'s rows (cells fill a page
    from its end: the middle of a page may be free space, whose damage nothing reads)."""
    conn = sqlite3.connect(root / DB_NAME)
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    try:
        pages = [p for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (table,))]
    except sqlite3.OperationalError:  # SQLite built without dbstat: the middle of the file
        pages = [conn.execute("PRAGMA page_count").fetchone()[0] // 2]
    conn.close()
    with open(root / DB_NAME, "r+b") as fh:
        fh.seek(pages[len(pages) // 2] * size - 900)
        fh.write(b"\xde\xad\xbe\xef" * 200)


def test_a_damaged_header_is_one_line_and_rebuilt_completely(ham: Path) -> None:
    with open(ham / DB_NAME, "r+b") as fh:
        fh.write(b"garbage garbage!")
    with pytest.raises(LibraryDamaged) as refused:
        Library.open(ham)
    message = str(refused.value)
    assert "\n" not in message and "recover --database" in message
    report = rebuild_database(ham)
    assert report.header_repaired and report.copied["image"] == 60
    assert (ham / report.damaged_file).read_bytes()[:16] == b"garbage garbage!"  # kept
    with Library.open(ham) as lib:
        result = verify(lib)
        assert result.ok, result.errors
        assert lib.count() == 60


def test_a_damaged_page_loses_rows_but_no_image(ham: Path) -> None:
    damage_page_of(ham, "image")
    with Library.open(ham) as lib:
        result = verify(lib, checksums=False)
        assert not result.ok and "database is damaged" in result.errors[0]
        assert "\n" not in result.errors[0]
    report = rebuild_database(ham)
    assert report.gaps["image"] >= 1 and report.copied["image"] < 60
    assert report.recovered_images == 60 - report.copied["image"]
    with Library.open(ham) as lib:
        result = verify(lib)
        assert result.ok, result.errors
        assert lib.count() == 60
        dx = {r["diagnosis"] for r in lib.images()}
        assert None not in dx  # the re-imported images got their labels from the audit log
    assert any(p.name.startswith(f"{DB_NAME}.damaged-") for p in ham.iterdir())


def test_every_command_says_so_in_one_line(ham: Path) -> None:
    import os
    import subprocess
    import sys

    with open(ham / DB_NAME, "r+b") as fh:
        fh.write(b"garbage garbage!")
    env = {**os.environ, "DERMDESK_HOME": str(ham)}
    for command in (["ls"], ["stats"], ["show", "abcdef"], ["check"], ["verify"]):
        proc = subprocess.run(
            [sys.executable, "-m", "dermdesk", *command], env=env, capture_output=True, text=True
        )
        out = (proc.stdout + proc.stderr).strip()
        assert proc.returncode in (1, 2) and "Traceback" not in out, (command, out)
        assert "library database is damaged" in out and "recover --database" in out
    rebuilt = subprocess.run(
        [sys.executable, "-m", "dermdesk", "recover", "--database"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "the damaged database is kept as" in rebuilt.stdout


def test_a_library_with_no_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no library database"):
        rebuild_database(tmp_path)
