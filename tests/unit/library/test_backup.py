"""Backup targets refused before anything is written, progress, and a cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.library import Library, LibraryError
from dermdesk.library.backup import backup, check_target
from dermdesk.library.records import ImageRecord
from tests.helpers import encode, skin_like


def add(lib: Library, n: int = 2) -> None:
    for seed in range(n):
        lib.add_images([ImageRecord(stored=ingest_bytes(encode(skin_like(seed=seed)), lib.store))])


def test_bad_targets_are_refused_with_one_line_each(lib: Library, tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="inside the library"):
        check_target(lib.root, lib.root / "bak")
    (tmp_path / "file").write_text("x")
    with pytest.raises(LibraryError, match="is a file"):
        check_target(lib.root, tmp_path / "file")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(LibraryError, match="not empty"):
        check_target(lib.root, tmp_path / "full")
    assert check_target(lib.root, tmp_path / "new") == (tmp_path / "new").resolve()


def test_progress_counts_every_file_and_a_cancel_leaves_nothing(
    lib: Library, tmp_path: Path
) -> None:
    add(lib)
    steps: list[tuple[int, int]] = []
    result = backup(lib, tmp_path / "bak", lambda done, total: steps.append((done, total)))
    assert steps[0] == (0, result.files) and steps[-1] == (result.files, result.files)

    def cancel(done: int, total: int) -> None:
        if done:
            raise LibraryError("cancelled")

    with pytest.raises(LibraryError, match="cancelled"):
        backup(lib, tmp_path / "bak2", cancel)
    assert not (tmp_path / "bak2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bak2")]
