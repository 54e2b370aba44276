"""Tampering the audit log cannot detect by itself, shown by the head file and the replay."""

from __future__ import annotations

import json
from pathlib import Path

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.library import Library
from dermdesk.library.audit import GENESIS, HEAD_FILE, entry_hash, verify_chain
from dermdesk.library.backup import backup
from dermdesk.library.records import ImageRecord, LabelIn
from dermdesk.library.verify import verify
from tests.helpers import encode, skin_like


def library_with_history(lib: Library) -> list[str]:
    ids = []
    for seed in range(3):
        stored = ingest_bytes(encode(skin_like(seed=seed)), lib.store)
        ids += [lib.add_images([ImageRecord(stored=stored, label=LabelIn("NEV"))])[0][1]]
    lib.set_label(ids[:1], "MEL", certainty="histopathology", annotator="dr-a")
    return ids


def recompute_chain(lib: Library) -> None:
    """What a careful forger does after editing an entry: rehash every entry."""
    prev = GENESIS
    rows = lib.conn.execute(
        "SELECT id, at, actor, action, entity, entity_id, before, after FROM audit ORDER BY id"
    ).fetchall()
    for entry_id, at, actor, action, entity, entity_id, before, after in rows:
        h = entry_hash(prev, at, actor, action, entity, entity_id, before, after)
        lib.conn.execute(
            "UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, h, entry_id)
        )
        prev = h


def test_a_clean_library_and_its_backup_verify(lib: Library, tmp_path: Path) -> None:
    library_with_history(lib)
    assert verify(lib, checksums=False).ok
    backup(lib, tmp_path / "bak")
    assert json.loads((tmp_path / "bak" / HEAD_FILE).read_text())["last_id"] > 0
    with Library.open(tmp_path / "bak") as copy:
        assert verify(copy, checksums=False).ok


def test_deleting_the_last_audit_entries_is_found(lib: Library) -> None:
    library_with_history(lib)
    lib.conn.execute("DELETE FROM audit WHERE id > (SELECT max(id) - 2 FROM audit)")
    assert verify_chain(lib.conn)[1] is None  # the chain alone cannot see it
    report = verify(lib, checksums=False)
    assert any("last entries were deleted" in e for e in report.errors)


def test_an_edited_entry_with_a_recomputed_chain_is_found(lib: Library) -> None:
    library_with_history(lib)
    lib.conn.execute(
        "UPDATE audit SET actor = 'someone else' WHERE id = (SELECT max(id) FROM audit)"
    )
    recompute_chain(lib)
    assert verify_chain(lib.conn)[1] is None
    report = verify(lib, checksums=False)
    assert any("edited and its hash chain recomputed" in e for e in report.errors)


def test_a_diagnosis_changed_without_an_audit_entry_is_found(lib: Library) -> None:
    ids = library_with_history(lib)
    lib.conn.execute("UPDATE image SET diagnosis = 'BCC' WHERE id = ?", (ids[1],))
    lib.conn.execute(
        "UPDATE label SET diagnosis = 'BCC' WHERE image_id = ? AND is_current", (ids[1],)
    )
    report = verify(lib, checksums=False)
    assert verify_chain(lib.conn)[1] is None
    assert any(f"{ids[1][:12]} (diagnosis, label)" in e for e in report.errors), report.errors


def test_an_older_database_put_back_is_found(lib: Library, tmp_path: Path) -> None:
    """The head file is written with every transaction: a database restored from before
    the last edits no longer reaches it."""
    import sqlite3

    library_with_history(lib)
    old = sqlite3.connect(tmp_path / "old.sqlite")
    lib.conn.backup(old)
    lib.set_label([lib.images()[0]["id"]], "BCC")
    old.backup(lib.conn)  # the older file's pages put back over the current ones
    old.close()
    report = verify(lib, checksums=False)
    assert any("older database was put back" in e for e in report.errors)
