"""The reduced-resolution views that every quality check reads.

A file is decoded once, with JPEG DCT scaling where the checks do not need
every pixel (:func:`decode_for_checks`), and :class:`WorkImage` derives the
views the checks share, each computed at most once: a grey image for focus
measures (longest side :data:`~dermdesk.imaging.quality_config.SHARP_SIZE`),
a small colour image for colour, exposure, segmentation and skin tone
(:data:`~dermdesk.imaging.quality_config.WORK_SIZE`), its CIELAB values, the
dermoscope's field of view and the lesion mask. Pure numpy/OpenCV/Pillow.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from PIL import Image

from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.decode import (
    displayed_size,
    exif_orientation,
    load,
    open_image,
    to_rgb8,
    upright,
)

# IJG reference luminance quantisation table (ITU T.81 Annex K.1, quality 50), and the
# tables libjpeg derives from it for qualities 1-100: a file's own table is matched
# against them (exact for libjpeg-family encoders, a close estimate for others).
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)  # fmt: skip
_QUALITIES = np.arange(1, 101)
_SCALES = np.where(_QUALITIES < 50, 5000.0 / _QUALITIES, 200.0 - 2.0 * _QUALITIES)
_IJG_SUMS = np.clip(np.floor((_IJG_LUMA[None, :] * _SCALES[:, None] + 50) / 100), 1, 255).sum(1)


@dataclass(frozen=True)
class Decoded:
    """An upright 8-bit RGB decode and what the file says about its original pixels."""

    rgb: np.ndarray  # (H, W, 3) uint8, possibly DCT-reduced
    width: int  # original size as displayed (after EXIF orientation)
    height: int
    jpeg_quality: int | None = None  # estimated from the file's quantisation table
    reduction: int = 1  # DCT scale denominator: decoded = original / reduction

    @classmethod
    def from_array(cls, rgb: np.ndarray) -> Decoded:
        arr = as_rgb8(rgb)
        return cls(arr, arr.shape[1], arr.shape[0])


def as_rgb8(image: np.ndarray) -> np.ndarray:
    """Any array a caller might hand us (grey, RGBA, 16-bit, float) -> (H, W, 3) uint8."""
    arr = np.asarray(image)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        if arr.size and np.issubdtype(image.dtype, np.floating) and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        elif arr.size and np.issubdtype(image.dtype, np.integer) and arr.max() > 255:
            arr = arr / 257.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"not an image array: shape {np.asarray(image).shape}")
    return np.ascontiguousarray(arr)


def jpeg_quality(img: Image.Image) -> int | None:
    """Estimated JPEG quality (1-100) from the luminance quantisation table, if JPEG."""
    tables = getattr(img, "quantization", None)
    if not tables or img.format not in ("JPEG", "MPO"):
        return None
    luma = tables.get(0)
    if not luma or len(luma) != 64:
        return None
    return int(_QUALITIES[np.argmin(np.abs(_IJG_SUMS - float(sum(luma))))])


def decode_pil(img: Image.Image, *, reduce_to: int = cfg.DECODE_SIZE) -> Decoded:
    """Decode an opened Pillow image for the checks (DCT-scaled to >= ``reduce_to``)."""
    orientation = exif_orientation(img)
    width, height = displayed_size(img, orientation)
    quality = jpeg_quality(img)
    stored_width = img.size[0]
    load(img, reduce_to=reduce_to)
    reduction = max(1, round(stored_width / max(img.size[0], 1)))
    rgb = np.asarray(to_rgb8(upright(img)))
    return Decoded(rgb, width, height, quality, reduction)


def decode_for_checks(source: bytes | Path, *, reduce_to: int = cfg.DECODE_SIZE) -> Decoded:
    """Open and decode a file for the checks. Raises ImageRejected like any decode."""
    if isinstance(source, Path):
        source = source.read_bytes()
    return decode_pil(open_image(source), reduce_to=reduce_to)


def pct(values: np.ndarray, q: float | tuple[float, ...], axis: int | None = None) -> Any:
    """np.percentile on at most ~8k evenly strided samples (robust statistics of a
    quarter-megapixel image do not need every pixel; this is 5-20x faster)."""
    arr = np.asarray(values)
    n = arr.shape[0] if axis == 0 else arr.size
    step = max(1, n // _PCT_SAMPLES)
    sample = arr[::step] if axis == 0 else arr.reshape(-1)[::step]
    return linear_percentile(sample, q)


def masked_rows(arr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``arr[mask]`` for an (H, W, C) image and an (H, W) boolean mask, or (N, C) rows and
    an (N,) mask: the same rows in the same order, 3-6x faster than numpy's boolean
    indexing of a multi-channel array."""
    if mask.dtype != np.bool_ or mask.shape != arr.shape[:-1]:
        raise IndexError(f"mask {mask.dtype}{mask.shape} does not select rows of {arr.shape}")
    return np.take(arr.reshape(-1, arr.shape[-1]), np.flatnonzero(mask), axis=0)


_PERCENTILE_RANGE = "Percentiles must be in the range [0, 100]"  # numpy's words


def linear_percentile(sample: np.ndarray, q: float | tuple[float, ...]) -> Any:
    """``np.percentile(sample, q, axis=0)`` (method 'linear'), bit for bit, for a 1-D or
    2-D sample: the same partition and interpolation without numpy's generic set-up,
    which dominates on the few-thousand-value samples the checks read (2-4x faster).
    Samples with NaN and 2-D ``q`` are left to numpy."""
    n = sample.shape[0]
    if type(q) in (int, float):  # one percentile: numpy's weak promotion keeps float32
        quantile = cast(float, q) / 100
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(_PERCENTILE_RANGE)
        if n == 0:
            raise IndexError("percentile of an empty sample")  # as numpy does
        virtual = (n - 1) * quantile
        lo_i = hi_i = -1
        if virtual < n - 1:
            lo_i = math.floor(virtual)
            hi_i = lo_i + 1
        part = _partition(sample, {lo_i % n, hi_i % n, n - 1}, (lo_i, hi_i))
        if part is None:
            return np.percentile(sample, q, axis=0)
        return _lerp(part[lo_i], part[hi_i], virtual - lo_i)
    quantiles = np.true_divide(q, 100, out=...)
    if not np.all((quantiles >= 0) & (quantiles <= 1)):
        raise ValueError(_PERCENTILE_RANGE)
    if quantiles.ndim > 1:
        return np.percentile(sample, q, axis=0)
    if n == 0:
        raise IndexError("percentile of an empty sample")
    virtual_arr = np.asanyarray((n - 1) * quantiles)
    above = virtual_arr >= n - 1  # the top percentile is the last value
    prev_i = np.where(above, -1, np.floor(virtual_arr)).astype(np.intp)
    next_i = np.where(above, -1, prev_i + 1).astype(np.intp)
    picks = (*prev_i.ravel().tolist(), *next_i.ravel().tolist())
    part = _partition(sample, {k % n for k in (*picks, n - 1)}, picks)
    if part is None:
        return np.percentile(sample, q, axis=0)
    gamma = np.asarray(virtual_arr - prev_i, dtype=virtual_arr.dtype)  # float32 q stays so
    gamma = gamma.reshape(virtual_arr.shape + (1,) * (sample.ndim - 1))
    return _lerp(part[prev_i], part[next_i], gamma)


def _partition(sample: np.ndarray, kth: set[int], picks: tuple[int, ...]) -> np.ndarray | None:
    """``sample`` partitioned at ``kth`` (which holds the last index), or None when it
    holds NaN (numpy's NaN rules then apply).

    Order statistics are unique except for the sign of a zero: when a picked value is
    zero, partition again with numpy's own index set (it adds 0), so ties of +0.0 and
    -0.0 land where numpy puts them. Only then: the extra index costs a pass."""
    part = np.partition(sample, sorted(kth), axis=0)
    if part.dtype.kind != "f":
        return part
    if np.isnan(part[-1]).any():
        return None
    if any((part[k] == 0).any() for k in picks):
        part = np.partition(sample, sorted(kth | {0}), axis=0)
    return part


def _lerp(lo: Any, hi: Any, gamma: Any) -> Any:
    """numpy's quantile interpolation: from the lower value below the midpoint, from the
    upper one above it (so the ends are exact)."""
    diff = hi - lo
    result = np.add(lo, diff * gamma, out=...)
    np.subtract(hi, diff * (1 - gamma), out=result, where=gamma >= 0.5,
                casting="unsafe", dtype=type(result.dtype))  # fmt: skip
    return result[()] if result.ndim == 0 else result


_PCT_SAMPLES = 8192


def resize_long(arr: np.ndarray, long_side: int) -> np.ndarray:
    """Shrink (never enlarge) so the longest side is at most ``long_side`` (area filter)."""
    h, w = arr.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1.0:
        return arr
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB array (for tests and evaluation round-trips)."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


class WorkImage:
    """Shared, lazily computed views of one image for the checks."""

    def __init__(self, decoded: Decoded, modality: str | None = None) -> None:
        self.decoded = decoded
        self.modality = modality  # as recorded; None = unknown (detected when needed)

    @property
    def rgb(self) -> np.ndarray:
        return self.decoded.rgb

    @property
    def too_small(self) -> bool:
        h, w = self.rgb.shape[:2]
        return min(h, w) < cfg.MIN_CHECK_SIDE

    @cached_property
    def sharp_gray8(self) -> np.ndarray:
        """uint8 grey, longest side <= SHARP_SIZE (the ruler and bubble detectors read it)."""
        return resize_long(cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY), cfg.SHARP_SIZE)

    @cached_property
    def sharp_gray(self) -> np.ndarray:
        """float32 grey in [0, 255], longest side <= SHARP_SIZE."""
        return self.sharp_gray8.astype(np.float32)

    @cached_property
    def focus_bands(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`~dermdesk.imaging.checks.focus_bands` of the grey image: shared by the
        whole-image and lesion sharpness and the motion measure."""
        from dermdesk.imaging.checks import focus_bands

        return focus_bands(self.sharp_gray)

    @cached_property
    def small(self) -> np.ndarray:
        """uint8 RGB, longest side <= WORK_SIZE."""
        return resize_long(self.rgb, cfg.WORK_SIZE)

    @cached_property
    def chan_max(self) -> np.ndarray:
        """Per-pixel max over R, G, B of the small image (uint8)."""
        r, g, b = cv2.split(self.small)
        return cv2.max(cv2.max(r, g), b)

    @cached_property
    def chan_min(self) -> np.ndarray:
        r, g, b = cv2.split(self.small)
        return cv2.min(cv2.min(r, g), b)

    @cached_property
    def small_float(self) -> np.ndarray:
        return self.small.astype(np.float32) / 255.0

    @cached_property
    def lab(self) -> np.ndarray:
        """CIELAB (D65) of the small image: L* 0-100, a*, b* roughly -128..127."""
        return cv2.cvtColor(self.small_float, cv2.COLOR_RGB2Lab)

    @cached_property
    def luminance(self) -> np.ndarray:
        """Relative luminance Y in [0, 1] (linear light) of the small image."""
        lin = srgb8_to_linear(self.small)
        return lin @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

    @cached_property
    def gray_small(self) -> np.ndarray:
        return cv2.cvtColor(self.small, cv2.COLOR_RGB2GRAY)

    @cached_property
    def frame(self) -> tuple[tuple[int, int, int, int], float | None]:
        """(content box inside padding bars, vignette radius or None) of the small image."""
        from dermdesk.imaging.segment import frame_of

        return frame_of(self.gray_small)

    @cached_property
    def fov(self) -> np.ndarray:
        """Boolean mask of the usable field of view (dermoscope vignette excluded)."""
        from dermdesk.imaging.segment import fov_mask

        return fov_mask(self.gray_small.shape[:2], *self.frame)

    @cached_property
    def fov_core(self) -> np.ndarray:
        """The field of view minus the outer ring that skin colour is read from."""
        from dermdesk.imaging.segment import fov_core

        return fov_core(self.fov)

    @cached_property
    def hair(self) -> np.ndarray:
        """Boolean mask of hair-like thin dark lines in the field of view (small image)."""
        from dermdesk.imaging.segment import hair_mask

        return hair_mask(self.gray_small, self.fov)

    @cached_property
    def lesion(self) -> np.ndarray:
        """Boolean lesion mask at the small image's size (may be empty)."""
        from dermdesk.imaging.segment import segment_small

        return segment_small(self)


_SRGB_LUT = np.where(
    np.linspace(0, 1, 4096) <= 0.04045,
    np.linspace(0, 1, 4096) / 12.92,
    ((np.linspace(0, 1, 4096) + 0.055) / 1.055) ** 2.4,
).astype(np.float32)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (table lookup, fast)."""
    idx = np.clip(x * 4095.0 + 0.5, 0, 4095).astype(np.int32)
    return _SRGB_LUT[idx]


# The same conversion for 8-bit values (exactly srgb_to_linear(v / 255) as float32): a
# gather from a 256-entry table, without the float image, clip and index arrays.
_SRGB8_LUT = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)


def srgb8_to_linear(u8: np.ndarray) -> np.ndarray:
    """8-bit sRGB values -> linear light in [0, 1] (float32)."""
    return _SRGB8_LUT[u8]


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
