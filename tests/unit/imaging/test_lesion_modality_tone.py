"""Segmentation, modality, artefacts, skin tone and duplicates on real images."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dermdesk.imaging import artefacts
from dermdesk.imaging.dedup import HashIndex, hamming, phash
from dermdesk.imaging.modality import detect_modality
from dermdesk.imaging.segment import segment_lesion
from dermdesk.imaging.skintone import (
    Refusal,
    SkinToneEstimate,
    estimate_skin_tone,
    fitzpatrick_from_ita,
    ita_degrees,
    monk_from_ita,
)
from dermdesk.imaging.working import WorkImage, decode_for_checks
from tests.helpers import skin_like


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_ph2_segmentation_overlaps_the_expert_masks(shared_data: Path) -> None:
    names = ["IMD002", "IMD017", "IMD050", "IMD101", "IMD200", "IMD380"]
    scores = []
    for name in names:
        rgb = decode_for_checks(shared_data / "ph2" / "images" / f"{name}.jpg").rgb
        truth = np.asarray(Image.open(shared_data / "ph2" / "masks" / f"{name}_lesion.png")) > 0
        mask = segment_lesion(rgb)
        truth = cv2.resize(truth.astype(np.uint8), mask.shape[::-1]) > 0
        scores.append(dice(mask, truth))
    assert min(scores) > 0.6
    assert np.mean(scores) > 0.8


def test_dermoscopic_and_clinical_images_are_told_apart(shared_data: Path) -> None:
    with open(shared_data / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # PAD-UFES-20 images of even-numbered patients trained the model; test on odd ones.
    picks = (
        [r for r in rows if r["dataset"] == "ham10000"][:8]
        + [
            r
            for r in rows
            if r["dataset"] == "pad_ufes_20" and int(r["patient_id"].split("_")[1]) % 2
        ][:8]
        + [r for r in rows if r["dataset"] == "fitzpatrick17k"][:8]
    )
    right = 0
    for r in picks:
        guess = detect_modality(WorkImage(decode_for_checks(shared_data / r["file"])))
        right += guess.modality == r["modality"]
    assert right >= len(picks) - 1


def test_clinical_photos_resent_through_a_messaging_app_still_look_clinical(
    shared_data: Path,
) -> None:
    # Half size and JPEG quality 60, as chat apps send photos: compression wipes out fine
    # skin texture, which once made half of these phone photos look dermoscopic.
    with open(shared_data / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picks = [
        r for r in rows if r["dataset"] == "pad_ufes_20" and int(r["patient_id"].split("_")[1]) % 2
    ][:16]
    right = 0
    for r in picks:
        with Image.open(shared_data / r["file"]) as im:
            rgb = im.convert("RGB")
        sent = io.BytesIO()
        rgb.resize((rgb.width // 2, rgb.height // 2), Image.Resampling.LANCZOS).save(
            sent, "JPEG", quality=60
        )
        guess = detect_modality(WorkImage(decode_for_checks(sent.getvalue())))
        right += guess.modality == "clinical"
    assert right >= len(picks) - 2


def test_vignetted_dermoscopy_is_detected_with_confidence(shared_data: Path) -> None:
    work = WorkImage(decode_for_checks(shared_data / "ph2" / "images" / "IMD002.jpg"))
    guess = detect_modality(work)
    assert guess.modality == "dermoscopic" and guess.sure
    assert work.fov.mean() < 0.97  # the dark corners are outside the field of view


def test_ruler_and_bubbles_are_tagged_on_labelled_ham_images(shared_data: Path) -> None:
    folder = shared_data / "ham10000" / "images"

    def work(image_id: str) -> WorkImage:
        return WorkImage(decode_for_checks(folder / f"{image_id}.jpg"), "dermoscopic")

    assert artefacts.check_ruler(work("ISIC_0024367")).verdict == "warn"  # labelled ruler
    assert artefacts.check_bubbles(work("ISIC_0024688")).verdict == "warn"  # labelled bubble
    plain = work("ISIC_0030002")  # no artefact labelled
    assert [
        artefacts.check_ruler(plain).verdict,
        artefacts.check_bubbles(plain).verdict,
        artefacts.check_ink(plain).verdict,
    ] == ["pass", "pass", "pass"]


def test_ink_circle_is_tagged(shared_data: Path) -> None:
    work = WorkImage(decode_for_checks(shared_data / "ham10000" / "images" / "ISIC_0030608.jpg"))
    result = artefacts.check_ink(work)
    assert result.verdict == "warn" and "ink" in result.reason


def test_ita_and_scale_mapping() -> None:
    assert ita_degrees(70.0, 10.0) == pytest.approx(63.43, abs=0.01)
    assert [fitzpatrick_from_ita(x) for x in (70, 50, 35, 20, 0, -50)] == [1, 2, 3, 4, 5, 6]
    monks = [monk_from_ita(x) for x in (80, 40, 0, -40, -80)]
    assert monks == sorted(monks) and monks[0] <= 2 and monks[-1] >= 9


def test_lighter_skin_gets_a_lighter_estimate_than_darker_skin(shared_data: Path) -> None:
    with open(shared_data / "fitzpatrick17k" / "fitzpatrick17k.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))

    def estimates(types: set[str]) -> list[float]:
        out = []
        for row in rows:
            if row["fitzpatrick_scale"] in types and row["fitzpatrick_centaur"] in types:
                rgb = decode_for_checks(
                    shared_data / "fitzpatrick17k" / "images" / f"{row['md5hash']}.jpg"
                ).rgb
                tone = estimate_skin_tone(rgb)
                if isinstance(tone, SkinToneEstimate):
                    out.append(tone.ita)
            if len(out) == 6:
                break
        return out

    light, dark = estimates({"1", "2"}), estimates({"5", "6"})
    assert len(light) == len(dark) == 6
    assert np.median(light) > np.median(dark) + 20


def test_skin_tone_uses_the_given_mask_and_refuses_without_skin() -> None:
    skin = skin_like()  # light skin, a dark lesion, a little noise
    estimate = estimate_skin_tone(skin)
    assert isinstance(estimate, SkinToneEstimate)
    assert estimate.fitzpatrick <= 3 and 0 < estimate.confidence <= 1
    assert estimate.fitzpatrick == estimate_skin_tone(skin, mask=segment_lesion(skin)).fitzpatrick
    assert isinstance(estimate_skin_tone(np.zeros((240, 320, 3), np.uint8)), Refusal)


def test_near_duplicates_are_found_and_different_pictures_are_not(shared_data: Path) -> None:
    a = decode_for_checks(shared_data / "ham10000" / "images" / "ISIC_0030002.jpg").rgb
    b = decode_for_checks(shared_data / "ham10000" / "images" / "ISIC_0024688.jpg").rgb
    out = io.BytesIO()
    Image.fromarray(cv2.resize(a, (300, 225), interpolation=cv2.INTER_AREA)).save(
        out, "JPEG", quality=60
    )
    copy = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    index = HashIndex([("a", phash(a)), ("b", phash(b))])
    assert [m.image_id for m in index.near(phash(copy))] == ["a"]
    assert hamming(phash(a), phash(a)) == 0
    assert hamming(phash(a), phash(b)) > 12
    assert index.near(phash(a), exclude="a") == []
