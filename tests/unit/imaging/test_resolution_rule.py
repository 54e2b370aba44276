"""Resolution per modality: a clinical photo is judged on its lesion's pixels (issue 19)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.quality import run_checks
from dermdesk.imaging.working import decode_for_checks
from tests.helpers import skin_like


def resolution(rgb_or_path: np.ndarray | Path, modality: str) -> tuple[str, str]:
    source = decode_for_checks(rgb_or_path) if isinstance(rgb_or_path, Path) else rgb_or_path
    found = next(c for c in run_checks(source, modality) if c.check == "resolution")
    return found.verdict, found.reason


def test_a_595_px_clinical_photo_with_a_clear_lesion_passes() -> None:
    rgb = skin_like(595, 590, seed=3)  # the example: warned for being under 600 px
    verdict, reason = resolution(rgb, "clinical")
    assert verdict == "pass" and "the lesion spans" in reason


def test_a_lesion_too_few_pixels_across_warns_and_says_what_to_do() -> None:
    rgb = np.full((300, 400, 3), (200, 150, 125), np.uint8)
    rng = np.random.default_rng(0)
    rgb = np.clip(rgb + rng.normal(0, 5, rgb.shape), 0, 255).astype(np.uint8)
    cv2.circle(rgb, (200, 150), 20, (90, 55, 40), -1)  # 40 px across
    verdict, reason = resolution(rgb, "clinical")
    assert verdict == "warn"
    assert f"needs ≥ {cfg.LESION_SPAN_WARN} px" in reason and "move closer" in reason


def test_dermoscopy_keeps_its_frame_rule_and_anything_tiny_fails(shared_data: Path) -> None:
    ham = next((shared_data / "ham10000" / "images").glob("*.jpg"))
    assert resolution(ham, "dermoscopic")[0] == "pass"  # 600x450
    small = cv2.resize(decode_for_checks(ham).rgb, (400, 300), interpolation=cv2.INTER_AREA)
    assert resolution(small, "dermoscopic")[0] == "warn"
    tiny = cv2.resize(skin_like(595, 590, seed=3), (140, 139), interpolation=cv2.INTER_AREA)
    assert resolution(tiny, "clinical")[0] == "fail"
