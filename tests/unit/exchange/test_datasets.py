"""Every real image of ../shared/data (both manifests) imports with the right labels and metadata.

Counts are computed from each dataset's own CSV, independently of the
importer's mapping code, and compared with what the library holds.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import ImportReport, run_import
from dermdesk.library import ImageFilter, Library
from dermdesk.library.verify import verify


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def full(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Library, ImportReport]]:
    lib = Library.open(tmp_path_factory.mktemp("full") / "lib", actor="tester")
    plan = plan_path(shared_data)
    assert not plan.refused, plan.refused[:3]
    # Metadata mapping is the subject here; the quality checks have their own tests.
    report = run_import(lib, plan.items, checks=False)
    yield lib, report
    lib.close()


def by_dataset(lib: Library, dataset: str, column: str) -> Counter[object]:
    return Counter(
        {r[column]: r["n"] for r in lib.counts([column], ImageFilter(dataset=[dataset]))}
    )


def test_every_manifest_image_is_imported(
    full: tuple[Library, ImportReport], shared_data: Path
) -> None:
    lib, report = full
    manifest = rows(shared_data / "manifest.csv") + rows(shared_data / "manifest_extra.csv")
    assert report.refused == [] and len(report.added) == len(manifest)
    assert lib.count() == len(manifest)
    per_dataset = Counter(r["dataset"].replace("_224", "").replace("_more", "") for r in manifest)
    assert by_dataset_all(lib) == per_dataset


def by_dataset_all(lib: Library) -> Counter[object]:
    return Counter({r["dataset"]: r["n"] for r in lib.counts(["dataset"])})


def test_pad_ufes_patients_lesions_labels_and_skin_types(
    full: tuple[Library, ImportReport], shared_data: Path
) -> None:
    lib, _ = full
    # pad_ufes_20_more holds more of the same dataset, some of the same patients too.
    meta = rows(shared_data / "pad_ufes_20" / "metadata.csv") + rows(
        shared_data / "pad_ufes_20_more" / "metadata.csv"
    )
    assert by_dataset(lib, "pad_ufes_20", "diagnosis") == Counter(r["diagnostic"] for r in meta)
    expected_fitz = Counter(
        int(float(r["fitspatrick"])) if r["fitspatrick"] else None for r in meta
    )
    assert by_dataset(lib, "pad_ufes_20", "fitzpatrick") == expected_fitz
    patients = lib.conn.execute(
        "SELECT count(DISTINCT patient_id), count(DISTINCT lesion_id) FROM image "
        "WHERE dataset = 'pad_ufes_20'"
    ).fetchone()
    assert patients == (len({r["patient_id"] for r in meta}), len({r["lesion_id"] for r in meta}))
    # biopsy status becomes label certainty
    histo = lib.conn.execute(
        "SELECT count(*) FROM label JOIN image ON image.id = label.image_id "
        "WHERE image.dataset = 'pad_ufes_20' AND certainty = 'histopathology'"
    ).fetchone()[0]
    assert histo == sum(r["biopsed"] == "True" for r in meta)
    one = meta[1]
    image = lib.images(ImageFilter(text=Path(one["img_id"]).stem))[0]
    lesion = lib.lesion(image["lesion_id"])
    assert lesion is not None and lesion["body_site"] == one["region"].lower()
    assert lib.patient(image["patient_id"])["external_id"] == one["patient_id"]


def test_ham10000_labels_lesions_certainty_and_artefacts(
    full: tuple[Library, ImportReport], shared_data: Path
) -> None:
    lib, _ = full
    meta = rows(shared_data / "ham10000" / "HAM10000_metadata.csv") + rows(
        shared_data / "ham10000_224" / "HAM10000_metadata.csv"
    )
    mapping = {
        "akiec": "ACK",
        "bcc": "BCC",
        "bkl": "SEK",
        "df": "DF",
        "mel": "MEL",
        "nv": "NEV",
        "vasc": "VASC",
    }
    assert by_dataset(lib, "ham10000", "diagnosis") == Counter(mapping[r["dx"]] for r in meta)
    assert by_dataset(lib, "ham10000", "modality") == Counter({"dermoscopic": len(meta)})
    lesions = lib.conn.execute(
        "SELECT count(DISTINCT lesion_id) FROM image WHERE dataset = 'ham10000'"
    ).fetchone()[0]
    assert lesions == len({r["lesion_id"] for r in meta})
    certainty = Counter(
        r[0]
        for r in lib.conn.execute(
            "SELECT certainty FROM label JOIN image ON image.id = label.image_id "
            "WHERE image.dataset = 'ham10000'"
        )
    )
    assert certainty["histopathology"] == sum(r["dx_type"] == "histo" for r in meta)
    assert certainty["follow_up"] == sum(r["dx_type"] == "follow_up" for r in meta)
    artefacts = rows(shared_data / "ham10000" / "artefacts.csv")
    tagged = lib.conn.execute(
        "SELECT count(*) FROM image WHERE dataset = 'ham10000' AND extra LIKE '%artefacts%'"
    ).fetchone()[0]
    assert tagged == len({r["image_id"] for r in artefacts})


def test_fitzpatrick17k_skin_types_conditions_and_exif_devices(
    full: tuple[Library, ImportReport], shared_data: Path
) -> None:
    lib, _ = full
    meta = rows(shared_data / "fitzpatrick17k" / "fitzpatrick17k.csv") + rows(
        shared_data / "fitzpatrick17k_more" / "fitzpatrick17k.csv"
    )

    def rating(r: dict[str, str]) -> int | None:
        # the main rating; the second rater's where the main one is unknown (-1)
        for column in ("fitzpatrick_scale", "fitzpatrick_centaur"):
            if r[column] not in ("", "-1"):
                return int(r[column])
        return None

    assert by_dataset(lib, "fitzpatrick17k", "fitzpatrick") == Counter(map(rating, meta))
    # conditions outside the diagnosis codes are OTHER with the condition kept
    other = lib.conn.execute(
        "SELECT label.free_text, count(*) FROM label JOIN image ON image.id = label.image_id "
        "WHERE image.dataset = 'fitzpatrick17k' AND label.diagnosis = 'OTHER' "
        "GROUP BY label.free_text"
    ).fetchall()
    assert dict(other)["kaposi-sarcoma"] == sum(r["label"] == "kaposi-sarcoma" for r in meta)
    assert by_dataset(lib, "fitzpatrick17k", "diagnosis")["MEL"] == sum(
        "melanoma" in r["label"] for r in meta
    )
    # the second rating is kept in the skin-tone history
    centaur = lib.conn.execute(
        "SELECT count(*) FROM skin_tone WHERE rater LIKE '%centaur'"
    ).fetchone()[0]
    assert centaur == sum(r["fitzpatrick_centaur"] not in ("", "-1") for r in meta)
    # 100 of the reference images carry real camera EXIF
    with_device = lib.conn.execute(
        "SELECT count(*), count(DISTINCT device_model) FROM image "
        "WHERE dataset = 'fitzpatrick17k' AND device_model IS NOT NULL"
    ).fetchone()
    assert with_device[0] >= 100 and with_device[1] >= 20


def test_isic2017_and_ph2_labels_and_masks(
    full: tuple[Library, ImportReport], shared_data: Path
) -> None:
    lib, _ = full
    gt = rows(shared_data / "isic2017" / "ISIC-2017_Training_Part3_GroundTruth.csv")
    expected = Counter(
        "MEL" if float(r["melanoma"]) else "SEK" if float(r["seborrheic_keratosis"]) else "NEV"
        for r in gt
    )
    assert by_dataset(lib, "isic2017", "diagnosis") == expected
    ph2 = rows(shared_data / "ph2" / "ph2.csv")
    assert by_dataset(lib, "ph2", "diagnosis") == Counter(
        "MEL" if r["clinical_diagnosis"] == "melanoma" else "NEV" for r in ph2
    )
    masks = lib.conn.execute("SELECT count(*) FROM mask").fetchone()[0]
    assert masks == len(list((shared_data / "ph2" / "masks").glob("*_lesion.png")))


def test_library_verifies_and_reimport_is_a_no_op(
    full: tuple[Library, ImportReport], shared_data: Path
) -> None:
    lib, _ = full
    report = verify(lib, checksums=False)
    assert report.ok, report.errors[:5]
    again = run_import(lib, plan_path(shared_data / "ph2").items, checks=False)
    assert again.added == [] and len(again.existing) == 200
