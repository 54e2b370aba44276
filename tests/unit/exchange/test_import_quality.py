"""Import runs the quality checks and detects the modality of plain photos."""

from __future__ import annotations

import shutil
from pathlib import Path

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import ImageFilter, Library
from dermdesk.library import quality_store as qs

HAM = "ham10000/images/ISIC_0030002.jpg"
PAD = "pad_ufes_20/images/PAT_858_1632_977.jpg"


def photos(shared_data: Path, folder: Path) -> Path:
    folder.mkdir()
    for rel in (HAM, PAD):
        shutil.copy(shared_data / rel, folder / Path(rel).name)
    return folder


def test_plain_photos_get_their_detected_modality(
    lib: Library, shared_data: Path, tmp_path: Path
) -> None:
    report = run_import(lib, plan_path(photos(shared_data, tmp_path / "in")).items, workers=2)
    assert len(report.added) == 2 and not report.refused
    by_name = {r["original_name"]: r for r in lib.images()}
    assert by_name["ISIC_0030002.jpg"]["modality"] == "dermoscopic"
    assert by_name["PAT_858_1632_977.jpg"]["modality"] == "clinical"
    for row in by_name.values():
        assert {r["check_name"] for r in qs.findings(lib, row["id"])} >= {"sharpness", "modality"}
    assert lib.count(ImageFilter(quality="unchecked")) == 0


def test_an_explicit_modality_is_kept_and_contradictions_are_flagged(
    lib: Library, shared_data: Path, tmp_path: Path
) -> None:
    run_import(lib, plan_path(photos(shared_data, tmp_path / "in"), "clinical").items)
    ham = next(r for r in lib.images() if r["original_name"] == "ISIC_0030002.jpg")
    assert ham["modality"] == "clinical"
    finding = {r["check_name"]: r for r in qs.findings(lib, ham["id"])}["modality"]
    assert finding["verdict"] == "warn" and "looks dermoscopic" in finding["reason"]


def test_datasets_keep_their_modality_and_import_can_skip_checks(
    lib: Library, shared_data: Path
) -> None:
    plan = plan_path(shared_data / "ph2")
    report = run_import(lib, plan.items[:5], checks=False)
    assert len(report.added) == 5
    assert {r["modality"] for r in lib.images()} == {"dermoscopic"}
    assert lib.count(ImageFilter(quality="unchecked")) == 5
