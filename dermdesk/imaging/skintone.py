"""Skin tone from the pixels: Individual Typology Angle (ITA) of the skin around the lesion.

The lesion is segmented, a ring of surrounding skin is taken (minus hair,
ink, glare and anything not skin-coloured), and ITA = atan((L* - 50) / b*)
in degrees is computed from the ring's median CIELAB values. ITA maps to
Fitzpatrick I-VI by cut points and to Monk 1-10 through the scale's own
reference colours. With no usable skin, an image too dark or too bright, or
a colour cast, the estimator refuses and says why: a wrong tone is worse
than none. Manual ratings always win over estimates (the library keeps both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from dermdesk import taxonomy
from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.findings import CheckResult
from dermdesk.imaging.working import Decoded, WorkImage, masked_rows, pct


@dataclass(frozen=True)
class SkinToneEstimate:
    """An estimated skin tone. ``confidence`` is 0-1 (how far from a type boundary, how
    much clean skin was measured)."""

    ita: float  # degrees
    fitzpatrick: int  # 1-6
    monk: int  # 1-10
    confidence: float
    l_star: float  # median CIELAB of the measured skin
    b_star: float
    pixels: int  # skin pixels measured (at the working size)


@dataclass(frozen=True)
class Refusal:
    """No estimate, and why (one line)."""

    reason: str


def estimate_skin_tone(
    rgb: np.ndarray, mask: np.ndarray | None = None
) -> SkinToneEstimate | Refusal:
    """Estimate the skin tone of an RGB image; ``mask`` is an optional lesion mask
    (any size: it is resized to the image). Never raises for odd pixels."""
    work = WorkImage(Decoded.from_array(rgb))
    if work.too_small:
        return Refusal("image too small to measure skin tone")
    lesion = None
    if mask is not None:
        small = work.small.shape[:2]
        lesion = cv2.resize(np.asarray(mask).astype(np.uint8), (small[1], small[0])) > 0
    return estimate_from_work(work, lesion)


def estimate_from_work(
    work: WorkImage, lesion: np.ndarray | None = None, cast_ok: bool = True
) -> SkinToneEstimate | Refusal:
    """Estimate on a prepared work image (the quality pipeline shares its views)."""
    if not cast_ok:
        return Refusal("colour cast or bad exposure: skin colour cannot be trusted")
    lesion = work.lesion if lesion is None else lesion
    skin = skin_pixels(work, lesion)
    count = int(skin.sum())
    fov_area = max(int(work.fov.sum()), 1)
    if count < cfg.TONE_MIN_PIXELS or count < cfg.TONE_MIN_FRACTION * fov_area:
        return Refusal("too little healthy skin visible around the lesion to judge skin tone")
    lab = masked_rows(work.lab, skin)
    l_star, b_star = float(pct(lab[:, 0], 50)), float(pct(lab[:, 2], 50))
    if l_star < cfg.TONE_MIN_L:
        return Refusal(f"skin too dark in this photo (L* {l_star:.0f}): underexposed?")
    if l_star > cfg.TONE_MAX_L:
        return Refusal(f"skin too bright in this photo (L* {l_star:.0f}): overexposed?")
    ita = ita_degrees(l_star, b_star)
    spread = _ita_spread(lab)
    if spread > cfg.TONE_MAX_SPREAD:
        return Refusal(f"skin colour too uneven around the lesion (ITA spread {spread:.0f}°)")
    fitz = fitzpatrick_from_ita(ita)
    return SkinToneEstimate(
        ita=round(ita, 2),
        fitzpatrick=fitz,
        monk=monk_from_ita(ita),
        confidence=round(_confidence(ita, fitz, count, spread), 2),
        l_star=round(l_star, 2),
        b_star=round(b_star, 2),
        pixels=count,
    )


def ita_degrees(l_star: float, b_star: float) -> float:
    """ITA = atan((L* - 50) / b*) in degrees (atan2 keeps it defined when b* <= 0)."""
    return math.degrees(math.atan2(l_star - 50.0, b_star))


def fitzpatrick_from_ita(ita: float) -> int:
    """Fitzpatrick type for an ITA value, by the calibrated cut points."""
    for fitz, bound in enumerate(cfg.ITA_FITZPATRICK_CUTS, start=1):
        if ita > bound:
            return fitz
    return 6


def monk_from_ita(ita: float) -> int:
    """Monk tone whose reference colour's ITA (shifted like the calibration) is nearest."""
    refs = _monk_ita()
    return int(np.argmin(np.abs(np.asarray(refs) - (ita + cfg.ITA_MONK_SHIFT)))) + 1


@lru_cache(maxsize=1)
def _monk_ita() -> tuple[float, ...]:
    out = []
    for tone in taxonomy.monk_scale():
        hexa = tone["swatch"].lstrip("#")
        rgb = np.array([[[int(hexa[i : i + 2], 16) for i in (0, 2, 4)]]], np.float32) / 255
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[0, 0]
        out.append(ita_degrees(float(lab[0]), float(lab[2])))
    return tuple(out)


def skin_pixels(work: WorkImage, lesion: np.ndarray) -> np.ndarray:
    """Healthy-skin pixels: a ring around the lesion, else all skin-coloured pixels.

    A 'lesion' covering much of the frame is usually the body against a
    background (atlas photos) or a rash: then all skin-coloured pixels count,
    minus the most lesion-like (farthest from their median colour).
    """
    lab, fov = work.lab, work.fov
    skin = fov & skin_colour(lab)
    skin &= ~work.hair
    skin &= ~(work.chan_min >= cfg.GLARE_MIN_LEVEL)
    share = lesion.sum() / max(int(fov.sum()), 1)
    if lesion.any() and share < cfg.TONE_MAX_LESION_SHARE:
        diameter = 2.0 * math.sqrt(lesion.sum() / math.pi)
        # distance from the lesion: the ring is a band of it (cheaper than two dilations)
        dist = cv2.distanceTransform((~lesion).astype(np.uint8), cv2.DIST_L2, 3)
        inner = dist <= max(2, int(cfg.TONE_RING_GAP * diameter))
        outer = dist <= max(6, int(cfg.TONE_RING_WIDTH * diameter))
        ring = outer & ~inner & skin
        if ring.sum() >= cfg.TONE_MIN_PIXELS:
            return ring
        skin &= ~inner
    return _typical(skin, lab)


def _typical(skin: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Drop the skin pixels least like the rest (lesions, redness, shadows)."""
    if skin.sum() < cfg.TONE_MIN_PIXELS:
        return skin
    values = masked_rows(lab, skin)
    dist = np.linalg.norm(values - pct(values, 50, axis=0), axis=1)
    keep = dist <= pct(dist, cfg.TONE_TYPICAL_PERCENTILE)
    out = np.zeros_like(skin)
    out[skin] = keep
    return out


def skin_colour(lab: np.ndarray) -> np.ndarray:
    """Pixels whose colour could be skin of any tone (warm hue, some chroma, not black/white)."""
    l_star, a, b = lab[:, :, 0], lab[:, :, 1], lab[:, :, 2]
    hue = np.degrees(np.arctan2(b, a))
    chroma = np.hypot(a, b)
    return (
        (l_star > cfg.SKIN_L_RANGE[0])
        & (l_star < cfg.SKIN_L_RANGE[1])
        & (hue > cfg.SKIN_HUE_RANGE[0])
        & (hue < cfg.SKIN_HUE_RANGE[1])
        & (chroma > cfg.SKIN_MIN_CHROMA)
    )


def _ita_spread(lab: np.ndarray) -> float:
    ita = np.degrees(np.arctan2(lab[:, 0] - 50.0, lab[:, 2]))
    q25, q75 = pct(ita, (25, 75))
    return float(q75 - q25)


def _confidence(ita: float, fitz: int, pixels: int, spread: float) -> float:
    """Distance to the nearest Fitzpatrick boundary, discounted for few pixels or uneven skin."""
    cuts = cfg.ITA_FITZPATRICK_CUTS
    bounds = [cuts[fitz - 2] if fitz >= 2 else math.inf, cuts[fitz - 1] if fitz <= 5 else -math.inf]
    margin = min(abs(ita - b) for b in bounds)
    base = 0.4 + 0.5 * min(1.0, margin / cfg.TONE_CONFIDENT_MARGIN)
    size = min(1.0, pixels / (4 * cfg.TONE_MIN_PIXELS))
    evenness = max(0.3, 1.0 - spread / (2 * cfg.TONE_MAX_SPREAD))
    return max(0.05, min(0.95, base * (0.6 + 0.4 * size) * evenness))


def check_skin_tone(result: SkinToneEstimate | Refusal) -> CheckResult:
    """The estimate (or the refusal) as a finding for the quality table."""
    if isinstance(result, Refusal):
        return CheckResult("skin_tone", None, "warn", f"skin tone not estimated: {result.reason}")
    roman = taxonomy.fitzpatrick_roman(result.fitzpatrick)
    return CheckResult(
        "skin_tone",
        result.ita,
        "pass",
        f"estimated Fitzpatrick {roman}, Monk {result.monk} (ITA {result.ita:.0f}°, "
        f"confidence {result.confidence:.0%})",
        {"fitzpatrick": result.fitzpatrick, "monk": result.monk, "confidence": result.confidence},
    )
