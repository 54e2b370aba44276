"""Curated splits and de-identified exports of a library made from ../shared/data.

The library holds three real datasets (PAD-UFES-20 with patients and lesions, PH2,
Fitzpatrick17k without patient ids) and a few files made to carry what must never leave:
EXIF with GPS, serial number and owner, XMP, IPTC, comments, a PNG text chunk, a rotated
photo, a device name and a label that are spreadsheet formulas, and one synthetic image.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from dermdesk import taxonomy
from dermdesk.exchange import splits as sp
from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.deidentify import leftover_metadata
from dermdesk.exchange.export import (
    ALLOWED_VALUES,
    EXTENSION_FIELDS,
    ISIC_FIELDS,
    ExportCancelled,
    ExportError,
    ExportOptions,
    plan_export,
    validate_rows,
    write_export,
)
from dermdesk.exchange.importer import ImportItem, run_import
from dermdesk.imaging import decode
from dermdesk.library import ImageFilter, Library, LibraryError, split_store
from dermdesk.library.records import LabelIn
from tests.helpers import skin_like

DATASETS = ("pad_ufes_20", "ph2", "fitzpatrick17k")
FORMULA_DEVICE = '=HYPERLINK("http://evil.example/x","click")'
FORMULA_LABEL = "=cmd|' /C calc'!A0"
SECRET_WORDS = (
    "Jane Roe",
    "SN-99887766",
    "secret-owner",
    "XMP-secret",
    "IPTC-secret",
    "COM-secret",
)


def manifest_rows(shared: Path) -> list[dict[str, str]]:
    rows = []
    for name in ("manifest.csv", "manifest_extra.csv"):
        with open(shared / name, newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def tagged_jpeg(path: Path, orientation: int, make: str) -> None:
    """A JPEG carrying EXIF (GPS, serial, owner, orientation), XMP, IPTC and a comment."""
    img = Image.fromarray(skin_like(320, 200, seed=orientation))
    exif = Image.Exif()
    exif[0x010F] = make  # Make
    exif[0x0110] = "Model 7"
    exif[0x0112] = orientation
    exif[0x013B] = "Jane Roe"  # Artist
    exif[0xA431] = "SN-99887766"  # BodySerialNumber (in the Exif IFD in practice; here too)
    exif[0xA430] = "secret-owner"  # CameraOwnerName
    exif.get_ifd(0x8825)[2] = (52.0, 5.0, 1.0)  # GPSLatitude
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes(), comment=b"COM-secret")
    data = buf.getvalue()
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>XMP-secret</x:xmpmeta>"
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0bIPTC-secret"
    extra = b"".join(
        b"\xff" + bytes([m]) + (len(p) + 2).to_bytes(2, "big") + p
        for m, p in ((0xE1, xmp), (0xED, iptc))
    )
    path.write_bytes(data[:2] + extra + data[2:] + b"trailer: SN-99887766")


@pytest.fixture(scope="module")
def library(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("export")
    lib = Library.open(root / "lib", actor="tester")
    items = []
    for name in DATASETS:
        plan = plan_path(shared_data / name)
        assert not plan.refused
        items += plan.items
    photos = root / "photos"
    photos.mkdir()
    tagged_jpeg(photos / "Jane_Roe_back.jpg", 6, FORMULA_DEVICE)
    tagged_jpeg(photos / "plain.jpg", 1, "Canon")
    png = PngImagePlugin.PngInfo()
    png.add_text("Author", "Jane Roe")
    png.add_itxt("Comment", "COM-secret")
    Image.fromarray(skin_like(240, 180, seed=9)).save(photos / "note.png", pnginfo=png)
    Image.fromarray(skin_like(200, 200, seed=11)).save(photos / "synthetic.png")
    label = LabelIn("OTHER", "single_expert", "tester", FORMULA_LABEL)
    items += [
        ImportItem(photos / "Jane_Roe_back.jpg", "tagged", dataset="clinic", label=label),
        ImportItem(photos / "plain.jpg", "plain", dataset="clinic"),  # unlabelled
        ImportItem(
            photos / "note.png",
            "png",
            dataset="clinic",
            label=LabelIn("NEV", "single_expert", "tester"),
        ),
        ImportItem(
            photos / "synthetic.png",
            "synthetic",
            dataset="clinic",
            source="synthetic",
            label=LabelIn("MEL", "single_expert", "tester"),
        ),
    ]
    report = run_import(lib, items)
    assert not report.refused, report.refused[:3]
    yield lib
    lib.close()


@pytest.fixture(scope="module")
def split_v1(library: Library) -> str:
    plan = sp.plan_split(library, ImageFilter(), (0.7, 0.15, 0.15), seed=0)
    split_store.create_split(library, "v1", plan.assignment, plan.params, plan.report)
    return "v1"


@pytest.fixture(scope="module")
def isic_export(library: Library, split_v1: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("isic") / "out"
    plan = plan_export(library, ExportOptions("isic", split=split_v1, include_free_text=True))
    write_export(library, plan, out)
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def real_count(shared: Path) -> int:
    """Images of the exported dataset folders, counted from the manifests."""
    return sum(r["file"].split("/", 1)[0] in DATASETS for r in manifest_rows(shared))


# -- splits ------------------------------------------------------------------------------------


def test_a_stored_split_keeps_patients_lesions_and_near_copies_together(
    library: Library, split_v1: str, shared_data: Path
) -> None:
    parts = split_store.assignment(library, split_v1)
    assert len(parts) == library.count()  # the synthetic image too (train only)
    report = sp.leakage_report(library, parts)
    assert report["clean"], sp.render_leakage(report)
    assert (
        report["near_duplicate_pairs"] == report["patients_across"] == report["lesions_across"] == 0
    )
    counts = {p: n for p, n in report["parts"].items()}
    assert (
        abs(counts["train"] / len(parts) - 0.70) < 0.05
        and abs(counts["test"] / len(parts) - 0.15) < 0.05
    )
    # A naive image-level split of the same images puts patients on both sides.
    naive = sp.leakage_report(library, sp.random_image_split(list(parts), (0.7, 0.15, 0.15)))
    assert naive["patients_across"] > 10 and not naive["clean"]


def test_split_names_are_never_reused_and_unknown_names_are_explained(
    library: Library, split_v1: str
) -> None:
    plan = sp.plan_split(library, ImageFilter(dataset=["ph2"]), (0.7, 0.15, 0.15), seed=1)
    with pytest.raises(LibraryError, match="exists"):
        split_store.create_split(library, split_v1, plan.assignment, plan.params, plan.report)
    with pytest.raises(LibraryError, match="no split named 'v9'; splits: v1"):
        split_store.assignment(library, "v9")
    with pytest.raises(LibraryError, match="nothing to split"):
        sp.plan_split(library, ImageFilter(dataset=["nowhere"]), (0.7, 0.15, 0.15), seed=0)
    with pytest.raises(LibraryError, match="three numbers"):
        sp.parse_fractions("70/30")


def test_the_split_report_shows_each_part_and_the_largest_imbalance(
    library: Library, split_v1: str
) -> None:
    info = split_store.split_info(library, split_v1)
    text = sp.render_report(info["report"])
    assert "train" in text and "diagnosis" in text and "largest imbalance" in text
    worst = info["report"]["largest_imbalance"]
    assert 0 <= worst["points"] < 15


def test_leakage_of_a_split_given_as_csv(library: Library, tmp_path: Path) -> None:
    rows = library.images(ImageFilter(dataset=["pad_ufes_20"]), order="id")
    by_patient: dict[str, list[str]] = {}
    for r in rows:
        by_patient.setdefault(r["patient_id"], []).append(r["id"])
    ids = next(i for i in by_patient.values() if len(i) > 1)
    path = tmp_path / "split.csv"
    path.write_text("image_id,split\n" + f"{ids[0][:10]},train\n{ids[1]},validation\n")
    report = sp.leakage_report(library, sp.read_split_csv(path, library))
    assert report["patients_across"] == 1 and not report["clean"]
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,split\n" + f"{ids[0]},holdout\n")
    with pytest.raises(LibraryError, match="line 2: split 'holdout' is not train, val or test"):
        sp.read_split_csv(bad, library)
    bad.write_text("id,part\nx,train\n")
    with pytest.raises(LibraryError, match="needs the columns image_id and split"):
        sp.read_split_csv(bad, library)


# -- the isic export ---------------------------------------------------------------------------


def test_isic_metadata_parses_against_the_field_list(
    isic_export: Path, library: Library, shared_data: Path
) -> None:
    rows = read_csv(isic_export / "metadata.csv")
    # Every real image plus the clinic's three; the synthetic one stays out by default.
    assert len(rows) == real_count(shared_data) + 3
    assert set(rows[0]) <= {*ISIC_FIELDS, *EXTENSION_FIELDS, "diagnosis_free_text", "extra"}
    assert list(rows[0])[: len(ISIC_FIELDS)] == list(ISIC_FIELDS)
    for name, allowed in ALLOWED_VALUES.items():
        assert {r[name] for r in rows} <= allowed, name
    assert all(r["image_manipulation"] != "synthetic" for r in rows)
    assert {r["isic_id"] for r in rows} == {Path(r["file_name"]).stem for r in rows}
    for r in rows:
        assert (isic_export / r["file_name"]).is_file()
    mel = [r for r in rows if r["diagnosis"] == "melanoma"]
    assert mel and all(
        r["benign_malignant"] == "malignant" and r["melanocytic"] == "True" for r in mel
    )
    pad = [r for r in rows if r["dataset"] == "pad_ufes_20"]
    assert all(r["age_approx"] == "" or int(r["age_approx"]) % 5 == 0 for r in pad)
    assert sum(bool(r["anatom_site_general"]) for r in pad) > len(pad) * 0.9
    # Estimated skin types never appear as ratings.
    estimate_only = library.conn.execute(
        "SELECT count(*) FROM image WHERE fitzpatrick IS NULL AND fitzpatrick_est IS NOT NULL "
        "AND source != 'synthetic'"
    ).fetchone()[0]
    exported = [
        r for r in rows if r["fitzpatrick_skin_type_estimated"] and not r["fitzpatrick_skin_type"]
    ]
    assert estimate_only > 0 and len(exported) == estimate_only
    rated = sum(bool(r["fitzpatrick_skin_type"]) for r in rows)
    assert rated == library.count(
        ImageFilter(tone="rated", fitzpatrick=[1, 2, 3, 4, 5, 6], synthetic=False)
    )


def test_isic_diagnosis_levels_are_the_archives_own_strings(
    isic_export: Path, library: Library
) -> None:
    """Read back: each code's rows carry the ISIC Archive's hierarchy strings, level 2 under
    level 1, and benign_malignant agrees with diagnosis_1."""
    rows = read_csv(isic_export / "metadata.csv")
    level2_parent = taxonomy.isic_diagnosis_2()
    by_code = {"basal cell carcinoma": "Basal cell carcinoma", "nevus": "Nevus"}
    for r in rows:
        if r["diagnosis_2"]:
            assert level2_parent[r["diagnosis_2"]] == r["diagnosis_1"], r
        assert r["benign_malignant"] == r["diagnosis_1"].lower()
        if r["diagnosis"] in by_code:
            assert r["diagnosis_3"] == by_code[r["diagnosis"]], r
    seen = {(r["diagnosis_1"], r["diagnosis_2"], r["diagnosis_3"]) for r in rows}
    assert {
        (
            "Malignant",
            "Malignant adnexal epithelial proliferations - Follicular",
            "Basal cell carcinoma",
        ),
        ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma, NOS"),
        ("Malignant", "Malignant epidermal proliferations", "Squamous cell carcinoma, NOS"),
        ("Indeterminate", "Indeterminate epidermal proliferations", "Solar or actinic keratosis"),
        ("Benign", "Benign epidermal proliferations", "Seborrheic keratosis"),
        ("Benign", "Benign melanocytic proliferations", "Nevus"),
        ("Benign", "Benign soft tissue proliferations - Vascular", "Pyogenic granuloma"),
    } <= seen
    unlabelled = [r for r in rows if not r["diagnosis"]]
    assert unlabelled and all(not r["diagnosis_1"] and not r["diagnosis_3"] for r in unlabelled)


def test_a_diagnosis_outside_the_archives_hierarchy_is_refused() -> None:
    row = {"diagnosis_1": "Benign", "diagnosis_2": "Malignant epidermal proliferations"}
    with pytest.raises(ExportError, match="belongs under 'Malignant'"):
        validate_rows([row], free_text=False)
    with pytest.raises(ExportError, match="not an ISIC Archive diagnosis"):
        validate_rows([{"diagnosis_1": "Benign", "diagnosis_2": "Benign lesions"}], False)
    with pytest.raises(ExportError, match="diagnosis_3 without diagnosis_2"):
        validate_rows([{"diagnosis_1": "Benign", "diagnosis_3": "Nevus"}], False)


def test_the_manifest_verifies_with_sha256sum(isic_export: Path) -> None:
    proc = subprocess.run(
        ["sha256sum", "-c", "--quiet", "MANIFEST.sha256"],
        cwd=isic_export,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = {
        line.split("  ", 1)[1]
        for line in (isic_export / "MANIFEST.sha256").read_text().splitlines()
    }
    on_disk = {str(p.relative_to(isic_export)) for p in isic_export.rglob("*") if p.is_file()}
    assert on_disk - listed == {"MANIFEST.sha256"}


def test_no_exported_image_carries_metadata(isic_export: Path, library: Library) -> None:
    images = sorted((isic_export / "images").iterdir())
    dirty = {p.name: leftover_metadata(p.read_bytes()) for p in images}
    assert not {k: v for k, v in dirty.items() if v}
    for p in images:
        data = p.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            exif = dict(img.getexif())
            assert set(exif) <= {0x0112}, p.name
            assert not img.getexif().get_ifd(0x8825)  # no GPS
            assert not {
                k for k in img.info if k in ("comment", "xmp", "photoshop", "Author", "Comment")
            }
        assert not any(word.encode() in data for word in SECRET_WORDS), p.name


def test_a_rotated_photo_keeps_its_pixels_and_only_its_orientation(
    isic_export: Path, library: Library
) -> None:
    row = library.images(ImageFilter(text="Jane_Roe_back"))[0]
    rows = read_csv(isic_export / "metadata.csv")
    exported = next(r for r in rows if r["device"].lstrip("'").startswith("=HYPERLINK"))
    data = (isic_export / exported["file_name"]).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        assert dict(img.getexif()) == {0x0112: 6}
        shown = np.asarray(decode.upright(img.convert("RGB")))
    original = decode.decode_rgb(library.original_path(row))
    assert shown.shape == original.shape and np.array_equal(shown, original)  # not re-encoded


def test_no_source_id_or_file_name_appears_anywhere(isic_export: Path, library: Library) -> None:
    rows = library.query(
        "SELECT i.original_name, i.dataset_image_id, p.external_id AS pat, "
        "l.external_id AS les, i.patient_id, i.lesion_id FROM image i "
        "LEFT JOIN patient p ON p.id = i.patient_id LEFT JOIN lesion l ON l.id = i.lesion_id"
    )
    needles: set[str] = set()
    for r in rows:
        for key in ("original_name", "dataset_image_id", "patient_id", "lesion_id"):
            if r[key]:
                needles.add(str(r[key]))
        for key in ("pat", "les"):
            if r[key] and len(str(r[key])) >= 5:  # short numeric lesion ids match any number
                needles.add(str(r[key]))
    needles.add("Jane_Roe_back")
    assert len(needles) > 1000
    # Every run of name characters in every file (image bytes too): a source id or file name
    # written anywhere would be one of them; in the text files, or inside one.
    tokens: set[bytes] = set()
    text = b""
    for p in isic_export.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            tokens.update(re.findall(rb"[A-Za-z0-9_.\-]{2,}", data))
            if p.suffix in (".csv", ".json", ".md", ".html", ".sha256"):
                text += data
    found = [n for n in needles if n.encode() in tokens]
    found += [n for n in needles if len(n) >= 8 and n.encode() in text]
    assert not found, found[:5]


def test_formulas_from_imported_text_are_neutralised(isic_export: Path) -> None:
    with open(isic_export / "metadata.csv", newline="", encoding="utf-8") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    # How a spreadsheet reads a cell: a leading = + - @ (or tab / CR) starts a formula.
    formulas = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(c)]
    assert formulas == []
    assert any(c.startswith("'" + FORMULA_DEVICE) for c in cells)  # the device name (make + model)
    assert "'" + FORMULA_LABEL in cells


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_two_exports_of_one_library_are_byte_identical(
    library: Library, split_v1: str, isic_export: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    write_export(
        library,
        plan_export(library, ExportOptions("isic", split=split_v1, include_free_text=True)),
        again,
    )
    first = {
        str(p.relative_to(isic_export)): p.read_bytes()
        for p in isic_export.rglob("*")
        if p.is_file()
    }
    second = {str(p.relative_to(again)): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    differ = sorted(k for k in first if first[k] != second[k])
    assert differ in (
        [],
        ["MANIFEST.sha256", "dataset.json"],
    )  # the date lives in dataset.json only
    a, b = json.loads(first["dataset.json"]), json.loads(second["dataset.json"])
    a.pop("created_at"), b.pop("created_at")
    assert a == b


def test_dataset_json_and_the_data_card(isic_export: Path, library: Library) -> None:
    doc = json.loads((isic_export / "dataset.json").read_text())
    assert doc["split"]["name"] == "v1" and doc["seed"] == 0 and doc["format"] == "isic"
    assert doc["counts"]["left_out"] == {
        "synthetic (add --include-synthetic to export them, flagged)": 1
    }
    assert doc["synthetic_included"] is False and doc["checker_version"]
    card = (isic_export / "DATACARD.md").read_text()
    for heading in (
        "Diagnosis x rated Fitzpatrick type",
        "Diagnosis x device",
        "Skin tone: rated and estimated",
        "Quality checks",
        "Known gaps",
        "Checklist",
    ):
        assert heading in card
    assert "Leakage between splits: none" in card
    page = (isic_export / "datacard.html").read_text()
    assert (
        page.count("data:image/png;base64,") == len(list((isic_export / "datacard").iterdir())) >= 4
        and "<table>" in page
        and "src='datacard/" not in page
    )
    for png in (isic_export / "datacard").iterdir():
        with Image.open(png) as img:
            assert img.size[0] > 200


# -- imagefolder -------------------------------------------------------------------------------


# Hugging Face's CSV reader leaves its file handles to the garbage collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_imagefolder_loads_with_torchvision_and_hugging_face(
    library: Library, split_v1: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "folder"
    plan = plan_export(library, ExportOptions("imagefolder", split=split_v1))
    assert plan.left_out == {
        "synthetic (add --include-synthetic to export them, flagged)": 1,
        "unlabelled (an image folder needs a class)": 1,
    }
    write_export(library, plan, out)
    torchvision = pytest.importorskip("torchvision")
    train = torchvision.datasets.ImageFolder(str(out / "train"))
    expected = {it.row["diagnosis"] for it in plan.items if it.part == "train"}
    assert set(train.classes) == expected
    assert len(train) == sum(it.part == "train" for it in plan.items)
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        loaded = datasets.load_dataset(
            "imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "hf")
        )
        gc.collect()  # its CSV reader's unclosed files, while their warning is ignored
    assert {k: len(v) for k, v in loaded.items()} == {
        "train": sum(it.part == "train" for it in plan.items),
        "validation": sum(it.part == "val" for it in plan.items),
        "test": sum(it.part == "test" for it in plan.items),
    }
    first = loaded["test"][0]
    assert first["isic_id"].startswith("DD_") and first["image"].size[0] > 0
    by_id = {it.export_id: it.row["diagnosis"] for it in plan.items}
    assert all(
        by_id[r["isic_id"]] == {"melanoma": "MEL"}.get(r["diagnosis"], by_id[r["isic_id"]])
        for r in loaded["test"].select_columns(["isic_id", "diagnosis"])
    )


def test_synthetic_images_only_when_asked_and_flagged(library: Library, tmp_path: Path) -> None:
    plan = plan_export(
        library, ExportOptions("isic", flt=ImageFilter(dataset=["clinic"]), include_synthetic=True)
    )
    write_export(library, plan, tmp_path / "syn")
    rows = read_csv(tmp_path / "syn" / "metadata.csv")
    assert sorted(r["image_manipulation"] for r in rows) == ["", "", "", "synthetic"]
    assert any("synthetic images included" in w for w in plan.warnings)
    assert json.loads((tmp_path / "syn" / "dataset.json").read_text())["synthetic_included"] is True


# -- bad input ---------------------------------------------------------------------------------


def _db_state(lib: Library) -> tuple[int, int]:
    return (lib.count(), int(lib.conn.execute("SELECT count(*) FROM audit").fetchone()[0]))


def test_a_non_empty_target_an_unknown_split_and_nothing_to_export(
    library: Library, tmp_path: Path
) -> None:
    before = _db_state(library)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    plan = plan_export(library, ExportOptions("isic", flt=ImageFilter(dataset=["ph2"])))
    with pytest.raises(ExportError, match="is not empty"):
        write_export(library, plan, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    with pytest.raises(LibraryError, match="no split named 'nope'"):
        plan_export(library, ExportOptions("isic", split="nope"))
    with pytest.raises(ExportError, match="nothing to export: 1 unlabelled"):
        plan_export(library, ExportOptions("imagefolder", flt=ImageFilter(text="plain")))
    with pytest.raises(ExportError, match="unknown export format"):
        plan_export(library, ExportOptions("zip"))
    assert _db_state(library) == before
    assert not list(tmp_path.glob(".*partial"))


def test_cancel_in_the_middle_leaves_nothing(library: Library, tmp_path: Path) -> None:
    plan = plan_export(library, ExportOptions("isic", flt=ImageFilter(dataset=["ph2"])))
    done: list[int] = []
    out = tmp_path / "out"
    with pytest.raises(ExportCancelled, match="nothing was written"):
        write_export(
            library,
            plan,
            out,
            progress=lambda n, total: done.append(n),
            cancelled=lambda: len(done) >= 10,
        )
    assert len(done) == 10 and not out.exists() and list(tmp_path.iterdir()) == []


def test_a_read_only_target(library: Library, tmp_path: Path) -> None:
    from tests.helpers import in_private_mounts, read_only_view

    locked = tmp_path / "locked"
    locked.mkdir()
    cli = f"{sys.executable} -m dermdesk --library {library.root} export --dataset ph2 {locked}/out"
    proc = in_private_mounts(read_only_view(locked, locked) + f"{cli}\necho RC=$?\n")
    assert "RC=2" in proc.stdout, proc.stdout + proc.stderr
    assert f"cannot write into {locked}" in proc.stderr and "Read-only file system" in proc.stderr
    assert list(locked.iterdir()) == []


def test_a_full_disk_leaves_nothing_half_written(library: Library, tmp_path: Path) -> None:
    from tests.helpers import in_private_mounts

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    cli = (
        f"{sys.executable} -m dermdesk --library {library.root} export "
        f"--dataset pad_ufes_20 {mnt}/out"
    )
    proc = in_private_mounts(
        f"mount -t tmpfs -o size=2m tmpfs {mnt} || exit 77\n{cli}\necho RC=$?\nls -A {mnt}\n"
    )
    assert "RC=2" in proc.stdout, proc.stdout + proc.stderr
    assert "is full; nothing was written" in proc.stderr
    assert proc.stdout.strip().endswith("RC=2")  # the tmpfs is empty again


def test_the_cli_twins(library: Library, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dermdesk", "--library", str(library.root), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    made = cli(
        "curate",
        "split",
        "--name",
        "cli-ph2",
        "--dataset",
        "ph2",
        "--fractions",
        "60/20/20",
        "--seed",
        "3",
    )
    assert made.returncode == 0, made.stderr
    assert "largest imbalance" in made.stdout
    listed = cli("curate", "splits")
    assert "cli-ph2" in listed.stdout
    leak = cli("curate", "leakage", "--split", "cli-ph2")
    assert leak.returncode == 0 and "no leakage" in leak.stdout
    dry = cli(
        "export", "--format", "imagefolder", "--split", "cli-ph2", "--dry-run", str(tmp_path / "x")
    )
    assert (
        dry.returncode == 0
        and "images to export as imagefolder" in dry.stdout
        and not (tmp_path / "x").exists()
    )
    bad = cli("export", "--split", "missing", str(tmp_path / "y"))
    assert bad.returncode == 2 and bad.stderr.startswith("dermdesk: no split named 'missing'")


def test_dicom_export_reads_back_with_pydicom(library: Library, tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    flt = ImageFilter(dataset=["ph2", "clinic", "pad_ufes_20"])
    plan = plan_export(library, ExportOptions("dicom", flt=flt))
    out = tmp_path / "dicom"
    write_export(library, plan, out)
    rows = {r["isic_id"]: r for r in read_csv(out / "metadata.csv")}
    by_export = {it.export_id: it.row for it in plan.items}
    coded = 0
    for path in sorted((out / "images").iterdir()):
        ds = pydicom.dcmread(path)
        meta, row = rows[path.stem], by_export[path.stem]
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.4" and ds.Modality == "XC"
        assert ds.PatientID == (meta["patient_id"] or meta["isic_id"]) == str(ds.PatientName)
        assert ds.PatientIdentityRemoved == "YES" and not ds.StudyDate and not ds.ContentDate
        # VL Photographic, not Dermoscopic Photography: that IOD needs a device serial number
        # (Type 1), which the library never keeps and an export never carries.
        assert "DeviceSerialNumber" not in ds
        assert ds.ImageType[2] == (
            "DERMOSCOPIC" if row["modality"] == "dermoscopic" else "CLINICAL"
        )
        coded += "AnatomicRegionSequence" in ds
        if path.stem in list(by_export)[::25] or row["dataset"] == "clinic":
            shown = ds.pixel_array
            original = decode.decode_rgb(library.original_path(row))
            assert shown.shape == original.shape  # upright, rotated photo included
            assert np.abs(shown.astype(int) - original.astype(int)).mean() < 2.0
    pad = sum(it.row["dataset"] == "pad_ufes_20" for it in plan.items)
    assert coded > pad * 0.8  # PAD-UFES-20 names body sites; SNOMED CT codes where mapped
    blob = b"".join(p.read_bytes() for p in (out / "images").iterdir())
    assert not any(word.encode() in blob for word in SECRET_WORDS)
