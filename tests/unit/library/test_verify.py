"""`verify` and `verify --repair` on a real library folder with damaged files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.library import Library
from dermdesk.library.records import ImageRecord, StoredFile
from dermdesk.library.verify import verify
from tests.helpers import encode, skin_like


def add(lib: Library, width: int, height: int, seed: int = 0) -> StoredFile:
    stored = ingest_bytes(encode(skin_like(width, height, seed=seed)), lib.store)
    assert isinstance(stored, StoredFile)
    lib.add_images([ImageRecord(stored=stored)])
    return stored


def age(path: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_fresh_library_verifies_clean(lib: Library) -> None:
    add(lib, 640, 480)
    add(lib, 300, 300, seed=1)
    report = verify(lib)
    assert report.ok and report.images == 2
    assert not report.warnings and not report.repaired


def test_a_half_written_file_is_kept_while_young_and_removed_when_old(lib: Library) -> None:
    """A killed import leaves `*.part` files beside the originals: a warning (an import
    may still be writing it), removed by --repair once it is older than the grace time."""
    stored = add(lib, 640, 480)
    part = lib.store.path(stored.file + ".1a2b3c4d.part")
    part.write_bytes(b"half an image")
    report = verify(lib)
    assert report.ok and any("1 temporary files" in w for w in report.warnings)
    assert not any("orphan" in w for w in report.warnings)
    assert "recent" in " ".join(verify(lib, repair=True).warnings) and part.exists()
    age(part)
    report = verify(lib, repair=True)
    assert report.repaired == ["removed 0 thumbnails of no image and 1 temporary files"]
    assert not part.exists() and lib.store.path(stored.file).is_file()
    assert not verify(lib).warnings


def test_missing_thumbnails_are_rebuilt_by_repair(lib: Library) -> None:
    big, small = add(lib, 640, 480), add(lib, 300, 300, seed=1)
    for stored in (big, small):
        lib.thumbnail_path(stored.sha256).unlink()
    assert sum("thumbnail missing" in w for w in verify(lib).warnings) == 2
    report = verify(lib, repair=True)
    assert len(report.repaired) == 2
    assert lib.thumbnail_path(big.sha256).stat().st_size < lib.store.path(big.file).stat().st_size
    # the small JPEG is its own thumbnail again
    small_original = lib.store.path(small.file).read_bytes()
    assert lib.thumbnail_path(small.sha256).read_bytes() == small_original
    assert verify(lib).ok and not verify(lib).warnings


def test_a_changed_original_is_an_error_that_repair_does_not_hide(lib: Library) -> None:
    stored = add(lib, 300, 300)
    path = lib.store.path(stored.file)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    # the thumbnail is the same file here: replace, as an editor would, not write through
    tampered = path.with_name("edited")
    tampered.write_bytes(bytes(data))
    os.replace(tampered, path)
    for repair in (False, True):
        report = verify(lib, repair=repair)
        assert not report.ok
        assert any("checksum does not match" in e for e in report.errors)


def test_an_original_without_a_row_is_an_error_and_never_deleted(lib: Library) -> None:
    """Rows can be lost (a truncated WAL, an older database restored): their originals
    are reported, and --repair moves them to quarantine/, never deletes them."""
    add(lib, 640, 480)
    orphan = ingest_bytes(encode(skin_like(320, 240, seed=5)), lib.store)  # files, no row
    assert isinstance(orphan, StoredFile)
    for rel in (orphan.file, lib.store.thumb_rel(orphan.sha256)):
        age(lib.store.path(rel))
    report = verify(lib)
    assert not report.ok and any("1 originals/masks have no row" in e for e in report.errors)
    report = verify(lib, repair=True)
    assert any("moved 1 originals/masks" in r for r in report.repaired)
    assert any("removed 1 thumbnails of no image" in r for r in report.repaired)
    kept = lib.root / "quarantine" / orphan.file
    assert kept.read_bytes() == encode(skin_like(320, 240, seed=5))
    after = verify(lib)
    assert after.ok and any("1 files in quarantine/" in w for w in after.warnings)


def test_a_running_import_s_new_originals_are_not_called_lost(lib: Library) -> None:
    add(lib, 640, 480)
    with lib.store.writing("import"):
        ingest_bytes(encode(skin_like(320, 240, seed=6)), lib.store)  # its row comes later
        report = verify(lib, repair=True)
        assert report.ok and any("an import is running" in w for w in report.warnings)
        assert not (lib.root / "quarantine").exists()
    assert not verify(lib).ok  # the import ended without writing the row


def test_a_backup_copies_every_file_and_verifies(lib: Library, tmp_path: Path) -> None:
    from dermdesk.library.backup import backup

    big, small = add(lib, 640, 480), add(lib, 300, 300, seed=1)
    result = backup(lib, tmp_path / "bak")
    assert result.images == 2 and result.files == 4
    with Library.open(tmp_path / "bak") as copy:
        assert verify(copy).ok and not verify(copy).warnings
        for stored in (big, small):
            assert (
                copy.thumbnail_path(stored.sha256).read_bytes()
                == lib.thumbnail_path(stored.sha256).read_bytes()
            )
    files = [lib.store.path(s.file) for s in (big, small)]
    files += [lib.thumbnail_path(s.sha256) for s in (big, small)]
    assert result.bytes == sum(p.stat().st_size for p in files)


def test_repair_unlinks_thumbnails_that_are_their_original(lib: Library) -> None:
    """Libraries before 2026-12 hard-linked small JPEGs' thumbnails to the originals."""
    small = add(lib, 300, 300, seed=1)
    original, thumb = lib.store.path(small.file), lib.thumbnail_path(small.sha256)
    thumb.unlink()
    os.link(original, thumb)
    assert any("their original's own file" in w for w in verify(lib).warnings)
    report = verify(lib, repair=True)
    assert report.repaired == ["gave 1 thumbnails a file of their own (no metadata)"]
    assert thumb.stat().st_ino != original.stat().st_ino
    assert verify(lib).ok and not verify(lib).warnings


def test_a_backup_that_fails_midway_leaves_nothing_under_its_name(
    lib: Library, tmp_path: Path, monkeypatch: object
) -> None:
    import errno
    import shutil

    import pytest

    from dermdesk.library import LibraryError
    from dermdesk.library.backup import backup

    for seed in range(4):
        add(lib, 640, 480, seed=seed)
    copies = []
    real_copy = shutil.copy2

    def copy_until_full(src: object, dst: object) -> object:
        if len(copies) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        copies.append(dst)
        return real_copy(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil, "copy2", copy_until_full)  # type: ignore[attr-defined]
    with pytest.raises(LibraryError, match="disk is full"):
        backup(lib, tmp_path / "usb" / "bak")
    assert copies and list((tmp_path / "usb").iterdir()) == []  # no half backup, no temp
    monkeypatch.undo()  # type: ignore[attr-defined]
    assert backup(lib, tmp_path / "usb" / "bak").images == 4
    assert [p.name for p in (tmp_path / "usb").iterdir()] == ["bak"]
