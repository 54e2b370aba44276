"""The pixel quality checks: focus, motion, exposure, colour, noise, compression, size, framing.

Each ``check_*`` takes a :class:`~dermdesk.imaging.working.WorkImage` and
returns one :class:`~dermdesk.imaging.findings.CheckResult` with a score in
the check's own unit, a verdict from the limits in
:mod:`~dermdesk.imaging.quality_config`, and a one-line reason. The ``measure_*``
functions underneath are plain array -> number functions (the evaluation
script and the live preview call them directly).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.findings import CheckResult, Verdict, graded, severity
from dermdesk.imaging.working import WorkImage, pct, srgb8_to_linear, srgb_to_linear

# -- measures --------------------------------------------------------------------------------------


def focus_bands(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sigma-1 blur, fine band, middle band) of a float32 grey image.

    The fine band is what a 1-pixel blur removes, |gray - blur1|; the middle band
    is what blurring on to sigma 3 removes from that, |blur1 - blur3|.
    """
    g1 = cv2.GaussianBlur(gray, (0, 0), 1.0)
    g3 = cv2.GaussianBlur(g1, (0, 0), 2.83)  # sigma 1 then 2.83 = sigma 3 overall
    return g1, cv2.absdiff(gray, g1), cv2.absdiff(g1, g3)


def measure_focus(
    bands: tuple[np.ndarray, np.ndarray, np.ndarray], mask: np.ndarray | None = None
) -> tuple[float, float]:
    """(sharpness, detail): fine-band over middle-band contrast, x100, and the middle band,
    from :func:`focus_bands`, over the whole image or a mask.

    Fine detail relative to the coarser detail of the same scene makes the
    measure largely independent of how much texture the skin has: blur removes
    the fine band first.
    """
    _, fine_band, middle_band = bands
    m = None if mask is None else mask.astype(np.uint8)
    if m is not None and not m.any():
        return 0.0, 0.0
    fine = cv2.mean(fine_band, mask=m)[0]
    detail = cv2.mean(middle_band, mask=m)[0]
    return 100.0 * fine / (detail + cfg.FOCUS_EPS), detail


def measure_motion(gray: np.ndarray, blur1: np.ndarray) -> float:
    """Directional balance of fine detail, x100: 100 = same in every direction, low = smeared.

    Camera shake smears the image along one direction, removing fine detail
    across that direction only; the smallest over the largest eigenvalue of
    the fine band's gradient structure tensor measures it. ``blur1`` is the
    sigma-1 blur of ``gray`` (:func:`focus_bands`).
    """
    fine = gray - blur1
    gx = cv2.Sobel(fine, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(fine, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = float(np.mean(gx * gx)), float(np.mean(gy * gy)), float(np.mean(gx * gy))
    trace, det = jxx + jyy, jxx * jyy - jxy * jxy
    disc = math.sqrt(max(trace * trace / 4.0 - det, 0.0))
    hi, lo = trace / 2.0 + disc, trace / 2.0 - disc
    return 100.0 * lo / hi if hi > 1e-6 else 100.0


def measure_exposure(luminance: np.ndarray, chan_max: np.ndarray) -> tuple[float, float]:
    """(EV of the highlights, EV of the mid-tones), relative to a normal exposure.

    Highlights are the brightest channel of the brightest pixels (99.5th percentile of
    max(R, G, B), in linear light): a well-exposed photo of any skin reaches a normal
    level there (skin's red channel, a specular spot), an underexposed one does not.
    Mid-tones are the median linear luminance.
    """
    if chan_max.size == 0 or luminance.size == 0:
        return 0.0, 0.0
    top = float(pct(chan_max, cfg.EXPOSURE_HIGHLIGHT_PERCENTILE)) / 255.0
    top_linear = float(srgb_to_linear(np.array([top], np.float32))[0])
    mid = float(pct(luminance, 50))
    ev_hi = math.log2(max(top_linear, 1e-4) / cfg.EXPOSURE_HIGHLIGHT_TARGET)
    ev_mid = math.log2(max(mid, 1e-4) / cfg.EXPOSURE_MIDTONE_TARGET)
    return ev_hi, ev_mid


def measure_clipping(chan_max: np.ndarray) -> tuple[float, float]:
    """(% of pixels with a clipped highlight channel, % crushed to black), from the
    per-pixel maximum over R, G, B."""
    if chan_max.size == 0:
        return 0.0, 0.0
    high = np.count_nonzero(chan_max >= cfg.CLIP_HIGH) / chan_max.size
    low = np.count_nonzero(chan_max <= cfg.CLIP_LOW) / chan_max.size
    return 100.0 * high, 100.0 * low


def measure_contrast(lab_l: np.ndarray) -> float:
    """Spread of lightness: L* 98th minus 2nd percentile."""
    if lab_l.size == 0:
        return 0.0
    lo, hi = pct(lab_l, (2, 98))
    return float(hi - lo)


def measure_glare(chan_max: np.ndarray, chan_min: np.ndarray, fov: np.ndarray) -> float:
    """% of the field of view that is specular highlights: near-white, colourless spots.

    Large white areas are background (a sheet, a wall), not glare on the skin.
    """
    area = int(fov.sum())
    if area == 0:
        return 0.0
    spec = (chan_min >= cfg.GLARE_MIN_LEVEL) & (chan_max - chan_min <= cfg.GLARE_MAX_CHROMA)
    spec &= fov
    if not spec.any():
        return 0.0
    _, _, stats, _ = cv2.connectedComponentsWithStats(spec.astype(np.uint8), connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] <= cfg.GLARE_MAX_BLOB * area
    small[0] = False
    return 100.0 * float(stats[small, cv2.CC_STAT_AREA].sum()) / area


def cast_vector(work: WorkImage) -> np.ndarray:
    """Colour of a photo as 4 numbers: log(R/G), log(B/G) of the median pixel and of the
    brightest pixels, in linear light (a colour cast shifts both the same way).

    Read from up to 16k evenly strided pixels of the small image's field of view,
    converted by the 8-bit sRGB table (no float copy of the whole image)."""
    flat = work.small.reshape(-1, 3)
    index = np.flatnonzero(work.fov) if work.fov.any() else np.arange(len(flat))
    rgb8 = flat[index[:: max(1, len(index) // 16384)]]
    # One plane per channel: numpy reduces a length-3 row axis ~10x slower than it adds
    # or compares whole planes, and these give the same values bit for bit.
    red, green, blue = (srgb8_to_linear(rgb8[:, i]) for i in range(3))
    level = (red + green) + blue
    top = np.maximum(np.maximum(red, green), blue)
    ok = (level > 0.03) & (top < 0.97)
    if np.count_nonzero(ok) < 50:
        ok = np.ones(len(rgb8), bool)
    r, g, b = (pct(channel[ok], 50) + 1e-4 for channel in (red, green, blue))
    bright = ok & (top >= pct(top[ok], 97))
    rows = np.stack([red[bright], green[bright], blue[bright]], axis=1)
    r2, g2, b2 = rows.mean(axis=0) + 1e-4
    return np.array([math.log(r / g), math.log(b / g), math.log(r2 / g2), math.log(b2 / g2)])


def cast_distance(vector: np.ndarray, modality: str) -> float:
    """Distance of a colour vector from the usual colour of photos of this modality.

    Mahalanobis against real photos (``CAST_PRIOR``), so skin's natural redness and
    the ordinary spread between people are not a cast.
    """
    mean, inv_cov = cfg.CAST_PRIOR[modality if modality in cfg.CAST_PRIOR else "clinical"]
    d = vector - np.asarray(mean)
    return float(math.sqrt(max(float(d @ np.asarray(inv_cov) @ d), 0.0)))


def measure_noise(gray: np.ndarray) -> float:
    """Noise standard deviation (grey levels) in flat areas (Immerkaer's operator)."""
    h, w = gray.shape
    if h < 8 or w < 8:
        return 0.0
    resp = cv2.filter2D(gray, cv2.CV_32F, _IMMERKAER)[1:-1, 1:-1]
    grad = (np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1)))[
        1:-1, 1:-1
    ]
    sample = grad[::4, ::4].ravel()
    limit = float(
        np.partition(sample, len(sample) * cfg.NOISE_FLAT_PERCENTILE // 100)[
            len(sample) * cfg.NOISE_FLAT_PERCENTILE // 100
        ]
    )
    flat = (grad <= limit).astype(np.uint8)
    if not flat.any():
        return 0.0
    return float(math.sqrt(math.pi / 2.0) * cv2.mean(np.abs(resp), mask=flat)[0] / 6.0)


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def measure_blockiness(gray: np.ndarray, period: int = 8) -> float:
    """JPEG block artefacts: steps at the block grid over steps elsewhere (1.0 = none).

    Tries every grid offset, so it works on arrays whose grid alignment is unknown.
    """
    h, w = gray.shape
    if h < 4 * period or w < 4 * period:
        return 1.0
    dx = np.abs(np.diff(gray, axis=1)).mean(axis=0)
    dy = np.abs(np.diff(gray, axis=0)).mean(axis=1)
    ratios = []
    for steps in (dx, dy):
        n = len(steps) // period * period
        phase = steps[:n].reshape(-1, period).mean(axis=0)
        ratios.append(float(phase.max() / (np.median(phase) + cfg.BLOCK_EPS)))
    return float(np.mean(ratios))


# -- checks ----------------------------------------------------------------------------------------


def _result(
    check: str, score: float, verdict: Verdict, reason: str, **details: object
) -> CheckResult:
    return CheckResult(check, round(float(score), 3), verdict, reason, dict(details))


def check_sharpness(work: WorkImage) -> CheckResult:
    score, detail = measure_focus(work.focus_bands)
    if detail < cfg.FOCUS_MIN_DETAIL:
        return _result(
            "sharpness",
            score,
            "fail",
            "no detail at all (blank, or completely out of focus): retake the photo",
        )
    return graded(
        "sharpness",
        score,
        cfg.LIMITS["sharpness"],
        "sharp: sharpness {score:.0f}",
        "blurred: sharpness {score:.0f}, {needed}; hold the camera steady and let it focus",
    )


def check_lesion_sharpness(work: WorkImage) -> CheckResult:
    lesion = work.lesion
    if not lesion.any():
        return CheckResult(
            "lesion_sharpness", None, "pass", "no distinct lesion found; whole-image focus applies"
        )
    gray = work.sharp_gray
    mask = cv2.resize(lesion.astype(np.uint8), (gray.shape[1], gray.shape[0])) > 0
    mask = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    score, detail = measure_focus(work.focus_bands, mask)
    return graded(
        "lesion_sharpness",
        score,
        cfg.LIMITS["lesion_sharpness"],
        "lesion in focus: sharpness {score:.0f}",
        "lesion out of focus: sharpness {score:.0f}, {needed}; "
        "focus on the lesion (tap it on a phone screen)",
        verdict=None if detail >= cfg.FOCUS_MIN_DETAIL else "fail",
    )


def check_motion_blur(work: WorkImage) -> CheckResult:
    return graded(
        "motion_blur",
        measure_motion(work.sharp_gray, work.focus_bands[0]),
        cfg.LIMITS["motion_blur"],
        "no motion blur: balance {score:.0f}",
        "motion blur: detail smeared in one direction (balance {score:.0f}, {needed}); "
        "hold still or brace the camera",
    )


def check_exposure(work: WorkImage) -> CheckResult:
    """Too dark: the highlights do not reach a normal level. Too bright: the highlights
    are at the top and many pixels are burnt out (an index adding both)."""
    y = work.luminance[work.fov] if work.fov.any() else work.luminance.ravel()
    chan_max = _in_fov(work, work.chan_max)
    ev_hi, ev_mid = measure_exposure(y, chan_max)
    burnt, _ = measure_clipping(chan_max)
    over_index = ev_hi + cfg.OVEREXPOSURE_CLIP_WEIGHT * math.log1p(burnt)
    under, over = cfg.LIMITS["underexposure"], cfg.LIMITS["overexposure"]
    v_under, v_over = under.grade(ev_hi), over.grade(over_index)
    details = {"highlights_ev": ev_hi, "midtones_ev": ev_mid, "overexposure": over_index}
    if v_under != "pass" and severity(v_under) >= severity(v_over):
        return _result(
            "exposure",
            ev_hi,
            v_under,
            f"too dark: brightest parts {ev_hi:+.1f} EV from normal, {under.needed(v_under)} EV; "
            "add light or turn exposure up",
            **details,
        )
    if v_over != "pass":
        return _result(
            "exposure",
            over_index,
            v_over,
            f"too bright: overexposure {over_index:.1f} ({burnt:.0f}% of pixels burnt out, "
            f"mid-tones {ev_mid:+.1f} EV), {over.needed(v_over)}; reduce light or exposure",
            **details,
        )
    return _result("exposure", ev_mid, "pass", f"exposure normal ({ev_mid:+.1f} EV)", **details)


def check_clipping(work: WorkImage) -> CheckResult:
    high, low = measure_clipping(_in_fov(work, work.chan_max))
    return graded(
        "clipping",
        max(high, low),
        cfg.LIMITS["clipping"],
        "no clipping ({score:.1f}% of pixels)",
        "{what}: {score:.0f}% of pixels, {needed}%; even out the lighting",
        what="highlights burnt out" if high >= low else "shadows crushed to black",
        details={"high": high, "low": low},
    )


def check_contrast(work: WorkImage) -> CheckResult:
    l_star = work.lab[:, :, 0][work.fov] if work.fov.any() else work.lab[:, :, 0].ravel()
    return graded(
        "contrast",
        measure_contrast(l_star),
        cfg.LIMITS["contrast"],
        "contrast normal (lightness range {score:.0f})",
        "flat, washed-out image: lightness range {score:.0f}, {needed}; "
        "check for haze, fog on the lens or stray light",
    )


def check_glare(work: WorkImage) -> CheckResult:
    return graded(
        "glare",
        measure_glare(work.chan_max, work.chan_min, work.fov),
        cfg.LIMITS["glare"],
        "little glare ({score:.1f}% of pixels)",
        "glare: {score:.0f}% of the image is shiny white, {needed}%; "
        "tilt the camera or use a polarising filter",
    )


def check_colour_cast(work: WorkImage) -> CheckResult:
    modality = work.modality or "clinical"
    vector = cast_vector(work)
    score = cast_distance(vector, modality)
    lrg, lbg = float(vector[0]), float(vector[1])
    return graded(
        "colour_cast",
        score,
        cfg.LIMITS["colour_cast"],
        "colour balance normal (deviation {score:.1f})",
        "{tint} colour cast: deviation {score:.1f}, {needed}; "
        "set white balance to daylight / auto, avoid coloured light",
        tint=_tint_name(lrg, lbg, modality),
        details={"log_rg": lrg, "log_bg": lbg},
    )


def _tint_name(lrg: float, lbg: float, modality: str) -> str:
    mean, _ = cfg.CAST_PRIOR[modality if modality in cfg.CAST_PRIOR else "clinical"]
    dr, db = lrg - mean[0], lbg - mean[1]
    if abs(db) >= abs(dr):
        return "blue" if db > 0 else "yellow"
    return "red" if dr > 0 else "green"


def check_noise(work: WorkImage) -> CheckResult:
    gray = _centre_crop(cv2.cvtColor(work.rgb, cv2.COLOR_RGB2GRAY), cfg.NOISE_CROP).astype(
        np.float32
    )
    return graded(
        "noise",
        measure_noise(gray),
        cfg.LIMITS["noise"],
        "low noise (σ {score:.1f})",
        "grainy: noise σ {score:.1f}, {needed}; add light so the camera needs less gain",
    )


def check_compression(work: WorkImage) -> CheckResult:
    """JPEG quality the file was saved at (from its quantisation tables)."""
    quality = work.decoded.jpeg_quality
    if quality is None:
        return CheckResult("compression", None, "pass", "not a JPEG file: no compression loss")
    return graded(
        "compression",
        quality,
        cfg.LIMITS["compression"],
        "JPEG quality {score}",
        "heavily compressed: JPEG quality {score}, {needed}; "
        "export or send the original, not a messaging-app copy",
    )


def check_blockiness(work: WorkImage) -> CheckResult:
    """8x8 block artefacts in the pixels (catches re-saved and screenshot copies too)."""
    period = 8 // work.decoded.reduction
    if period < 4:
        return CheckResult(
            "blockiness", None, "pass", "large JPEG read at reduced scale; see compression"
        )
    gray = _centre_crop(cv2.cvtColor(work.rgb, cv2.COLOR_RGB2GRAY), cfg.BLOCK_CROP)
    return graded(
        "blockiness",
        measure_blockiness(gray.astype(np.float32), period),
        cfg.LIMITS["blockiness"],
        "no block artefacts ({score:.2f})",
        "blocky compression artefacts: {score:.2f}, {needed}; "
        "use the original photo, not a compressed copy",
    )


def check_resolution(work: WorkImage) -> CheckResult:
    """Too few pixels for what the image must show (the rule per modality is in
    docs/design.md). Any image fails below its modality's ``fail`` short side. A
    dermoscope's magnification is fixed, so a dermoscopic (or other) image's detail
    follows from its frame: it warns below ``warn``. A clinical photo's detail is the
    lesion's: it warns when the lesion spans fewer than ``LESION_SPAN_WARN`` pixels
    across (equivalent diameter, in the original's pixels), and only when no lesion is
    found does the frame's short side decide."""
    d = work.decoded
    modality = work.modality or "clinical"
    limits = cfg.RESOLUTION_LIMITS.get(modality, cfg.RESOLUTION_LIMITS["clinical"])
    short, size = min(d.width, d.height), f"{d.width}x{d.height} px"
    span = lesion_span(work) if modality == "clinical" and short >= limits.fail else None
    if span is None:
        return graded(
            "resolution",
            short,
            limits,
            "resolution {size}",
            "low resolution for a {modality} image{why}: {size}, short side {needed} px; "
            "use the camera's full resolution",
            size=size,
            modality=modality,
            why=" (no lesion found to measure)" if modality == "clinical" else "",
        )
    return graded(
        "resolution",
        short,
        limits,
        "resolution {size}; the lesion spans {span:.0f} px",
        "low resolution on the lesion: it spans {span:.0f} px across ({size}), needs "
        "≥ {needed_span} px to show its border and colours; move closer or use the camera's "
        "full resolution",
        verdict="warn" if span < cfg.LESION_SPAN_WARN else "pass",
        details={"lesion_px": round(span, 1)},
        size=size,
        span=span,
        needed_span=cfg.LESION_SPAN_WARN,
    )


def lesion_span(work: WorkImage) -> float | None:
    """The lesion's equivalent diameter in the original's pixels (None: no lesion found)."""
    mask = work.lesion
    area = int(mask.sum())
    if not area:
        return None
    d = work.decoded
    scale = max(d.width, d.height) / max(mask.shape[:2])
    return 2.0 * float(np.sqrt(area / np.pi)) * scale


def check_framing(work: WorkImage) -> list[CheckResult]:
    """Lesion too small in frame, cut by the border, off-centre (warnings only)."""
    lesion, fov = work.lesion, work.fov
    if not lesion.any():
        none = "no distinct lesion found (a rash, or no lesion in view?)"
        return [
            CheckResult("lesion_size", None, "warn", none + ": centre the lesion and move closer"),
            CheckResult("lesion_cut", None, "pass", "no distinct lesion found"),
            CheckResult("lesion_centre", None, "pass", "no distinct lesion found"),
        ]
    return [_lesion_size(lesion, fov), _lesion_cut(lesion, fov), _lesion_centre(lesion)]


def _lesion_size(lesion: np.ndarray, fov: np.ndarray) -> CheckResult:
    return graded(
        "lesion_size",
        100.0 * lesion.sum() / max(int(fov.sum()), 1),
        cfg.LIMITS["lesion_size"],
        "lesion fills {score:.0f}% of the frame",
        "lesion small in the frame: {score:.1f}% of the image, {needed}%; move closer or zoom in",
    )


def _lesion_cut(lesion: np.ndarray, fov: np.ndarray) -> CheckResult:
    m = lesion.astype(np.uint8)
    edge = m - cv2.erode(
        m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    boundary = edge > 0
    near_border = ~_eroded_mask(fov, 2)
    return graded(
        "lesion_cut",
        100.0 * (boundary & near_border).sum() / max(int(boundary.sum()), 1),
        cfg.LIMITS["lesion_cut"],
        "whole lesion in view",
        "lesion cut by the image border: {score:.0f}% of its outline, {needed}%; "
        "step back or re-centre so the whole lesion and some skin around it show",
    )


def _lesion_centre(lesion: np.ndarray) -> CheckResult:
    h, w = lesion.shape
    ys, xs = np.nonzero(lesion)
    off = math.hypot((xs.mean() - (w - 1) / 2) / w, (ys.mean() - (h - 1) / 2) / h)
    return graded(
        "lesion_centre",
        100.0 * off / math.hypot(0.5, 0.5),
        cfg.LIMITS["lesion_centre"],
        "lesion centred",
        "lesion off-centre: {score:.0f}% of the way to a corner, {needed}%; "
        "put the lesion in the middle",
    )


def _in_fov(work: WorkImage, arr: np.ndarray) -> np.ndarray:
    """Values of a small-image array inside the field of view (all when it is empty)."""
    return arr[work.fov] if work.fov.any() else arr.ravel()


def _eroded_mask(mask: np.ndarray, size: int) -> np.ndarray:
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    k = np.ones((2 * size + 1, 2 * size + 1), np.uint8)
    return cv2.erode(padded, k)[1:-1, 1:-1].astype(bool)


def _centre_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """Central crop of at most ``size`` x ``size``, starting on the 8-pixel grid."""
    h, w = arr.shape[:2]
    top = max(0, (h - size) // 2) // 8 * 8
    left = max(0, (w - size) // 2) // 8 * 8
    return arr[top : top + size, left : left + size]
