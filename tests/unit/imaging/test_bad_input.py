"""Odd pixels get verdicts with reasons, never an exception."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dermdesk.imaging.findings import VERDICTS
from dermdesk.imaging.quality import assess, live_check
from dermdesk.imaging.segment import segment_lesion
from dermdesk.imaging.skintone import Refusal, estimate_skin_tone
from tests.helpers import encode, skin_like


def png16(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr.astype(np.uint16)).save(out, "PNG")
    return out.getvalue()


rng = np.random.default_rng(0)
CASES = {
    "1x1": np.zeros((1, 1, 3), np.uint8),
    "1x1 file": encode(np.full((1, 1, 3), 128, np.uint8), "PNG"),
    "3x500 sliver": np.full((3, 500, 3), 200, np.uint8),
    "all black": np.zeros((300, 400, 3), np.uint8),
    "all white": np.full((300, 400, 3), 255, np.uint8),
    "grey array": skin_like()[:, :, 0],
    "grey file": encode(skin_like()[:, :, 0], "PNG"),
    "RGBA array": np.dstack([skin_like(), np.full((240, 320), 128, np.uint8)]),
    "RGBA file": encode(np.dstack([skin_like(), np.full((240, 320), 0, np.uint8)]), "PNG"),
    "16-bit grey file": png16(np.linspace(0, 65535, 240 * 320).reshape(240, 320)),
    "16-bit array": (skin_like().astype(np.uint16) * 257),
    "float array": skin_like().astype(np.float32) / 255,
    "random noise": rng.integers(0, 256, (300, 300, 3), dtype=np.uint8),
    "blue sheet (not skin)": np.full((300, 400, 3), (20, 60, 200), np.uint8),
    "checkerboard (not skin)": (np.indices((256, 256)).sum(axis=0) // 16 % 2 * 255).astype(
        np.uint8
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_odd_images_get_verdicts_with_reasons(name: str, caplog: pytest.LogCaptureFixture) -> None:
    result = assess(CASES[name])
    assert result.checks
    for c in result.checks:
        assert c.verdict in VERDICTS
        assert c.reason and "\n" not in c.reason
        assert "could not be checked" not in c.reason, (c.check, c.reason)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_tiny_image_fails_resolution_and_says_nothing_else_was_measured() -> None:
    by_name = assess(CASES["1x1"]).by_name()
    assert by_name["resolution"].verdict == "fail"
    assert "1x1 px" in by_name["sharpness"].reason
    assert by_name["skin_tone"].verdict == "warn"


def test_blank_images_fail_the_checks_a_nurse_would_expect() -> None:
    black = assess(CASES["all black"]).by_name()
    white = assess(CASES["all white"]).by_name()
    assert black["exposure"].verdict == "fail" and "too dark" in black["exposure"].reason
    assert white["exposure"].verdict == "fail" and "too bright" in white["exposure"].reason
    for found in (black, white):
        assert found["sharpness"].verdict == "fail"
        assert "no detail" in found["sharpness"].reason
        assert isinstance(assess(CASES["all black"]).skin_tone, Refusal)


def test_huge_jpeg_is_checked_from_a_reduced_decode() -> None:
    big = np.tile(skin_like(400, 300), (20, 20, 1))  # 8000 x 6000 px, 48 MP
    data = encode(big, "JPEG", quality=85)
    result = assess(data)
    by_name = result.by_name()
    assert by_name["resolution"].verdict == "pass" and "8000x6000" in by_name["resolution"].reason
    assert by_name["compression"].score == 85


def test_unreadable_bytes_give_one_failing_readable_result() -> None:
    result = assess(b"this is not an image")
    assert [(c.check, c.verdict) for c in result.checks] == [("readable", "fail")]
    assert "not an image" in result.checks[0].reason
    assert isinstance(result.skin_tone, Refusal)


def test_truncated_jpeg_is_reported_not_raised() -> None:
    data = encode(skin_like(), "JPEG", quality=90)
    result = assess(data[: len(data) // 2])
    assert result.checks[0].check == "readable" and result.checks[0].verdict == "fail"


def test_non_skin_image_refuses_a_skin_tone() -> None:
    assert isinstance(estimate_skin_tone(CASES["blue sheet (not skin)"]), Refusal)


def test_segmentation_and_live_check_accept_odd_arrays() -> None:
    for name in ("1x1", "all black", "grey array", "RGBA array", "16-bit array"):
        arr = CASES[name]
        assert isinstance(arr, np.ndarray)
        mask = segment_lesion(arr)
        assert mask.shape == arr.shape[:2] and mask.dtype == bool
        assert live_check(arr if arr.ndim == 3 and arr.shape[2] == 3 else skin_like())


def test_the_checker_imports_neither_qt_nor_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, dermdesk.imaging.quality, dermdesk.library.quality_store, "
        "dermdesk.library.checking; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
