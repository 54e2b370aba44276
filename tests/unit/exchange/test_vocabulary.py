"""The vocabulary reads diagnoses and body sites as the literature and public datasets write
them (issue 14, part 1): subtypes get their parent code and keep their wording; unknown
values are kept as text with a warning, never a refused row. Over real PAD-UFES-20 images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dermdesk import taxonomy
from dermdesk.exchange.csvmap import parse_mapping, plan_csv
from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import Library


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("Melanoma in situ", "MEL"),
        ("Lentigo maligna", "MEL"),
        ("invasive melanoma, Breslow 0.8 mm", "MEL"),
        ("Metastatic melanoma", "MEL"),
        ("Acral lentiginous melanoma", "MEL"),
        ("NODULAR MELANOMA", "MEL"),
        ("Naevus, dysplastic", "NEV"),
        ("Spitz naevus", "NEV"),
        ("compound naevi", "NEV"),
        ("blue nevus", "NEV"),
        ("nodular BCC", "BCC"),
        ("Superficial basal cell carcinoma", "BCC"),
        ("Keratoacanthoma", "SCC"),
        ("invasive squamous cell carcinoma", "SCC"),
        ("Bowen's disease", "ACK"),
        ("SCC in situ", "ACK"),
        ("solar keratosis", "ACK"),
        ("Seborrhoeic keratoses", "SEK"),
        ("solar lentigo", "SEK"),
        ("lichen planus-like keratosis", "SEK"),
        ("cherry haemangioma", "VASC"),
        ("pyogenic granuloma", "VASC"),
        ("Dermatofibroma", "DF"),
    ],
)
def test_subtypes_and_spellings_get_their_parent(raw: str, code: str) -> None:
    match = taxonomy.normalize_label(raw)
    assert (match.code, match.known) == (code, True)


@pytest.mark.parametrize("raw", ["nevus sebaceous", "Non-melanoma skin cancer", "psoriasis"])
def test_look_alikes_are_not_taken_for_the_lesion(raw: str) -> None:
    match = taxonomy.normalize_label(raw)
    assert match.code == "OTHER" and match.free_text == raw


@pytest.mark.parametrize(
    ("raw", "site"),
    [
        ("legs", "lower_extremity"),
        ("both legs", "lower_extremity"),
        ("Scalp and neck", "scalp"),
        ("back/shoulder", "back"),
        ("sole", "acral"),
        ("Palms", "acral"),
        ("Left upper arm", "arm"),
        ("thighs", "thigh"),
        ("head/neck", "face"),
        ("anterior torso", "chest"),
        ("EARS", "ear"),
    ],
)
def test_body_site_words(raw: str, site: str) -> None:
    assert taxonomy.body_site(raw) == site


def test_a_csv_with_subtypes_and_lay_sites_imports_every_row(
    lib: Library, shared_data: Path, tmp_path: Path
) -> None:
    images = [it.path for it in plan_path(shared_data / "pad_ufes_20").items[:6]]
    folder = tmp_path / "clinic"
    folder.mkdir()
    for p in images:
        shutil.copy(p, folder / p.name)
    rows = [
        ("Melanoma in situ", "both legs"),
        ("Spitz naevus", "Scalp and neck"),
        ("nodular BCC", "soles"),
        ("Bowen's disease", "back"),
        ("granuloma annulare", "left forearm"),
        ("Seborrhoeic keratoses", "elbow pit"),
    ]
    pairs = enumerate(zip(images, rows, strict=True))
    lines = ["file;dx;lesion;site"] + [f"{p.name};{dx};L{i};{site}" for i, (p, (dx, site)) in pairs]
    csv_path = folder / "clinic.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = parse_mapping(["file=file", "diagnosis=dx", "lesion=lesion", "body_site=site"])
    plan = plan_csv(csv_path, mapping, dataset="clinic")
    assert not plan.refused, plan.refused
    report = run_import(lib, plan.items, checks=False)
    assert len(report.added) == len(rows)
    got = {r["original_name"]: r for r in lib.images()}
    codes = [got[p.name]["diagnosis"] for p in images]
    assert codes == ["MEL", "NEV", "BCC", "ACK", "OTHER", "SEK"]
    labels = {p.name: lib.current_label(got[p.name]["id"]) for p in images}
    assert labels[images[0].name]["free_text"] == "Melanoma in situ"  # the subtype is kept
    sites = [lib.lesion(got[p.name]["lesion_id"])["body_site"] for p in images]
    assert sites == ["lower_extremity", "scalp", "acral", "back", "forearm", None]
    odd = got[images[5].name]
    assert json.loads(odd["extra"])["body_site_text"] == "elbow pit"
    assert any("elbow pit" in w and "kept as text" in w for w in plan.warnings)
    assert any("granuloma annulare" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("encoding", "delimiter"), [("latin-1", ","), ("utf-16", "\t"), ("utf-8-sig", "|")]
)
def test_other_encodings_and_delimiters(
    lib: Library, shared_data: Path, tmp_path: Path, encoding: str, delimiter: str
) -> None:
    image = plan_path(shared_data / "pad_ufes_20").items[0].path
    shutil.copy(image, tmp_path / image.name)
    text = delimiter.join(["file", "dx", "lesion", "site"]) + "\n"
    text += delimiter.join([image.name, "Naevus, jonctionnel".replace(",", ""), "L1", "Épaule"])
    (tmp_path / "t.csv").write_bytes(text.encode(encoding))
    mapping = parse_mapping(["file=file", "diagnosis=dx", "lesion=lesion", "body_site=site"])
    plan = plan_csv(tmp_path / "t.csv", mapping, dataset="clinic")
    assert not plan.refused and len(plan.items) == 1
    item = plan.items[0]
    assert item.label is not None and item.label.diagnosis == "NEV"
    assert item.extra["body_site_text"] == "Épaule"  # read right in every encoding, kept


def test_columns_that_are_no_library_field_are_kept(
    lib: Library, shared_data: Path, tmp_path: Path
) -> None:
    image = plan_path(shared_data / "pad_ufes_20").items[0].path
    shutil.copy(image, tmp_path / image.name)
    (tmp_path / "t.csv").write_text(
        f"file,dx,sex,age,ABCD criteria,empty\n{image.name},MEL,F,63,asymmetry; 3 colours,\n",
        encoding="utf-8",
    )
    plan = plan_csv(tmp_path / "t.csv", parse_mapping(["file=file", "diagnosis=dx"]))
    run_import(lib, plan.items, checks=False)
    row = lib.images()[0]
    assert json.loads(row["extra"]) == {
        "sex": "F",
        "age": "63",
        "ABCD criteria": "asymmetry; 3 colours",
    }
    from dermdesk.exchange.export import ExportOptions, plan_export, write_export

    out = tmp_path / "out"
    write_export(lib, plan_export(lib, ExportOptions("isic", include_free_text=True)), out)
    meta = (out / "metadata.csv").read_text(encoding="utf-8")
    assert "ABCD criteria" in meta and ",female," in meta and ",65," in meta  # sex, age bin
