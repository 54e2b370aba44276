"""Bundled resources resolve from a checkout, an installed wheel and a frozen bundle."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import dermdesk
from dermdesk import resources, taxonomy

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_resources_are_found() -> None:
    path = resources.resource_path("taxonomy.json")
    assert json.loads(path.read_text())["diagnoses"]


def test_frozen_bundle_resources_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "resources").mkdir(parents=True)
    (bundle / "resources" / "only-in-bundle.txt").write_text("frozen")
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    assert resources.resource_path("only-in-bundle.txt").read_text() == "frozen"


def test_missing_resource_names_the_places_searched() -> None:
    with pytest.raises(FileNotFoundError, match="looked in"):
        resources.resource_path("no-such-file.json")


@pytest.mark.slow
def test_wheel_contains_the_resources(tmp_path: Path) -> None:
    """Build the real wheel and check the taxonomy is inside, where resource_path looks."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 and "hatchling" in proc.stderr:
        pytest.skip("hatchling is not installed in this environment (needed to build offline)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("dermdesk-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        assert "dermdesk/resources/taxonomy.json" in zf.namelist()


def test_every_dataset_label_maps_into_the_vocabulary() -> None:
    codes = set(taxonomy.diagnoses())
    for dataset, table in taxonomy._raw()["dataset_labels"].items():
        for raw, code in table.items():
            assert code in codes, (dataset, raw)
            assert taxonomy.dataset_label(dataset, raw).code == code


def test_every_group_and_diagnosis_has_a_path_to_the_root() -> None:
    for code in taxonomy.diagnoses():
        assert taxonomy.ancestors(code)[-1] == "lesion"
    assert taxonomy.is_malignant("MEL") and not taxonomy.is_malignant("NEV")
    assert taxonomy.is_malignant("OTHER", "kaposi-sarcoma")
    assert taxonomy.is_malignant("OTHER", "some rash") is None


def test_every_code_has_isic_archive_diagnosis_levels() -> None:
    """diagnosis_1/2/3 come from the Archive's own hierarchy: level 2 is one of its names
    under level 1, and level 1 agrees with the code's malignancy."""
    level2_parent = taxonomy.isic_diagnosis_2()
    expected_level1 = {True: "Malignant", False: "Benign"}
    for code, dx in taxonomy.diagnoses().items():
        level1, level2, level3 = taxonomy.isic_diagnosis(code)
        if code == "OTHER":
            assert (level1, level2, level3) == ("", "", "")
            continue
        assert level2_parent[level2] == level1, code
        if dx.parent == "premalignant":
            assert level1 == "Indeterminate"
        else:
            assert level1 == expected_level1[bool(dx.malignant)], code
    for condition in taxonomy._raw()["other_conditions"]:
        level1, level2, _ = taxonomy.isic_diagnosis("OTHER", condition)
        assert level2_parent[level2] == level1, condition
        assert (level1 == "Malignant") == taxonomy.is_malignant("OTHER", condition), condition
    for subtype in taxonomy._raw()["isic_subtypes"][1:]:
        assert level2_parent[subtype["isic"][1]] == subtype["isic"][0], subtype


@pytest.mark.parametrize(
    ("code", "free_text", "levels"),
    [
        (
            "BCC",
            None,
            (
                "Malignant",
                "Malignant adnexal epithelial proliferations - Follicular",
                "Basal cell carcinoma",
            ),
        ),
        ("NEV", "atypical_nevus", ("Benign", "Benign melanocytic proliferations", "Nevus")),
        (
            "MEL",
            "Melanoma in situ",
            ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma in situ"),
        ),
        (
            "ACK",
            "Bowen's disease",
            ("Malignant", "Malignant epidermal proliferations", "Squamous cell carcinoma in situ"),
        ),
        ("SEK", "bkl", ("Benign", "Benign epidermal proliferations", "Pigmented benign keratosis")),
        ("VASC", None, ("Benign", "Benign soft tissue proliferations - Vascular", "")),
        (
            "OTHER",
            "mycosis-fungoides",
            ("Malignant", "Lymphocytic proliferations - T-Cell/NK", "Mycosis fungoides"),
        ),
        ("OTHER", "some rash", ("", "", "")),
    ],
)
def test_isic_levels_follow_the_kept_wording(
    code: str, free_text: str | None, levels: tuple[str, str, str]
) -> None:
    assert taxonomy.isic_diagnosis(code, free_text) == levels


@pytest.mark.parametrize(
    ("raw", "value"), [("3", 3), ("3.0", 3), ("IV", 4), ("vi", 6), ("-1", None), ("", None), (5, 5)]
)
def test_fitzpatrick_parsing(raw: object, value: int | None) -> None:
    assert taxonomy.parse_fitzpatrick(raw) == value


@pytest.mark.parametrize("raw", ["7", "0", "2.5", "VII", "fair"])
def test_bad_fitzpatrick_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not a Fitzpatrick type"):
        taxonomy.parse_fitzpatrick(raw)


def test_body_sites_of_the_datasets_map() -> None:
    for raw in ("FOREARM", "lower extremity", "upper extremity", "back", "SCALP", "trunk"):
        assert taxonomy.body_site(raw) in taxonomy.body_sites()
    with pytest.raises(ValueError, match="unknown body site"):
        taxonomy.body_site("elbow pit")


def test_package_version_is_exposed() -> None:
    assert dermdesk.__version__.count(".") == 2
