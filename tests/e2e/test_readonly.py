"""Libraries on read-only media: reading commands work, nothing is stale or silently wrong."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import Library
from tests.helpers import in_private_mounts, read_only_view

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux mount namespaces")


def cli(library: Path, *args: str) -> str:
    words = " ".join(args)
    return f"DERMDESK_HOME={library} {sys.executable} -m dermdesk {words} 2>&1; echo rc=$?\n"


@pytest.fixture
def library(tmp_path: Path, shared_data: Path) -> Path:
    root = tmp_path / "lib"
    with Library.open(root, actor="tester") as lib:
        run_import(lib, plan_path(shared_data / "ham10000").items[:20], checks=False)
    return root


def test_reading_commands_work_on_a_read_only_mount(library: Path, tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    script = read_only_view(library, mount)
    commands = [
        ("ls", "--limit", "3"),
        ("stats",),
        ("verify",),
        ("verify", "--quick"),
        ("backup", str(tmp_path / "bak")),
        ("models", "list"),
        ("jobs", "list"),
        ("import", str(library / "originals")),
    ]
    for command in commands:
        script += f"echo '== {' '.join(command)}'\n" + cli(mount, *command)
    out = in_private_mounts(script).stdout
    sections = dict(part.split("\n", 1) for part in out.split("== ")[1:])
    for name in ("ls --limit 3", "stats", "verify", "verify --quick", "models list", "jobs list"):
        assert sections[name].rstrip().endswith("rc=0"), (name, sections[name])
    assert "verify OK: 20 images" in sections["verify"]
    assert "backed up 20 images" in sections[f"backup {tmp_path / 'bak'}"]
    writing = sections[f"import {library / 'originals'}"]
    assert "read-only" in writing and "Traceback" not in writing and "rc=2" in writing


def test_changes_still_in_the_wal_are_read_or_the_library_refused(
    library: Path, tmp_path: Path, shared_data: Path
) -> None:
    """A copy made while the library was open holds its last changes in the -wal file:
    read on read-only media they must show (SQLite reads the WAL), or the library is
    refused with what to do; never a silently older view."""
    copy = tmp_path / "copy"
    with Library.open(library, actor="tester") as lib:
        lib.conn.execute("PRAGMA wal_autocheckpoint = 0")
        run_import(lib, plan_path(shared_data / "ham10000").items[20:30], checks=False)
        shutil.copytree(library, copy)  # while open: the last 10 rows are in the WAL only
    assert (copy / "library.sqlite-wal").stat().st_size > 0
    mount = tmp_path / "ro"
    mount.mkdir()
    out = in_private_mounts(read_only_view(copy, mount) + cli(mount, "ls", "--limit", "1")).stdout
    assert "of 30 images" in out and "rc=0" in out
    (copy / "library.sqlite-shm").unlink()
    out = in_private_mounts(read_only_view(copy, mount) + cli(mount, "ls", "--limit", "1")).stdout
    assert "not closed cleanly" in out and "copy the library folder" in out and "rc=2" in out


def test_the_app_opens_a_library_on_a_read_only_mount(library: Path, tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    env = "QT_QPA_PLATFORM=offscreen DERMDESK_QUIT_AFTER_MS=2500"
    script = read_only_view(library, mount) + f"{env} " + cli(mount, "gui")
    out = in_private_mounts(script).stdout
    assert "rc=0" in out and "Traceback" not in out, out[-2000:]
