"""The pixel checks on real images: an untouched photo passes, a visibly degraded copy fails
the matching check with a reason that says so."""

from __future__ import annotations

import io
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image

from dermdesk.imaging.findings import VERDICTS
from dermdesk.imaging.quality import CHECK_TITLES, LIVE_CHECKS, assess, live_check, run_checks
from dermdesk.imaging.working import Decoded, linear_to_srgb, srgb_to_linear

DATASETS = ("pad_ufes_20", "ham10000", "fitzpatrick17k")
MODALITY = {"pad_ufes_20": "clinical", "ham10000": "dermoscopic", "fitzpatrick17k": "clinical"}
PIXEL_CHECKS = (
    "sharpness",
    "motion_blur",
    "exposure",
    "clipping",
    "contrast",
    "colour_cast",
    "noise",
    "compression",
    "blockiness",
)


def verdicts(decoded: Decoded, modality: str) -> dict[str, str]:
    return {c.check: c.verdict for c in run_checks(decoded, modality)}


def reasons(decoded: Decoded, modality: str) -> dict[str, str]:
    return {c.check: c.reason for c in run_checks(decoded, modality)}


def scale(d: Decoded) -> float:
    return max(1.0, max(d.rgb.shape[:2]) / 512)


def exposed(d: Decoded, ev: float) -> Decoded:
    lin = srgb_to_linear(d.rgb.astype(np.float32) / 255) * 2.0**ev
    return replace(d, rgb=(linear_to_srgb(lin) * 255 + 0.5).astype(np.uint8))


@pytest.mark.parametrize("name", DATASETS)
def test_untouched_real_image_passes_the_pixel_checks(typical: dict, name: str) -> None:
    found = verdicts(typical[name], MODALITY[name])
    assert {c: found[c] for c in PIXEL_CHECKS} == {c: "pass" for c in PIXEL_CHECKS}


@pytest.mark.parametrize("name", DATASETS)
def test_blurred_copy_fails_sharpness(typical: dict, name: str) -> None:
    d = typical[name]
    blurred = replace(d, rgb=cv2.GaussianBlur(d.rgb, (0, 0), 3 * scale(d)))
    assert verdicts(blurred, MODALITY[name])["sharpness"] == "fail"
    assert reasons(blurred, MODALITY[name])["sharpness"].startswith("blurred: sharpness")


@pytest.mark.parametrize("name", DATASETS)
def test_smeared_copy_is_flagged_for_motion_blur(typical: dict, name: str) -> None:
    d = typical[name]
    n = round(15 * scale(d)) | 1
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1 / n
    smeared = replace(d, rgb=cv2.filter2D(d.rgb, -1, kernel))
    assert verdicts(smeared, MODALITY[name])["motion_blur"] != "pass"


@pytest.mark.parametrize("name", DATASETS)
def test_darkened_copy_fails_exposure_and_brightened_copy_is_flagged(
    typical: dict, name: str
) -> None:
    dark = verdicts(exposed(typical[name], -2.5), MODALITY[name])
    bright = verdicts(exposed(typical[name], +2.0), MODALITY[name])
    assert dark["exposure"] == "fail"
    assert "too dark" in reasons(exposed(typical[name], -2.5), MODALITY[name])["exposure"]
    assert "fail" in (bright["exposure"], bright["clipping"])


@pytest.mark.parametrize("name", DATASETS)
def test_jpeg_quality_10_copy_fails_compression_and_blockiness(typical: dict, name: str) -> None:
    out = io.BytesIO()
    Image.fromarray(typical[name].rgb).save(out, "JPEG", quality=10)
    found = verdicts(out.getvalue(), MODALITY[name])  # type: ignore[arg-type]
    assert found["compression"] == "fail"
    assert found["blockiness"] == "fail"
    # the same pixels with no file around them: the block artefacts alone give it away
    pixels = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    assert verdicts(Decoded.from_array(pixels), MODALITY[name])["blockiness"] == "fail"


@pytest.mark.parametrize("name", DATASETS)
def test_noisy_copy_fails_noise(typical: dict, name: str) -> None:
    d = typical[name]
    noisy = np.clip(d.rgb + np.random.default_rng(0).normal(0, 20, d.rgb.shape), 0, 255)
    assert verdicts(replace(d, rgb=noisy.astype(np.uint8)), MODALITY[name])["noise"] == "fail"


def test_small_copy_fails_resolution(typical: dict) -> None:
    d = typical["ham10000"]
    tiny = cv2.resize(d.rgb, (120, 90), interpolation=cv2.INTER_AREA)
    found = run_checks(tiny, "dermoscopic")
    res = next(c for c in found if c.check == "resolution")
    assert res.verdict == "fail" and "120x90" in res.reason


def test_every_check_reports_in_display_order(typical: dict) -> None:
    result = assess(typical["pad_ufes_20"], "clinical")
    names = [c.check for c in result.checks]
    assert names == [n for n in CHECK_TITLES if n in names]
    assert set(CHECK_TITLES) - set(names) == {"readable", "duplicate"}
    assert all(c.verdict in VERDICTS and c.reason for c in result.checks)
    assert result.phash is not None and len(result.phash) == 16


def test_live_check_on_a_camera_frame(typical: dict) -> None:
    frame = cv2.resize(typical["pad_ufes_20"].rgb, (640, 480))
    rgb = live_check(frame)
    bgr = live_check(frame[:, :, ::-1].copy(), bgr=True)
    assert [c.check for c in rgb] == list(LIVE_CHECKS)
    assert [(c.check, c.verdict) for c in rgb] == [(c.check, c.verdict) for c in bgr]
