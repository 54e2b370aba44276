"""Lesion segmentation and the dermoscope's field of view, classical and fast.

The lesion is what differs from the surrounding skin: the skin colour is read
from the outer ring of the usable field of view, every pixel gets its CIELAB
distance from it (darker and more coloured count; brighter glare does not),
thin dark hairs are bridged over first, and Otsu's threshold on the smoothed
distance separates lesion from skin. Of the candidate regions the largest one
near the centre wins. Everything runs on the small working image (longest side
256 px) in a few milliseconds; :func:`segment_lesion` returns a mask at the
size of the image it was given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.working import masked_rows, pct

if TYPE_CHECKING:
    from dermdesk.imaging.working import WorkImage


def segment_lesion(rgb: np.ndarray) -> np.ndarray:
    """Boolean lesion mask (H, W) of an RGB image; all False when no lesion stands out."""
    from dermdesk.imaging.working import Decoded, WorkImage

    work = WorkImage(Decoded.from_array(rgb))
    small = work.lesion if not work.too_small else np.zeros(work.small.shape[:2], bool)
    h, w = work.rgb.shape[:2]
    if small.shape == (h, w):
        return small
    up = cv2.resize(small.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    return up.astype(bool)


# -- field of view and letterbox -----------------------------------------------------------------


Box = tuple[int, int, int, int]  # top, bottom, left, right


def frame_of(gray: np.ndarray) -> tuple[Box, float | None]:
    """The content box inside any padding bars, and the radius of the dermoscope's field
    of view within it (None for a photo without vignette).

    A dermoscope's field of view is a bright disc in a dark vignette: walking
    in from each corner along the diagonal, brightness jumps where the disc
    begins. When the four corners agree on that radius the disc is the field
    of view; otherwise only padding is excluded (:func:`fov_mask`).
    """
    top, bottom, left, right = content_box(gray)
    return (top, bottom, left, right), vignette_radius(gray[top:bottom, left:right])


def fov_mask(shape: tuple[int, int], box: Box, radius: float | None) -> np.ndarray:
    """Pixels inside the padding box and the dermoscope's circle (:func:`frame_of`)."""
    top, bottom, left, right = box
    inside = np.zeros(shape, bool)
    inside[top:bottom, left:right] = True
    if radius is None:
        return inside
    yy, xx = np.ogrid[top:bottom, left:right]
    cy, cx = (top + bottom - 1) / 2.0, (left + right - 1) / 2.0
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    inside[top:bottom, left:right] &= disc
    return inside


def vignette_radius(gray: np.ndarray) -> float | None:
    """Radius (px) of a dark-cornered circular field of view, or None if there is none."""
    h, w = gray.shape
    if min(h, w) < 16:
        return None
    blurred = cv2.blur(gray, (5, 5)).astype(np.float32)
    level = float(pct(blurred, 90))
    threshold = max(cfg.FOV_DARK_MIN, cfg.FOV_DARK_FRACTION * level)
    half_diag = np.hypot(h - 1, w - 1) / 2.0
    steps = np.linspace(0.0, 1.0, 64)
    radii = []
    for sy, sx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        ys = (sy * (h - 1) + (0.5 - sy) * (h - 1) * steps).round().astype(int)
        xs = (sx * (w - 1) + (0.5 - sx) * (w - 1) * steps).round().astype(int)
        profile = blurred[ys, xs]
        if profile[0] >= threshold:  # bright corner: no vignette here
            radii.append(half_diag)
            continue
        bright = np.nonzero(profile >= threshold)[0]
        radii.append(half_diag * (1.0 - steps[bright[0]]) if bright.size else 0.0)
    radii_arr = np.sort(np.array(radii))
    dark_corners = int((radii_arr < half_diag * 0.97).sum())
    if dark_corners < 3:
        return None
    radius = float(np.median(radii_arr))
    if radius < 0.4 * half_diag:  # mostly dark: an underexposed photo, not a vignette
        return None
    return radius - 1.0


def content_box(gray: np.ndarray) -> Box:
    """(top, bottom, left, right) inside uniform black or white border bars (letterboxing,
    at most 30 % a side)."""
    h, w = gray.shape
    g = gray.astype(np.int16)

    def bar(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        flat = (hi - lo) <= cfg.PAD_RANGE
        return flat & ((hi <= cfg.PAD_DARK) | (lo >= cfg.PAD_BRIGHT))

    rows_flat = bar(g.min(axis=1), g.max(axis=1))
    cols_flat = bar(g.min(axis=0), g.max(axis=0))
    top = _run(rows_flat, h)
    bottom = h - _run(rows_flat[::-1], h)
    left = _run(cols_flat, w)
    right = w - _run(cols_flat[::-1], w)
    if bottom - top < h // 3 or right - left < w // 3:
        return 0, h, 0, w
    return top, bottom, left, right


def _run(flat: np.ndarray, n: int) -> int:
    limit = int(n * 0.3)
    count = 0
    while count < limit and flat[count]:
        count += 1
    return count if count >= 2 else 0


# -- lesion ----------------------------------------------------------------------------------------


def hair_mask(gray: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
    """Thin dark lines (hairs) on a small grey image: black-hat filter plus threshold."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.HAIR_KERNEL, cfg.HAIR_KERNEL))
    blackhat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel)
    mask = blackhat > cfg.HAIR_CONTRAST
    if fov is not None:
        mask &= fov
    return mask


def skin_reference(
    lab: np.ndarray, fov: np.ndarray, exclude: np.ndarray, core: np.ndarray
) -> np.ndarray:
    """Median CIELAB of the outer ring of the field of view (the surrounding skin).

    ``core`` is :func:`fov_core` of ``fov`` (``WorkImage.fov_core``, computed once:
    the erosion is the costliest step, and one image asks three times)."""
    ring = fov & ~exclude & ~core
    if np.count_nonzero(ring) < 20:
        ring = fov & ~exclude
    if np.count_nonzero(ring) < 20:
        ring = np.ones(fov.shape, bool)
    values = masked_rows(lab, ring)
    # A large lesion can cover much of the ring; skin is the lighter part of it.
    light = masked_rows(values, values[:, 0] >= pct(values[:, 0], cfg.SKIN_RING_LIGHT_PERCENTILE))
    return np.asarray(pct(light, 50, axis=0))


def fov_core(fov: np.ndarray) -> np.ndarray:
    """The field of view minus its outer ring, where :func:`skin_reference` reads skin."""
    return _eroded(fov, cfg.SKIN_RING_FRACTION)


def _eroded(mask: np.ndarray, fraction: float) -> np.ndarray:
    size = max(3, round(min(mask.shape) * fraction) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    return cv2.erode(padded, kernel)[1:-1, 1:-1].astype(bool)


def lesion_distance(lab: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Per-pixel 'how lesion-like': darker and more differently coloured than skin."""
    d_l = skin[0] - lab[:, :, 0]  # positive where darker
    d_a = lab[:, :, 1] - skin[1]
    d_b = lab[:, :, 2] - skin[2]
    darker = np.maximum(d_l, 0.0) + cfg.LESION_BRIGHTER_WEIGHT * np.maximum(-d_l, 0.0)
    return np.sqrt(darker**2 + d_a**2 + d_b**2)


def segment_small(work: WorkImage) -> np.ndarray:
    """Lesion mask on the work image's small view."""
    fov = work.fov
    hair = work.hair
    lab = work.lab
    skin = skin_reference(lab, fov, hair, work.fov_core)
    dist = lesion_distance(lab, skin)
    lab = flatten_shading(lab, fov & ~hair & (dist <= pct(dist[fov], 40)))
    skin = skin_reference(lab, fov, hair, work.fov_core)
    dist = lesion_distance(lab, skin)
    if hair.any():  # bridge hairs: take the distance from their surroundings
        dist = np.where(hair, cv2.medianBlur(dist.astype(np.float32), 5), dist)
    dist = cv2.GaussianBlur(dist.astype(np.float32), (0, 0), 1.5)
    values = dist[fov]
    if values.size < 50:
        return np.zeros(fov.shape, bool)
    threshold = max(_otsu(values), cfg.LESION_MIN_DELTA_E)
    mask = (dist > threshold) & fov
    return _pick_component(_clean(mask), fov)


def flatten_shading(lab: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Remove smooth illumination falloff from L*: a quadratic surface fitted on skin pixels."""
    h, w = skin.shape
    found = cv2.findNonZero(skin.astype(np.uint8))  # np.nonzero's pixels and order, faster
    if found is None or len(found) < 50:
        return lab
    xs, ys = found.reshape(-1, 2).T
    step = max(1, ys.size // 1000)
    ys, xs = ys[::step], xs[::step]
    a = _quadratic_basis(ys / h - 0.5, xs / w - 0.5)
    coef = np.linalg.solve(a.T @ a + 1e-6 * np.eye(6), a.T @ lab[ys, xs, 0].astype(np.float64))
    v = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None]
    u = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
    surface = coef[1] * u + coef[2] * v + coef[3] * u * u + coef[4] * v * v + coef[5] * u * v
    out = lab.copy()
    out[:, :, 0] -= surface.astype(np.float32)
    return out


def _quadratic_basis(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], axis=-1)


def _otsu(values: np.ndarray) -> float:
    top = float(pct(values, 99.5)) or 1.0
    scaled = np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(scaled.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t) / 255.0 * top


def _clean(mask: np.ndarray) -> np.ndarray:
    m: np.ndarray = mask.astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    return m.astype(bool)


def _pick_component(mask: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """The largest region near the centre, holes filled; empty if nothing is big enough."""
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    if n <= 1:
        return np.zeros(mask.shape, bool)
    h, w = mask.shape
    area_min = cfg.LESION_MIN_AREA * fov.sum()
    best, best_score = 0, 0.0
    for i in range(1, n):
        area = stats[i, cv2.CC_STAT_AREA]
        if area < area_min:
            continue
        cx, cy = centroids[i]
        off = np.hypot((cx - w / 2) / (w / 2), (cy - h / 2) / (h / 2)) / np.sqrt(2)
        score = area * (1.0 - 0.8 * off) ** 2
        if score > best_score:
            best, best_score = i, score
    if best == 0:
        return np.zeros(mask.shape, bool)
    return _fill_holes(labels == best)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(m)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)
