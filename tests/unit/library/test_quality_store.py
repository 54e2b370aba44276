"""Quality findings, estimated skin tones and hashes in a real library."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.imaging.quality import CHECKER_VERSION, assess
from dermdesk.imaging.skintone import Refusal
from dermdesk.library import ImageFilter, Library
from dermdesk.library import quality_store as qs
from dermdesk.library.audit import verify_chain
from dermdesk.library.records import ImageRecord, SkinToneIn
from dermdesk.library.verify import verify
from tests.helpers import encode, skin_like


def add(lib: Library, data: bytes, checks: bool = False) -> str:
    stored = ingest_bytes(data, lib.store, checks=checks)
    status, sha = lib.add_images([ImageRecord(stored=stored)])[0]  # type: ignore[arg-type]
    assert status == "added"
    return sha


def test_findings_are_stored_one_row_per_check_and_replaced_on_rerun(lib: Library) -> None:
    data = encode(skin_like(), "JPEG", quality=90)
    sha = add(lib, data)
    assert qs.stale_ids(lib) == [sha]
    assessment = assess(data)
    qs.save_assessments(lib, [(sha, assessment)])
    rows = qs.findings(lib, sha)
    names = [r["check_name"] for r in rows]
    assert names[0] == "sharpness" and "duplicate" in names and len(names) == len(set(names))
    assert {r["checker_version"] for r in rows} == {CHECKER_VERSION}
    assert qs.stale_ids(lib) == []
    qs.save_assessments(lib, [(sha, assessment)])
    assert len(qs.findings(lib, sha)) == len(rows)
    assert [e["action"] for e in lib.audit_entries(sha)].count("quality.check") == 2
    assert verify_chain(lib.conn)[1] is None


def test_an_older_checker_version_makes_an_image_stale(lib: Library) -> None:
    data = encode(skin_like(), "JPEG", quality=90)
    sha = add(lib, data)
    qs.save_assessments(lib, [(sha, replace(assess(data), checker_version="0.9"))])
    assert qs.stale_ids(lib) == [sha]
    assert qs.stale_ids(lib, ImageFilter(modality=["dermoscopic"])) == []


def test_estimate_is_stored_but_a_manual_rating_wins(lib: Library) -> None:
    data = encode(skin_like(), "JPEG", quality=90)
    sha = add(lib, data)
    assessment = assess(data)
    estimate = assessment.skin_tone
    assert not isinstance(estimate, Refusal)
    qs.save_assessments(lib, [(sha, assessment)])
    row = lib.image(sha)
    assert (row["fitzpatrick"], row["fitzpatrick_est"]) == (None, estimate.fitzpatrick)
    manual = 6 if estimate.fitzpatrick != 6 else 1
    lib.set_skin_tone([sha], SkinToneIn(fitzpatrick=manual, method="manual", rater="nurse"))
    assert lib.image(sha)["fitzpatrick"] == manual
    qs.save_assessments(lib, [(sha, assessment)])  # the same estimate again: no new row
    tones = lib.skin_tones(sha)
    assert [(t["method"], t["is_current"]) for t in tones] == [
        ("estimated", 1),
        ("manual", 1),
    ]
    assert tones[0]["ita"] == estimate.ita and tones[0]["confidence"] == estimate.confidence
    row = lib.image(sha)
    assert row["fitzpatrick"] == manual and row["fitzpatrick_est"] == estimate.fitzpatrick
    assert row["monk"] is None and row["monk_est"] == estimate.monk  # never taken as rated


def test_a_refusal_withdraws_an_earlier_estimate(lib: Library) -> None:
    data = encode(skin_like(), "JPEG", quality=90)
    sha = add(lib, data)
    assessment = assess(data)
    qs.save_assessments(lib, [(sha, assessment)])
    refused = replace(assessment, skin_tone=Refusal("skin too dark"), checker_version="2")
    qs.save_assessments(lib, [(sha, refused)])
    assert lib.image(sha)["fitzpatrick_est"] is None
    assert [t["is_current"] for t in lib.skin_tones(sha)] == [0]
    assert verify(lib, checksums=False).ok


def test_duplicate_pictures_flag_each_other(lib: Library) -> None:
    rgb = skin_like(seed=3)
    first = add(lib, encode(rgb, "JPEG", quality=90), checks=True)
    other = add(lib, encode(skin_like(seed=4)[:, ::-1].copy(), "PNG"), checks=True)
    again = add(lib, encode(rgb, "PNG"), checks=True)  # same picture, other file
    verdict = {
        sha: {r["check_name"]: r for r in qs.findings(lib, sha)}["duplicate"]
        for sha in (first, other, again)
    }
    assert verdict[again]["verdict"] == "warn" and first[:12] in verdict[again]["reason"]
    assert verdict[first]["verdict"] == "warn" and again[:12] in verdict[first]["reason"]
    assert verdict[other]["verdict"] in ("pass", "warn")
    counts = qs.flatten(qs.verdict_counts(lib))
    assert sum(counts["duplicate"].values()) == 3


def test_import_checks_the_same_decode_and_stores_everything(lib: Library, tmp_path: Path) -> None:
    sha = add(lib, encode(skin_like(), "JPEG", quality=90), checks=True)
    rows = {r["check_name"]: r for r in qs.findings(lib, sha)}
    assert rows["compression"]["score"] == 90
    assert lib.conn.execute("SELECT phash FROM image_hash WHERE image_id = ?", (sha,)).fetchone()
    assert qs.stale_ids(lib) == []
    assert lib.count(ImageFilter(quality="unchecked")) == 0
    assert verify(lib, checksums=True).ok


def test_quality_filter_sees_failures(lib: Library) -> None:
    good = add(lib, encode(skin_like(), "JPEG", quality=90), checks=True)
    black = add(lib, encode(np.zeros((200, 200, 3), np.uint8), "PNG"), checks=True)
    failed = lib.images(ImageFilter(quality="fail"))
    assert black in [r["id"] for r in failed] and good not in [r["id"] for r in failed]
