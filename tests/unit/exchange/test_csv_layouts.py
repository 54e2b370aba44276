"""CSV layouts the built-in importers do not know (issue 14, part 2), over real images:
one row per lesion with a clinical and a dermoscopic photo, a dataset's own words mapped
by a value map, a file named in two columns, a name in another case, and broken mapping
files and headers refused with their file, line and column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dermdesk.exchange.csvmap import (
    distinct_values,
    parse_image_columns,
    parse_mapping,
    parse_value_maps,
    plan_csv,
    preview_value,
)
from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.exchange.tables import DatasetError
from dermdesk.library import Library
from tests.e2e.test_cli import run

MAP = ["file=clinic:clinical", "file=derm:dermoscopic", "diagnosis=dx", "lesion=lesion_id"]
MAP += ["patient=patient_id", "body_site=site"]


@pytest.fixture
def per_lesion(shared_data: Path, tmp_path: Path) -> Path:
    """A study table: one row per lesion, a clinical (PAD-UFES-20) and a dermoscopic
    (HAM10000) photo per row, free-text diagnoses with subtypes, the study's own words."""
    clinical = [i.path for i in plan_path(shared_data / "pad_ufes_20").items[:4]]
    derm = [i.path for i in plan_path(shared_data / "ham10000").items[:4]]
    folder = tmp_path / "study"
    (folder / "clinic").mkdir(parents=True)
    (folder / "derm").mkdir()
    for p in clinical:
        shutil.copy(p, folder / "clinic" / p.name)
    for p in derm:
        shutil.copy(p, folder / "derm" / p.name)
    rows = [
        ("P1", "L1", "mm in situ", "both legs", clinical[0].name, derm[0].name),
        ("P1", "L2", "Spitz naevus", "back", clinical[1].name, derm[1].name),
        ("P2", "L3", "bcc nodular type", "elbow pit", clinical[2].name, ""),  # no derm photo
        ("P3", "L4", "SK", "trunk", clinical[3].name, derm[3].name),
    ]
    lines = ["patient_id;lesion_id;dx;site;clinic;derm;sex"]
    lines += [
        f"{p};{les};{dx};{s};clinic/{c};{'derm/' + d if d else ''};F"
        for p, les, dx, s, c, d in rows
    ]
    csv_path = folder / "study.csv"
    csv_path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (folder / "dx_map.csv").write_text("value,target\nmm in situ,MEL\nSK,SEK\n", encoding="utf-8")
    return csv_path


def test_one_row_per_lesion_with_two_photos_and_value_maps(lib: Library, per_lesion: Path) -> None:
    maps = parse_value_maps(
        [f"diagnosis={per_lesion.parent / 'dx_map.csv'}", "body_site:Elbow  pit=forearm"]
    )
    plan = plan_csv(
        per_lesion,
        parse_mapping(MAP),
        dataset="study",
        image_columns=parse_image_columns(MAP),
        value_maps=maps,
    )
    assert not plan.refused, plan.refused
    assert len(plan.items) == 7  # 4 clinical + 3 dermoscopic photos
    report = run_import(lib, plan.items, checks=False)
    assert len(report.added) == 7
    rows = lib.images(order="id")
    by_modality: dict[str, int] = {}
    for r in rows:
        by_modality[r["modality"]] = by_modality.get(r["modality"], 0) + 1
    assert by_modality == {"clinical": 4, "dermoscopic": 3}
    lesions = {r["lesion_id"] for r in rows}
    assert len(lesions) == 4  # both photos of a lesion share it
    patients = {r["patient_id"] for r in rows}
    assert len(patients) == 3
    first = [r for r in rows if lib.lesion(r["lesion_id"])["body_site"] == "lower_extremity"]
    assert {r["modality"] for r in first} == {"clinical", "dermoscopic"}
    assert {r["diagnosis"] for r in first} == {"MEL"}  # mapped by the value-map file
    diagnoses = sorted(r["diagnosis"] for r in rows)
    assert diagnoses == ["BCC", "MEL", "MEL", "NEV", "NEV", "SEK", "SEK"]
    forearm = [r for r in rows if r["diagnosis"] == "BCC"]
    assert lib.lesion(forearm[0]["lesion_id"])["body_site"] == "forearm"  # inline map
    assert all(json.loads(r["extra"]) == {"sex": "F"} for r in rows)  # kept, not dropped


def test_the_preview_shows_what_each_value_becomes(per_lesion: Path) -> None:
    mapping = parse_mapping(MAP)
    values = distinct_values(per_lesion, mapping)
    assert values["diagnosis"] == {
        "mm in situ": 1,
        "Spitz naevus": 1,
        "bcc nodular type": 1,
        "SK": 1,
    }
    maps = parse_value_maps([f"diagnosis={per_lesion.parent / 'dx_map.csv'}"])
    assert preview_value("diagnosis", "mm in situ", maps) == "MEL"
    assert preview_value("diagnosis", "MM  In Situ", maps) == "MEL"  # case and spaces ignored
    assert preview_value("diagnosis", "Spitz naevus", maps) == "NEV (Spitz naevus)"
    assert preview_value("body_site", "elbow pit", {}) == "kept as text (not in the vocabulary)"
    assert preview_value("body_site", "both legs", {}) == "lower_extremity"


def test_a_file_in_two_columns_is_one_image_with_a_warning(lib: Library, per_lesion: Path) -> None:
    text = per_lesion.read_bytes().decode("latin-1").splitlines()
    cells = text[1].split(";")
    cells[5] = cells[4]  # the clinical photo named as the dermoscopic one too
    text[1] = ";".join(cells)
    per_lesion.write_text("\n".join(text) + "\n", encoding="utf-8")
    plan = plan_csv(per_lesion, parse_mapping(MAP), image_columns=parse_image_columns(MAP))
    assert len(plan.items) == 6 and not plan.refused
    warning = next(w for w in plan.warnings if "named in columns" in w)
    assert "'clinic' and 'derm'" in warning and "imported once, as clinical" in warning


def test_a_name_in_another_case_is_found_with_a_warning(per_lesion: Path) -> None:
    text = per_lesion.read_bytes().decode("latin-1")
    name = text.splitlines()[1].split(";")[4].split("/")[1]
    per_lesion.write_text(text.replace(name, name.upper()), encoding="utf-8")
    plan = plan_csv(per_lesion, parse_mapping(MAP), image_columns=parse_image_columns(MAP))
    assert len(plan.items) == 7 and not plan.refused
    assert any("(another case)" in w and "line 2 (clinic)" in w for w in plan.warnings)


def test_broken_value_maps_and_headers_are_refused_with_where(
    per_lesion: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("mm in situ,MEL\nSK\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.csv line 2: a value map has two columns"):
        parse_value_maps([f"diagnosis={bad}"])
    bad.write_text("mm in situ,a lump\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.csv line 1: maps diagnosis to 'a lump' is no"):
        parse_value_maps([f"diagnosis={bad}"])
    with pytest.raises(DatasetError, match="maps body_site to 'the moon' is no body site"):
        parse_value_maps(["body_site:leg=the moon"])
    with pytest.raises(DatasetError, match="no such file"):
        parse_value_maps([f"diagnosis={tmp_path / 'missing.csv'}"])
    with pytest.raises(DatasetError, match="unknown modality 'xray'"):
        parse_image_columns(["file=clinic:xray"])
    twice = per_lesion.read_bytes().decode("latin-1").replace(";sex", ";dx", 1)
    per_lesion.write_text(twice, encoding="utf-8")
    with pytest.raises(DatasetError, match=r"column 'dx' appears 2 times .* rename all but one"):
        plan_csv(per_lesion, parse_mapping(MAP), image_columns=parse_image_columns(MAP))


def test_the_cli_imports_two_photos_per_row(per_lesion: Path, tmp_path: Path) -> None:
    home = tmp_path / "lib"
    args = [a for m in MAP for a in ("--map", m)]
    out = run(
        home,
        "import",
        "--csv",
        per_lesion,
        *args,
        "--map-values",
        f"diagnosis={per_lesion.parent / 'dx_map.csv'}",
        "--map-values",
        "body_site:Elbow  pit=forearm",
        "--dataset",
        "study",
        "--no-checks",
    ).stdout
    assert "7 added" in out
    stats = run(home, "ls", "--modality", "dermoscopic").stdout
    assert stats.count("study") == 3
    bad = run(home, "import", "--csv", per_lesion, *args, "--map-values", "dx=x.csv", check=False)
    assert bad.returncode != 0 and "takes no value map" in bad.stderr
