"""Generic CSV import and broken metadata: each bad row is refused with its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dermdesk.exchange.csvmap import parse_mapping, plan_csv
from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.exchange.tables import DatasetError
from dermdesk.library import Library
from dermdesk.library.verify import verify
from tests.helpers import encode, skin_like


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    (root / "img").mkdir(parents=True)
    for i in range(4):
        (root / "img" / f"p{i}.jpg").write_bytes(encode(skin_like(seed=i), "JPEG"))
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_mapped_csv_imports_labels_patients_tones_and_devices(lib: Library, photos: Path) -> None:
    csv_path = write(
        photos / "labels.csv",
        "path,dx,pid,les,site,fst,camera\n"
        "img/p0.jpg,mel,MRN1,L1,back,V,iPhone 15\n"
        "img/p1.jpg,NEV,MRN1,L2,face,2,\n"
        "img/p2.jpg,granuloma annulare,MRN2,,,6,\n",
    )
    mapping = parse_mapping(
        [
            "file=path",
            "diagnosis=dx",
            "patient=pid",
            "lesion=les",
            "body_site=site",
            "fitzpatrick=fst",
            "device_model=camera",
        ]
    )
    plan = plan_csv(csv_path, mapping, dataset="clinic-a")
    report = run_import(lib, plan.items)
    assert len(report.added) == 3 and not report.refused
    assert any("granuloma annulare" in w and "OTHER" in w for w in plan.warnings)
    rows = {r["original_name"]: r for r in lib.images()}
    assert rows["p0.jpg"]["diagnosis"] == "MEL" and rows["p0.jpg"]["fitzpatrick"] == 5
    assert rows["p0.jpg"]["device_model"] == "iPhone 15"
    assert rows["p0.jpg"]["patient_id"] == rows["p1.jpg"]["patient_id"]
    assert rows["p2.jpg"]["diagnosis"] == "OTHER"
    assert lib.current_label(rows["p2.jpg"]["id"])["free_text"] == "granuloma annulare"


def test_missing_columns_refuse_the_whole_file(photos: Path) -> None:
    csv_path = write(photos / "labels.csv", "path,dx\nimg/p0.jpg,MEL\n")
    with pytest.raises(DatasetError, match=r"missing required column.*patient_code"):
        plan_csv(csv_path, parse_mapping(["file=path", "patient=patient_code"]))


def test_bad_rows_are_refused_one_line_each(lib: Library, photos: Path) -> None:
    csv_path = write(
        photos / "labels.csv",
        "file,diagnosis,fitzpatrick\n"
        "img/p0.jpg,MEL,3\n"
        "img/p0.jpg,NEV,3\n"  # duplicate image
        "../../etc/passwd,MEL,2\n"  # escapes the dataset folder
        "img/missing.jpg,MEL,2\n"
        "img/p1.jpg,MEL,9\n"  # not a Fitzpatrick type
        "img/p2.jpg,MEL,2\n",
    )
    plan = plan_csv(csv_path)
    reasons = dict(plan.refused)
    assert "duplicate image 'img/p0.jpg' (first on line 2)" in reasons["labels.csv line 3"]
    assert "is outside the dataset folder" in reasons["labels.csv line 4"]
    assert "image file not found" in reasons["labels.csv line 5"]
    assert "not a Fitzpatrick type" in reasons["labels.csv line 6"]
    report = run_import(lib, plan.items)
    assert len(report.added) == 2
    assert verify(lib).ok


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"file,diagnosis\n\xff\xfe\x00bad", "not UTF-8"),
        (b'file,diagnosis\n"img/p0.jpg,MEL\n', "more values|malformed|not found"),
        (b"file,diagnosis\nimg/p0.jpg,MEL,extra,cells\n", "4 values but the header has 2"),
        (b"", "no file column"),
    ],
    ids=["binary", "unclosed-quote", "extra-cells", "empty"],
)
def test_malformed_csv_files(photos: Path, content: bytes, reason: str) -> None:
    csv_path = photos / "labels.csv"
    csv_path.write_bytes(content)
    try:
        plan = plan_csv(csv_path)
    except DatasetError as exc:
        message = str(exc)
    else:
        assert not plan.items
        message = plan.refused[0][1]
    assert re.search(reason, message), message


def test_a_malformed_row_is_refused_by_line_and_the_rest_imported(
    lib: Library, photos: Path
) -> None:
    """An unterminated quote once made "MEL,P1" a diagnosis and swallowed the next rows."""
    csv_path = write(
        photos / "labels.csv",
        "file,diagnosis,patient\n"
        'img/p0.jpg,"MEL,P1\n'  # the quote is never closed
        "img/p1.jpg,NEV,P2\n"
        "img/p2.jpg,BC\x00C,P3\n"
        f"img/p3.jpg,{'x' * 120_000},P4\n",
    )
    plan = plan_csv(csv_path)
    reasons = dict(plan.refused)
    assert "quote is opened and not closed" in reasons["labels.csv line 2"]
    assert "NUL byte" in reasons["labels.csv line 4"]
    assert "120,000 characters" in reasons["labels.csv line 5"]
    assert all(len(why) < 120 for why in reasons.values())  # short, even for a huge cell
    assert [i.path.name for i in plan.items] == ["p1.jpg"]
    report = run_import(lib, plan.items)
    (image,) = lib.images()
    assert len(report.added) == 1 and image["diagnosis"] == "NEV"


def test_bad_mapping_is_explained() -> None:
    with pytest.raises(DatasetError, match="use FIELD=COLUMN"):
        parse_mapping(["diagnosis"])
    with pytest.raises(DatasetError, match="unknown field 'colour'"):
        parse_mapping(["colour=c"])


def test_dataset_csv_missing_columns_and_duplicate_ids(tmp_path: Path, photos: Path) -> None:
    pad = tmp_path / "pad"
    (pad / "images").mkdir(parents=True)
    (pad / "images" / "a.jpg").write_bytes((photos / "img" / "p0.jpg").read_bytes())
    write(
        pad / "metadata.csv",
        "patient_id,lesion_id,img_id,diagnostic\n"
        "PAT_1,1,a.jpg,BCC\nPAT_1,1,a.jpg,BCC\nPAT_2,2,../../x.jpg,MEL\n",
    )
    plan = plan_path(pad)
    assert len(plan.items) == 1
    assert plan.refused[0][1].startswith("duplicate image id 'a.jpg'")
    assert "is outside the dataset folder" in plan.refused[1][1]
    ham = tmp_path / "ham"
    ham.mkdir()
    write(ham / "HAM10000_metadata.csv", "lesion_id,image_id\nHAM_1,ISIC_1\n")
    with pytest.raises(DatasetError, match=r"missing required column.*dx"):
        plan_path(ham)
