"""The quality checker's public API: run every check on an image, or the fast subset on
a live camera frame.

* :func:`run_checks` -> ``list[CheckResult]``: all pixel checks on a file, bytes,
  a Pillow image or an RGB array (``modality`` as recorded, or None to detect).
* :func:`assess` -> :class:`Assessment`: the same plus the detected modality, the
  skin-tone estimate (or refusal) and the perceptual hash, from one decode.
  Import and ``dermdesk check`` store this.
* :func:`live_check` -> ``list[CheckResult]``: the checks the capture dialog shows
  per frame (focus, motion, exposure, glare, colour, framing); 640x480 runs
  well over 25 frames/s on one core.

Every check is a small function returning a :class:`CheckResult` (score,
verdict pass/warn/fail, one-line reason); limits live in
:mod:`dermdesk.imaging.quality_config`, whose ``CHECKER_VERSION`` is stored
with each result. Nothing here raises for odd pixels (1x1, grey, 16-bit,
alpha, blank, not skin): each gets verdicts with reasons. A file that cannot
be decoded at all gives a single failing ``readable`` result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dermdesk.imaging import artefacts, checks, dedup
from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.check_names import CHECK_TITLES
from dermdesk.imaging.decode import ImageRejected
from dermdesk.imaging.findings import CheckResult, Verdict, worst
from dermdesk.imaging.modality import ModalityGuess, check_modality, detect_modality
from dermdesk.imaging.skintone import Refusal, SkinToneEstimate, check_skin_tone, estimate_from_work
from dermdesk.imaging.working import Decoded, WorkImage, decode_for_checks, decode_pil

log = logging.getLogger(__name__)

CHECKER_VERSION = cfg.CHECKER_VERSION
Source = np.ndarray | str | Path | bytes | Decoded | Image.Image

LIVE_CHECKS = (
    "sharpness",
    "motion_blur",
    "exposure",
    "glare",
    "colour_cast",
    "lesion_size",
    "lesion_cut",
    "lesion_centre",
)

PIXEL_CHECKS: tuple[tuple[str, Callable[[WorkImage], CheckResult]], ...] = (
    ("sharpness", checks.check_sharpness),
    ("lesion_sharpness", checks.check_lesion_sharpness),
    ("motion_blur", checks.check_motion_blur),
    ("exposure", checks.check_exposure),
    ("clipping", checks.check_clipping),
    ("contrast", checks.check_contrast),
    ("glare", checks.check_glare),
    ("colour_cast", checks.check_colour_cast),
    ("noise", checks.check_noise),
    ("compression", checks.check_compression),
    ("blockiness", checks.check_blockiness),
    ("resolution", checks.check_resolution),
    ("hair", artefacts.check_hair),
    ("ink", artefacts.check_ink),
    ("ruler", artefacts.check_ruler),
    ("bubbles", artefacts.check_bubbles),
)


@dataclass(frozen=True)
class Assessment:
    """Everything the checker found on one image, from one decode."""

    checks: list[CheckResult]
    modality: ModalityGuess
    skin_tone: SkinToneEstimate | Refusal
    phash: str | None
    checker_version: str = CHECKER_VERSION
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def verdict(self) -> Verdict:
        """The worst verdict of all checks."""
        return worst([c.verdict for c in self.checks])

    def by_name(self) -> dict[str, CheckResult]:
        return {c.check: c for c in self.checks}


def run_checks(source: Source, modality: str | None = None) -> list[CheckResult]:
    """All pixel checks on an image (see :func:`assess`)."""
    return assess(source, modality).checks


def assess(source: Source, modality: str | None = None, *, skin_tone: bool = True) -> Assessment:
    """Run every check on an image, detect its modality, estimate its skin tone, hash it.

    ``source`` is a path, file bytes, a Pillow image, a :class:`Decoded` or an
    RGB array (grey, RGBA, 16-bit and float arrays are converted). ``modality``
    is the recorded one ('clinical', 'dermoscopic', 'other') or None to use the
    detected one for modality-dependent limits.
    """
    try:
        decoded = _decode(source)
    except ImageRejected as exc:
        unreadable = CheckResult("readable", None, "fail", f"cannot read the image: {exc}")
        return Assessment(
            [unreadable], ModalityGuess("clinical", 0.5, 0.5), Refusal(str(exc)), None
        )
    return assess_decoded(decoded, modality, skin_tone=skin_tone)


def assess_decoded(
    decoded: Decoded, modality: str | None = None, *, skin_tone: bool = True
) -> Assessment:
    """:func:`assess` on an already decoded image (import reuses its thumbnail decode)."""
    work = WorkImage(decoded, modality)
    if work.too_small:
        return _too_small(work)
    guess = _safe_guess(work)
    if modality is None:
        work.modality = guess.modality
    results = [_safe(name, fn, work) for name, fn in PIXEL_CHECKS]
    results += _safe_many(
        ("lesion_size", "lesion_cut", "lesion_centre"), checks.check_framing, work
    )
    results.append(check_modality(work, guess))
    by_name = {r.check: r for r in results}
    tone: SkinToneEstimate | Refusal = Refusal("skin tone not estimated")
    if skin_tone:
        cast_ok = by_name["colour_cast"].verdict != "fail" and by_name["exposure"].verdict != "fail"
        try:
            tone = estimate_from_work(work, cast_ok=cast_ok)
        except Exception as exc:  # a bug must not lose the other findings
            log.exception("skin-tone estimate failed")
            tone = Refusal(f"estimate failed ({type(exc).__name__})")
        results.append(check_skin_tone(tone))
    order = list(CHECK_TITLES)
    results.sort(key=lambda r: order.index(r.check) if r.check in order else len(order))
    return Assessment(results, guess, tone, dedup.phash(work.small))


def live_check(frame: np.ndarray, *, bgr: bool = False) -> list[CheckResult]:
    """The capture dialog's per-frame checks (:data:`LIVE_CHECKS`) on one camera frame.

    ``frame`` is an (H, W, 3) uint8 array, RGB unless ``bgr`` (OpenCV order).
    """
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if bgr and frame.ndim == 3 else frame
    work = WorkImage(Decoded.from_array(rgb), "clinical")
    if work.too_small:
        # A frame too small to measure must block capture: keep its resolution failure.
        live = (*LIVE_CHECKS, "resolution")
        return [r for r in _too_small(work).checks if r.check in live]
    results = [_safe(name, fn, work) for name, fn in PIXEL_CHECKS if name in LIVE_CHECKS]
    results += _safe_many(
        ("lesion_size", "lesion_cut", "lesion_centre"), checks.check_framing, work
    )
    return results


# -- helpers ---------------------------------------------------------------------------------------


def _decode(source: Source) -> Decoded:
    if isinstance(source, Decoded):
        return source
    if isinstance(source, np.ndarray):
        try:
            return Decoded.from_array(source)
        except ValueError as exc:
            raise ImageRejected(str(exc)) from exc
    if isinstance(source, Image.Image):
        return decode_pil(source)
    if isinstance(source, str):
        source = Path(source)
    if isinstance(source, Path):
        try:
            source = source.read_bytes()
        except OSError as exc:
            raise ImageRejected(f"cannot read file ({exc.strerror or exc})") from exc
    return decode_for_checks(source)


def _safe(name: str, fn: Callable[[WorkImage], CheckResult], work: WorkImage) -> CheckResult:
    try:
        return fn(work)
    except Exception as exc:  # one broken check must not hide the others
        log.exception("quality check %s failed", name)
        return CheckResult(name, None, "warn", f"could not be checked ({type(exc).__name__})")


def _safe_many(
    names: tuple[str, ...], fn: Callable[[WorkImage], list[CheckResult]], work: WorkImage
) -> list[CheckResult]:
    try:
        return fn(work)
    except Exception as exc:
        log.exception("quality checks %s failed", ", ".join(names))
        return [
            CheckResult(n, None, "warn", f"could not be checked ({type(exc).__name__})")
            for n in names
        ]


def _safe_guess(work: WorkImage) -> ModalityGuess:
    try:
        return detect_modality(work)
    except Exception:
        log.exception("modality detection failed")
        return ModalityGuess(work.modality or "clinical", 0.5, 0.5)


def _too_small(work: WorkImage) -> Assessment:
    """A tiny image: resolution fails, nothing else can be measured."""
    h, w = work.rgb.shape[:2]
    note = f"not measured: the image is only {w}x{h} px"
    results = [checks.check_resolution(work)]
    results += [
        CheckResult(name, None, "warn", note)
        for name in CHECK_TITLES
        if name not in ("readable", "resolution", "duplicate", "skin_tone")
    ]
    tone = Refusal("image too small to measure skin tone")
    results.append(check_skin_tone(tone))
    return Assessment(results, ModalityGuess(work.modality or "clinical", 0.5, 0.5), tone, None)
