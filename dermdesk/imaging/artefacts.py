"""Artefact tags: hair over the image, ink / marker pen, a ruler, dermoscope gel bubbles.

Each is a warning, never a failure: the image is usable, but a model or a
reader should know (a ruler or a pen circle is a known shortcut that models
learn instead of the lesion). Detectors are classical and fast:

* hair: black-hat filter for thin dark lines, elongated pieces only;
* ink: pixels much bluer/violet than the skin around the lesion, outside it;
* ruler: many small parallel tick marks lined up at a regular spacing;
* bubbles: small circles with a bright rim (Hough transform) off the lesion.
"""

from __future__ import annotations

import bisect
import math

import cv2
import numpy as np

from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.findings import CheckResult, graded
from dermdesk.imaging.segment import skin_reference
from dermdesk.imaging.working import WorkImage, linear_percentile

# -- hair ------------------------------------------------------------------------------------------


def measure_hair(work: WorkImage) -> float:
    """% of the field of view covered by hair (thin, elongated dark lines)."""
    mask = work.hair
    if not mask.any():
        return 0.0
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    w, h, area = stats[:, 2], stats[:, 3], stats[:, 4]
    length = np.maximum(w, h).astype(np.float64)
    thin = (length >= cfg.HAIR_MIN_LENGTH) & (area <= cfg.HAIR_MAX_WIDTH * length)
    # crossing hairs form one sprawling, sparse component
    network = (length >= 3 * cfg.HAIR_MIN_LENGTH) & (area <= 0.25 * w * h)
    keep = thin | network
    keep[0] = False
    return 100.0 * float(area[keep].sum()) / max(int(work.fov.sum()), 1)


def check_hair(work: WorkImage) -> CheckResult:
    return graded(
        "hair",
        measure_hair(work),
        cfg.LIMITS["hair"],
        "little hair ({score:.0f}% of image)",
        "hair covers {score:.0f}% of the image ({needed}%); "
        "part, wet or trim the hair over the lesion",
        digits=2,
    )


# -- ink / marker ----------------------------------------------------------------------------------


def ink_mask(work: WorkImage) -> np.ndarray:
    """Pixels of surgical-marker ink: much bluer and darker than the skin, off the lesion."""
    lab, fov = work.lab, work.fov
    skin = skin_reference(lab, fov, work.lesion, work.fov_core)
    d_b = lab[:, :, 2] - skin[2]
    d_l = lab[:, :, 0] - skin[0]
    mask = (d_b < -cfg.INK_MIN_BLUE_SHIFT) & (d_l < -cfg.INK_MIN_DARKER) & fov
    if not mask.any():  # most images: no pixel is bluer and darker than the skin
        return mask
    # Hue and chroma only where the cheap tests passed (trigonometry on every pixel
    # was a tenth of the ink check).
    a, b = lab[:, :, 1][mask], lab[:, :, 2][mask]
    hue = np.degrees(np.arctan2(b, a)) % 360
    keep = (
        (hue >= cfg.INK_HUE_MIN) & (hue <= cfg.INK_HUE_MAX) & (np.hypot(a, b) > cfg.INK_MIN_CHROMA)
    )
    mask[mask] = keep
    lesion = cv2.dilate(work.lesion.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return mask & fov & ~lesion


def measure_ink(work: WorkImage) -> float:
    """% of the skin (field of view minus lesion) covered by ink, ignoring specks."""
    mask = ink_mask(work)
    if not mask.any():
        return 0.0
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA]
    skin_area = max(int((work.fov & ~work.lesion).sum()), 1)
    return 100.0 * float(area[area >= cfg.INK_MIN_BLOB].sum()) / skin_area


def check_ink(work: WorkImage) -> CheckResult:
    return graded(
        "ink",
        measure_ink(work),
        cfg.LIMITS["ink"],
        "no pen or ink marks",
        "pen / ink marks on the skin ({score:.1f}% of it): fine for the record, but tag or "
        "crop before training a model",
    )


# -- ruler -----------------------------------------------------------------------------------------


def ruler_ticks(gray: np.ndarray) -> int:
    """Number of tick marks in the largest evenly spaced row of parallel short dark lines."""
    blackhat = cv2.morphologyEx(
        gray, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7))
    )
    thr = max(cfg.RULER_CONTRAST, float(linear_percentile(blackhat[::2, ::2].ravel(), 97)))
    mask = (blackhat > thr).astype(np.uint8)
    mask &= ~_long_lines(mask)  # a ruler's baseline would join its ticks into one piece
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1 or n > cfg.RULER_MAX_COMPONENTS:
        return 0
    angle, length, width = _component_shapes(mask, labels, n)
    area = stats[:, cv2.CC_STAT_AREA]
    ok = (area >= cfg.RULER_TICK_AREA[0]) & (area <= cfg.RULER_TICK_AREA[1])
    ok &= (length >= cfg.RULER_TICK_LENGTH[0]) & (length <= cfg.RULER_TICK_LENGTH[1])
    ok &= length >= cfg.RULER_TICK_ELONGATION * np.maximum(width, 0.5)
    ok[0] = False  # background
    ticks = np.column_stack([angle[ok], centroids[ok, 0], centroids[ok, 1]])
    return _longest_tick_row(ticks)


def _long_lines(mask: np.ndarray) -> np.ndarray:
    """Straight runs longer than a tick in any of 8 directions (baselines, long hairs).

    Found at half resolution (4x cheaper; a thin line survives the area-averaging as
    any non-zero pixel) and widened by a pixel on the way back up.
    """
    h, w = mask.shape
    half = (
        cv2.resize(mask.astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA) > 0
    ).astype(np.uint8)
    size = cfg.RULER_LINE_LENGTH // 2 | 1
    found = np.zeros_like(half)
    for angle in np.arange(0.0, 180.0, 22.5):
        kernel = np.zeros((size, size), np.uint8)
        c = size // 2
        dx, dy = math.cos(math.radians(angle)) * c, math.sin(math.radians(angle)) * c
        cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1, 1)
        found = np.maximum(found, cv2.morphologyEx(half, cv2.MORPH_OPEN, kernel))
    up = cv2.resize(found, (w, h), interpolation=cv2.INTER_NEAREST)
    return cv2.dilate(up, np.ones((3, 3), np.uint8))


def _component_shapes(
    mask: np.ndarray, labels: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(angle 0-180 degrees, length, width) of every component ``labels`` numbers in
    ``mask``, from its moments."""
    # the labelled pixels are the mask's, in the same row-major order as np.nonzero
    found = cv2.findNonZero(mask)
    points = np.zeros((0, 2), np.int32) if found is None else found.reshape(-1, 2)
    xs, ys = points[:, 0], points[:, 1]
    ids = labels[ys, xs]
    count = np.maximum(np.bincount(ids, minlength=n), 1).astype(np.float64)
    mx = np.bincount(ids, xs, n) / count
    my = np.bincount(ids, ys, n) / count
    dx, dy = xs - mx[ids], ys - my[ids]
    sxx = np.bincount(ids, dx * dx, n) / count
    syy = np.bincount(ids, dy * dy, n) / count
    sxy = np.bincount(ids, dx * dy, n) / count
    half_trace = (sxx + syy) / 2
    disc = np.sqrt(np.maximum(half_trace**2 - (sxx * syy - sxy**2), 0.0))
    major, minor = half_trace + disc, np.maximum(half_trace - disc, 0.0)
    angle = np.degrees(0.5 * np.arctan2(2 * sxy, sxx - syy)) % 180.0
    return angle, 4.0 * np.sqrt(major), 4.0 * np.sqrt(minor)


def _longest_tick_row(arr: np.ndarray) -> int:
    """Ticks as rows of (angle, x, y): the longest evenly spaced row of parallel ones."""
    best = 0
    if len(arr) < cfg.RULER_MIN_TICKS:
        return len(arr)
    for angle in np.arange(0.0, 180.0, 7.5):
        diff = np.abs((arr[:, 0] - angle + 90.0) % 180.0 - 90.0)
        group = arr[diff <= cfg.RULER_ANGLE_TOL]
        if len(group) < cfg.RULER_MIN_TICKS or len(group) <= best:
            continue  # a row is never longer than its group: it cannot beat ``best``
        theta = math.radians(angle)
        along = group[:, 1] * math.cos(theta) + group[:, 2] * math.sin(theta)  # tick direction
        across = -group[:, 1] * math.sin(theta) + group[:, 2] * math.cos(theta)  # ruler direction
        order = np.argsort(along)
        # plain floats from here: the scan is scalar work, where numpy scalars cost ~10x
        along_list, across_list = along[order].tolist(), across[order].tolist()
        start = 0
        for end in range(1, len(along_list) + 1):
            if (
                end == len(along_list)
                or along_list[end] - along_list[end - 1] > cfg.RULER_BASELINE_TOL
            ):
                if end - start > best:
                    best = max(best, _even_run(sorted(across_list[start:end])))
                start = end
    return best


def _even_run(positions: list[float]) -> int:
    """Longest chain of marks at one regular spacing (a ruler's millimetre marks; a single
    missing mark is bridged). ``positions`` must be sorted."""
    if len(positions) < 3:
        return len(positions)
    gaps = np.diff(positions)
    best = 0
    for spacing in np.unique(np.round(gaps[gaps >= cfg.RULER_MIN_SPACING], 1)).tolist():
        tol = cfg.RULER_SPACING_TOL * spacing
        for start in positions:
            length, at = 1, start
            while True:
                nxt = _mark_near(positions, at + spacing, tol)
                if nxt is None:
                    nxt = _mark_near(positions, at + 2 * spacing, tol)
                if nxt is None:
                    break
                length, at = length + 1, nxt
            best = max(best, length)
    return best


def _mark_near(positions: list[float], target: float, tol: float) -> float | None:
    """The first sorted position within ``tol`` of ``target``, if any."""
    i = bisect.bisect_left(positions, target - tol)
    if i < len(positions) and positions[i] <= target + tol:
        return positions[i]
    return None


def check_ruler(work: WorkImage) -> CheckResult:
    return graded(
        "ruler",
        ruler_ticks(work.sharp_gray8),
        cfg.LIMITS["ruler"],
        "no ruler or scale seen",
        "ruler / scale marks in view ({score} evenly spaced ticks): fine for measuring, "
        "but tag or crop before training a model",
        digits=None,
    )


# -- bubbles ---------------------------------------------------------------------------------------


def bubble_candidates(smoothed: np.ndarray) -> np.ndarray | None:
    """Hough circles of bubble size in a smoothed uint8 grey image: rows of (x, y, radius),
    strongest first, or None."""
    circles = cv2.HoughCircles(
        smoothed,
        cv2.HOUGH_GRADIENT,
        dp=1,
        minDist=cfg.BUBBLE_MIN_DIST,
        param1=cfg.BUBBLE_CANNY,
        param2=cfg.BUBBLE_VOTES,
        minRadius=cfg.BUBBLE_RADIUS[0],
        maxRadius=cfg.BUBBLE_RADIUS[1],
    )
    return None if circles is None else circles[0]


def count_bubbles(work: WorkImage) -> int:
    """Small transparent circles off the lesion (air bubbles in dermoscope gel).

    Hough circle candidates are kept when their outline is a complete ring of
    edge (a bubble's meniscus) and their inside looks like their outside
    (a bubble is transparent; a dark dot or a pore is not).
    """
    gray = cv2.GaussianBlur(work.sharp_gray8, (3, 3), 0)
    scale = gray.shape[1] / work.fov.shape[1]
    circles = bubble_candidates(gray)
    if circles is None:
        return 0
    lesion = cv2.dilate(work.lesion.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    count = 0
    for x, y, r in circles[: cfg.BUBBLE_MAX_CANDIDATES]:
        sx, sy = int(x / scale), int(y / scale)
        if not (0 <= sy < lesion.shape[0] and 0 <= sx < lesion.shape[1]):
            continue
        if lesion[sy, sx] or not work.fov[sy, sx]:
            continue
        if _looks_like_bubble(gray, gx, gy, float(x), float(y), float(r)):
            count += 1
    return count


def _looks_like_bubble(
    gray: np.ndarray, gx: np.ndarray, gy: np.ndarray, x: float, y: float, r: float
) -> bool:
    """A complete ring of edges pointing to the centre, with the same grey inside as out."""
    h, w = gray.shape
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    cos, sin = np.cos(angles), np.sin(angles)

    def ring(radius: float, img: np.ndarray) -> np.ndarray:
        xs = np.clip((x + radius * cos).round().astype(int), 0, w - 1)
        ys = np.clip((y + radius * sin).round().astype(int), 0, h - 1)
        return img[ys, xs].astype(np.float32)

    best = np.zeros(32, bool)
    for radius in (r - 1, r, r + 1):
        ex, ey = ring(radius, gx), ring(radius, gy)
        mag = np.hypot(ex, ey)
        radial = np.abs(ex * cos + ey * sin) >= cfg.BUBBLE_RADIAL * np.maximum(mag, 1e-3)
        best |= (mag >= cfg.BUBBLE_EDGE) & radial
    inside = float(np.mean(ring(0.5 * r, gray)))
    outside = float(np.mean(ring(r + 3, gray)))
    return float(best.mean()) >= cfg.BUBBLE_COMPLETE and abs(inside - outside) <= cfg.BUBBLE_CLEAR


def check_bubbles(work: WorkImage) -> CheckResult:
    if work.modality not in (None, "dermoscopic"):
        return CheckResult("bubbles", None, "pass", "not dermoscopic: no gel, no bubbles")
    return graded(
        "bubbles",
        count_bubbles(work),
        cfg.LIMITS["bubbles"],
        "no gel bubbles seen",
        "air bubbles in the gel ({score} seen): press gently and re-apply gel so none sit "
        "over the lesion",
        digits=None,
    )
