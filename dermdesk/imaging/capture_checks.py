"""Fast quality checks on live camera frames: sharpness, exposure, glare.

A small fallback used by the capture dialog until the full quality checker
(``dermdesk.imaging`` quality module, issue 3) provides its live-capture mode;
any callable with :data:`LiveChecker`'s shape can replace :func:`live_check`.
Each finding says what to fix in words a nurse understands. Pure OpenCV and
numpy on a 320-pixel working copy, so it runs at camera frame rate on one core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

WORKING_SIZE = 320
# Thresholds measured on 640x480 versions of the real images in ../shared/data:
# untouched photos have a Laplacian variance of 13-2400 (5th-99th percentile),
# a Gaussian blur of sigma 3 brings 95% of them below 14.
SHARPNESS_FAIL = 10.0
SHARPNESS_WARN = 25.0
DARK_FAIL, DARK_WARN = 45.0, 70.0  # mean luminance 0-255
BRIGHT_FAIL, BRIGHT_WARN = 220.0, 200.0
CLIPPED_WARN = 0.10  # fraction of pixels at the top of the range
GLARE_WARN, GLARE_FAIL = 0.03, 0.20  # fraction of bright, colourless (specular) pixels;
# untouched real images: 99th percentile 9%


@dataclass(frozen=True)
class LiveFinding:
    """One check on one frame."""

    name: str  # "sharpness", "exposure", "glare"
    score: float
    verdict: str  # "pass", "warn", "fail"
    reason: str  # what is wrong and what to do about it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Any per-frame checker: findings need ``verdict`` and ``reason`` and a ``name`` (or
# ``check``, as the quality checker's CheckResult has) and ``score``.
LiveChecker = Callable[[np.ndarray], Sequence[Any]]


def working_copy(rgb: np.ndarray) -> np.ndarray:
    """The frame shrunk so its longest side is WORKING_SIZE pixels (never enlarged)."""
    h, w = rgb.shape[:2]
    scale = WORKING_SIZE / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def live_check(rgb: np.ndarray) -> list[LiveFinding]:
    """Sharpness, exposure and glare of an RGB uint8 frame (H, W, 3)."""
    small = working_copy(np.ascontiguousarray(rgb))
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    return [check_sharpness(gray), check_exposure(gray), check_glare(hsv)]


def check_sharpness(gray: np.ndarray) -> LiveFinding:
    score = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    if score < SHARPNESS_FAIL:
        return LiveFinding(
            "sharpness",
            score,
            "fail",
            f"blurred (sharpness {score:.0f}, needs {SHARPNESS_WARN:.0f}): "
            "hold the camera steady and tap to focus on the lesion",
        )
    if score < SHARPNESS_WARN:
        return LiveFinding(
            "sharpness",
            score,
            "warn",
            f"slightly soft (sharpness {score:.0f}, needs {SHARPNESS_WARN:.0f}): refocus",
        )
    return LiveFinding("sharpness", score, "pass", f"sharp (sharpness {score:.0f})")


def check_exposure(gray: np.ndarray) -> LiveFinding:
    mean = float(gray.mean())
    clipped = float((gray >= 250).mean())
    if mean < DARK_FAIL:
        return LiveFinding("exposure", mean, "fail", f"too dark (brightness {mean:.0f}): add light")
    if mean > BRIGHT_FAIL:
        return LiveFinding(
            "exposure", mean, "fail", f"too bright (brightness {mean:.0f}): reduce the light"
        )
    if mean < DARK_WARN:
        return LiveFinding("exposure", mean, "warn", f"dim (brightness {mean:.0f}): add light")
    if mean > BRIGHT_WARN or clipped > CLIPPED_WARN:
        return LiveFinding(
            "exposure",
            mean,
            "warn",
            f"bright, {clipped:.0%} clipped: lower the exposure or move the lamp",
        )
    return LiveFinding("exposure", mean, "pass", f"well exposed (brightness {mean:.0f})")


def check_glare(hsv: np.ndarray) -> LiveFinding:
    fraction = float(((hsv[..., 2] > 245) & (hsv[..., 1] < 40)).mean())
    if fraction > GLARE_FAIL:
        return LiveFinding(
            "glare",
            fraction,
            "fail",
            f"strong glare on {fraction:.0%} of the frame: tilt the camera or use polarised light",
        )
    if fraction > GLARE_WARN:
        return LiveFinding(
            "glare", fraction, "warn", f"some glare ({fraction:.0%}): tilt the camera slightly"
        )
    return LiveFinding("glare", fraction, "pass", "no glare")


def worst_verdict(findings: Sequence[Any]) -> str:
    order = {"pass": 0, "warn": 1, "fail": 2}
    return max((f.verdict for f in findings), key=order.__getitem__, default="pass")
