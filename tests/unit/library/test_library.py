"""The library's writer API, history, audit chain and listings on a real SQLite file."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.audit import verify_chain
from dermdesk.library.db import DB_NAME
from dermdesk.library.records import ImageRecord, LabelIn, LesionRef, PatientRef, SkinToneIn
from dermdesk.library.schema import LATEST_VERSION
from dermdesk.library.verify import verify
from tests.helpers import encode, skin_like


def add(lib: Library, seed: int = 0, **kwargs: object) -> str:
    stored = ingest_bytes(encode(skin_like(seed=seed)), lib.store)
    status, sha = lib.add_images([ImageRecord(stored=stored, **kwargs)])[0]  # type: ignore[arg-type]
    assert status == "added"
    return sha


def test_new_library_uses_wal_foreign_keys_and_latest_schema(lib: Library) -> None:
    assert lib.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert lib.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert lib.conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    for table in (
        "patient",
        "lesion",
        "image",
        "label",
        "skin_tone",
        "quality",
        "prediction",
        "model",
        "job",
        "audit",
    ):
        assert table in lib.db.table_names()


def test_adding_the_same_bytes_twice_is_a_no_op(lib: Library) -> None:
    sha = add(lib)
    stored = ingest_bytes(encode(skin_like(seed=0)), lib.store)
    assert lib.add_images([ImageRecord(stored=stored)]) == [("exists", sha)]
    assert lib.count() == 1


def test_patient_and_lesion_are_shared_by_external_id(lib: Library) -> None:
    pat = PatientRef("clinic", "MRN-1")
    les = LesionRef("clinic", "L1", "back")
    a = add(lib, 1, patient=pat, lesion=les)
    b = add(lib, 2, patient=pat, lesion=les)
    ia, ib = lib.image(a), lib.image(b)
    assert ia["patient_id"] == ib["patient_id"] and ia["patient_id"].startswith("P-")
    assert ia["lesion_id"] == ib["lesion_id"]
    assert lib.lesion(ia["lesion_id"])["body_site"] == "back"
    # the pseudonymous id is not the external one
    assert "MRN" not in ia["patient_id"]


def test_label_edits_keep_history_and_audit(lib: Library) -> None:
    sha = add(lib, label=LabelIn("NEV", "single_expert", "dr-a"))
    lib.set_label([sha], "MEL", certainty="histopathology", annotator="dr-b")
    history = lib.label_history(sha)
    assert [h["diagnosis"] for h in history] == ["NEV", "MEL"]
    assert [h["is_current"] for h in history] == [0, 1]
    assert lib.image(sha)["diagnosis"] == "MEL"
    entries = [e for e in lib.audit_entries(sha) if e["action"] == "label.set"]
    assert '"NEV"' in entries[-1]["before"] and '"MEL"' in entries[-1]["after"]
    lib.clear_label([sha])
    assert lib.image(sha)["diagnosis"] is None
    assert len(lib.label_history(sha)) == 2


def test_restoring_an_earlier_label_keeps_who_gave_it(lib: Library) -> None:
    """What undo does: the dataset's own label row comes back, not a copy by the curator."""
    sha = add(lib, label=LabelIn("NEV", "histopathology", "dataset:ham10000"))
    original = lib.current_label(sha)
    lib.set_label([sha], "MEL")
    lib.restore_labels({sha: original["id"]})
    back = lib.current_label(sha)
    assert back == original  # same row: annotator, certainty and time as they were
    assert lib.image(sha)["diagnosis"] == "NEV"
    assert [e["action"] for e in lib.audit_entries(sha)][-1] == "label.restore"
    lib.restore_labels({sha: None})
    assert lib.image(sha)["diagnosis"] is None and lib.current_label(sha) is None
    with pytest.raises(LibraryError, match="has no label"):
        lib.restore_labels({sha: 10_000})
    assert verify(lib, checksums=False).ok


def test_restoring_an_earlier_rating_keeps_its_rater(lib: Library) -> None:
    sha = add(lib, skin_tones=[SkinToneIn(fitzpatrick=5, method="manual", rater="dataset:f17k")])
    (original,) = lib.skin_tones(sha)
    lib.set_skin_tone([sha], SkinToneIn(fitzpatrick=3, method="manual", rater="curator"))
    lib.restore_skin_tones({sha: original["id"]})
    current = [t for t in lib.skin_tones(sha) if t["is_current"]]
    assert current == [original]
    assert lib.image(sha)["fitzpatrick"] == 5
    assert [e["action"] for e in lib.audit_entries(sha)][-1] == "skin_tone.restore"
    lib.restore_skin_tones({sha: None})
    assert lib.image(sha)["fitzpatrick"] is None
    assert verify(lib, checksums=False).ok


def test_unknown_codes_are_refused_with_a_clear_error(lib: Library) -> None:
    sha = add(lib)
    with pytest.raises(LibraryError, match="unknown diagnosis code 'XYZ'"):
        lib.set_label([sha], "XYZ")
    with pytest.raises(LibraryError, match="no such image"):
        lib.set_label(["0" * 64], "MEL")
    with pytest.raises(LibraryError, match="not editable"):
        lib.update_image(sha, file="x")


def test_a_rating_and_an_estimate_are_kept_apart(lib: Library) -> None:
    """An estimate never fills the rated columns, so nothing counts it as a rating."""
    sha = add(lib)
    lib.set_skin_tone([sha], SkinToneIn(fitzpatrick=2, method="estimated", ita=45.0, rater="ita"))
    row = lib.image(sha)
    assert (row["fitzpatrick"], row["fitzpatrick_est"]) == (None, 2)
    lib.set_skin_tone([sha], SkinToneIn(fitzpatrick=5, monk=8, method="manual", rater="nurse"))
    lib.set_skin_tone([sha], SkinToneIn(fitzpatrick=3, method="estimated", rater="ita"))
    row = lib.image(sha)
    assert (row["fitzpatrick"], row["monk"], row["fitzpatrick_est"], row["monk_est"]) == (
        5,
        8,
        3,
        None,
    )
    assert len(lib.skin_tones(sha)) == 3
    assert lib.count(ImageFilter(fitzpatrick=[3])) == 0  # rated 5: the estimate does not count
    assert lib.count(ImageFilter(fitzpatrick=[3], tone="estimated")) == 1
    assert lib.count(ImageFilter(fitzpatrick=[5], tone="rated")) == 1


TONES = [
    SkinToneIn(fitzpatrick=2, monk=3, method="estimated", ita=45.0, rater="ita"),
    SkinToneIn(fitzpatrick=5, method="manual", rater="nurse"),
    SkinToneIn(fitzpatrick=3, monk=4, method="estimated", rater="ita"),
]


def _history(lib: Library, sha: str) -> tuple[object, ...]:
    row = lib.image(sha)
    tones = [
        (t["method"], t["fitzpatrick"], t["monk"], t["is_current"]) for t in lib.skin_tones(sha)
    ]
    audit = [(e["action"], e["before"], e["after"]) for e in lib.audit_entries(sha)]
    values = (row["diagnosis"], row["fitzpatrick"], row["monk"], row["fitzpatrick_est"])
    return (*values, row["monk_est"], sorted(tones), audit)


@pytest.mark.parametrize("tones", [TONES, TONES[:1], TONES[1:2], []])
def test_a_new_image_with_label_and_tones_equals_adding_then_editing(
    tmp_path: Path, tones: list[SkinToneIn]
) -> None:
    """Import writes a new image's current values in one go; the result, audit
    included, must be what adding the bare image and then editing it gives."""
    with (
        Library.open(tmp_path / "a", actor="t") as at_once,
        Library.open(tmp_path / "b", actor="t") as edited,
    ):
        sha = add(at_once, label=LabelIn("BCC", "histopathology", "dr-a"), skin_tones=tones)
        add(edited)
        edited.set_label([sha], "BCC", certainty="histopathology", annotator="dr-a")
        for tone in tones:
            edited.set_skin_tone([sha], tone)
        rated = [t.fitzpatrick for t in tones if t.method == "manual"]
        assert at_once.image(sha)["fitzpatrick"] == (rated[-1] if rated else None)
        a, b = _history(at_once, sha), _history(edited, sha)
        assert a[:6] == b[:6]
        # the same entries, except that the edited copy logs its bare add first
        assert [e for e in a[6] if e[0] != "image.add"] == [e for e in b[6] if e[0] != "image.add"]
        assert verify_chain(at_once.conn)[1] is None


def test_device_edit_is_audited_with_before_and_after(lib: Library) -> None:
    sha = add(lib)
    lib.update_image(sha, device_make="Apple", device_model="iPhone 15", modality="clinical")
    assert lib.image(sha)["device_model"] == "iPhone 15"
    entry = lib.audit_entries(sha)[-1]
    assert entry["action"] == "image.update" and "iPhone 15" in entry["after"]


def test_audit_chain_detects_edits_and_deletions(lib: Library) -> None:
    sha = add(lib, label=LabelIn("NEV"))
    lib.set_label([sha], "MEL")
    count, problem = verify_chain(lib.conn)
    assert count >= 3 and problem is None
    raw = sqlite3.connect(lib.root / DB_NAME)
    raw.execute("UPDATE audit SET after = replace(after, 'MEL', 'NEV') WHERE action = 'label.set'")
    raw.commit()
    assert "does not match its hash" in (verify_chain(lib.conn)[1] or "")
    raw.execute("DELETE FROM audit WHERE id = 1")
    raw.commit()
    raw.close()
    assert verify_chain(lib.conn)[1] is not None


def test_filters_combine(lib: Library) -> None:
    a = add(lib, 1, label=LabelIn("MEL"), modality="dermoscopic")
    b = add(lib, 2, label=LabelIn("MEL"), modality="clinical")
    add(lib, 3, label=LabelIn("NEV"), modality="clinical")
    add(lib, 4)
    lib.set_skin_tone([b], SkinToneIn(fitzpatrick=6))
    assert {r["id"] for r in lib.images(ImageFilter(diagnosis=["MEL"]))} == {a, b}
    assert [r["id"] for r in lib.images(ImageFilter(diagnosis=["MEL"], fitzpatrick=[5, 6]))] == [b]
    assert lib.count(ImageFilter(labelled=False)) == 1
    assert lib.count(ImageFilter(modality=["clinical"], labelled=True)) == 2
    assert lib.image(a[:8])["id"] == a


def test_free_text_search_finds_names_ids_and_the_current_condition(lib: Library) -> None:
    a = add(lib, 1, original_name="Röntgen arm 2024.jpg", dataset_image_id="ISIC_0012345")
    b = add(lib, 2, label=LabelIn("OTHER", free_text="granuloma annulare"))
    add(lib, 3)

    def found(text: str) -> set[str]:
        ids = {r["id"] for r in lib.images(ImageFilter(text=text))}
        assert lib.count(ImageFilter(text=text)) == len(ids)
        return ids

    assert found("röntgen ARM") == {a}  # substring, case-insensitive, unicode
    assert found("0012345") == {a}
    assert found("annular") == {b}
    assert found(b[:6].upper()) == {b}  # an id prefix
    assert found("nu") == {b}  # shorter than a trigram still matches
    assert found("psoriasis") == set()
    # A relabel replaces the searchable condition; the old one no longer matches.
    lib.set_label([b], "OTHER", free_text="psoriasis vulgaris")
    assert found("psoriasis") == {b} and found("granuloma") == set()
    lib.set_label([b], "MEL")  # a label without a condition text replaces it
    assert found("psoriasis") == set() and found(b[:6]) == {b}
    lib.set_label([b], "OTHER", free_text="psoriasis vulgaris")
    lib.clear_label([b])
    assert found("psoriasis") == set()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Library.open(tmp_path / "lib").close()
    raw = sqlite3.connect(tmp_path / "lib" / DB_NAME)
    raw.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    raw.close()
    with pytest.raises(LibraryError, match="newer than this dermdesk"):
        Library.open(tmp_path / "lib")


def test_opening_a_missing_library_without_create_says_so(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no library here"):
        Library.open(tmp_path / "nothing", create=False)


def test_locked_library_gives_a_one_line_error(tmp_path: Path) -> None:
    Library.open(tmp_path / "lib").close()
    holder = sqlite3.connect(tmp_path / "lib" / DB_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        lib = Library.open(tmp_path / "lib", busy_timeout_s=0.2)
        with pytest.raises(LibraryError, match="locked by another process"):
            add(lib)
        lib.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Library.open(tmp_path / "lib") as lib:  # usable again once the lock is gone
        add(lib)
        assert lib.count() == 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_new_library_and_its_backups_are_owner_only(tmp_path: Path) -> None:
    from dermdesk.library.backup import backup
    from dermdesk.library.verify import verify

    old = os.umask(0o022)  # a usual desktop umask: files would be 0644, folders 0755
    try:
        with Library.open(tmp_path / "lib") as lib:
            add(lib)
            backup(lib, tmp_path / "bak")
            assert verify(lib).warnings == []
        for folder in (tmp_path / "lib", tmp_path / "bak"):
            assert folder.stat().st_mode & 0o777 == 0o700
            assert (folder / DB_NAME).stat().st_mode & 0o777 == 0o600
        (tmp_path / "lib").chmod(0o755)
        with Library.open(tmp_path / "lib") as lib:
            warnings = verify(lib).warnings
        assert any(
            "library folder is open to other users of this computer (mode 0755)" in w
            for w in warnings
        )
    finally:
        os.umask(old)
