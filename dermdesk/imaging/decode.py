"""Safe image decoding: every file is either decoded or refused with one line.

Handles what clinics and public datasets actually contain: JPEG (including
phones' MPO), PNG, TIFF (16-bit, CMYK), BMP, WebP and HEIC; grayscale and
alpha; EXIF orientation. Refuses empty, truncated, non-image and
decompression-bomb files with a :class:`ImageRejected` whose message is the
reason. Pure Pillow/numpy: no Qt, no torch.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF from phones; optional at run time but a declared dependency
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif missing from a broken install
    pass

MAX_PIXELS = 250_000_000  # far above any camera (200 MP phones), far below a bomb
# JPEGs decode DCT-reduced (a 1/8 scale reads 1/64 of the pixels into memory); every
# other format decodes whole, ~12 bytes a pixel at peak (decode, RGB, working copies):
# a 250 MP PNG took 88 s and 3.5 GB. Those are held to a fixed cap and to what the
# machine can spare per import worker (REDUCED_FORMATS need neither).
REDUCED_FORMATS = ("JPEG", "MPO")
MAX_FULL_DECODE_PIXELS = 120_000_000  # medium-format camera files; scanners beyond
BYTES_PER_FULL_PIXEL = 12
FORMAT_EXT = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "TIFF": "tif",
    "BMP": "bmp",
    "WEBP": "webp",
    "HEIF": "heic",
}
IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".tif",
    ".tiff",
    ".bmp",
    ".webp",
    ".heic",
    ".heif",
}

# Pillow's own bomb check warns at MAX_IMAGE_PIXELS and refuses at twice that;
# we check sizes ourselves (below) and keep Pillow's hard stop just above ours.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageRejected(ValueError):
    """The file is not an image we can store; ``str(exc)`` says why in one line."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int  # as displayed, after EXIF orientation
    height: int
    mode: str
    orientation: int | None


def open_image(data: bytes | Path) -> Image.Image:
    """Open (header only) and check format and size. Raises ImageRejected."""
    if isinstance(data, Path):
        # Read up front: no file handle outlives a refused or half-decoded image.
        try:
            data = data.read_bytes()
        except OSError as exc:
            raise ImageRejected(f"cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    source = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError:
        raise ImageRejected("not an image (unrecognised file content)") from None
    except OSError as exc:
        raise ImageRejected(f"cannot read image header ({exc})") from exc
    if img.format not in FORMAT_EXT:
        raise ImageRejected(f"unsupported image format {img.format}")
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageRejected(
            f"refused as a possible decompression bomb: {w}x{h} = {w * h / 1e6:.0f} MP "
            f"(limit {MAX_PIXELS / 1e6:.0f} MP)"
        )
    if w < 1 or h < 1:
        raise ImageRejected(f"image has no pixels ({w}x{h})")
    if img.format not in REDUCED_FORMATS:
        _check_full_decode(img.format, w, h)
    return img


def full_decode_budget() -> int:
    """Pixels one non-JPEG image may have: the fixed cap, or what available memory
    spread over the cores (import workers) allows, whichever is smaller."""
    try:
        import psutil

        spare = psutil.virtual_memory().available // (os.cpu_count() or 1)
    except Exception:  # no psutil or no figure: the fixed cap alone
        return MAX_FULL_DECODE_PIXELS
    return int(min(MAX_FULL_DECODE_PIXELS, spare // BYTES_PER_FULL_PIXEL))


def _check_full_decode(fmt: str, w: int, h: int) -> None:
    budget = full_decode_budget()
    if w * h > budget:
        need = w * h * BYTES_PER_FULL_PIXEL / 1e9
        raise ImageRejected(
            f"{w}x{h} = {w * h / 1e6:.1f} MP {fmt}: a {fmt} file is decoded whole "
            f"(~{need:.1f} GB), over the {budget / 1e6:.0f} MP this computer allows; "
            "save it as a JPEG or a smaller copy"
        )


def exif_orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(0x0112)
    except Exception:  # malformed EXIF must not refuse an otherwise good image
        return None
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else None


def load(
    img: Image.Image, *, reduce_to: int | None = None, long_side_to: int | None = None
) -> Image.Image:
    """Decode pixels, optionally with JPEG DCT scaling: both sides at least
    ``reduce_to`` px, or the longer side at least ``long_side_to`` px (thumbnails:
    a 4:3 photo then decodes at half the linear scale ``reduce_to`` would need).

    DCT scaling still reads the whole entropy-coded stream, so truncated and
    corrupt files are detected as in a full decode, at a fraction of the cost.
    """
    if img.format in ("JPEG", "MPO"):
        if reduce_to:
            img.draft(None, (reduce_to, reduce_to))
        elif long_side_to:
            # draft() keeps both sides >= the request; ask only for the longer one.
            w, h = img.size
            img.draft(None, (long_side_to, 1) if w >= h else (1, long_side_to))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg:
            raise ImageRejected(f"truncated or damaged image ({msg})") from exc
        raise ImageRejected(f"cannot decode image ({msg})") from exc
    except (ValueError, SyntaxError, EOFError) as exc:  # Pillow plugins raise these too
        raise ImageRejected(f"cannot decode image ({exc})") from exc
    return img


def to_rgb8(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (16-bit scaled, CMYK converted, alpha on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "RGB;16" or (img.mode.startswith("RGB") and img.mode != "RGB"):
        return img.convert("RGB")
    return img.convert("RGB")


def decode_rgb(data: bytes | Path, *, reduce_to: int | None = None) -> np.ndarray:
    """Decode to an upright 8-bit RGB array (H, W, 3); optionally DCT-reduced."""
    img = load(open_image(data), reduce_to=reduce_to)
    img = upright(img)
    return np.asarray(to_rgb8(img))


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (phones store rotated pixels plus a tag)."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a broken orientation tag: keep pixels as stored
        return img


def displayed_size(img: Image.Image, orientation: int | None) -> tuple[int, int]:
    w, h = img.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


# How much larger than asked a thumbnail may be. Up to 1.6x no resize is needed:
# a bilinear resize costs as much as decoding a small JPEG, and every 400 px dataset
# image (Fitzpatrick17k's common size) would pay it on import. The gallery's largest
# tile (184 px, 368 on a 2x screen) still gets at least the 256 px it needs.
THUMB_SLACK = 1.6


def thumbnail_jpeg(img: Image.Image, size: int = 256, quality: int = 85) -> bytes:
    """An upright RGB JPEG thumbnail of a loaded image, longest side ``size`` to
    :data:`THUMB_SLACK` times that.

    An integer box reduction (fast) brings the image down while keeping at least
    ``size`` pixels; a bilinear resize follows only if it is still over THUMB_SLACK x the
    target. Thumbnails are made for every imported image, and a resize costs about
    as much as decoding a small JPEG; the gallery scales them for display anyway.
    """
    thumb = to_rgb8(img)
    factor = max(thumb.size) // size
    if factor > 1:
        thumb = thumb.reduce(factor)
    if max(thumb.size) > size * THUMB_SLACK:
        scale = size / max(thumb.size)
        new_size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
        thumb = thumb.resize(new_size, Image.Resampling.BILINEAR)
    thumb = upright(thumb)  # after shrinking: rotating a thumbnail is cheap
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=quality)
    return out.getvalue()


def is_own_thumbnail(img: Image.Image, orientation: int | None, size: int = 256) -> bool:
    """Whether an image's own file can serve as its thumbnail: an upright RGB JPEG
    whose longer side is already within :func:`thumbnail_jpeg`'s ``size`` to THUMB_SLACK x.

    Re-encoding those pixels would only lose quality and cost a JPEG encode per
    import; many clinical and dataset photos are this small (PAD-UFES-20's 300 px).
    """
    return (
        img.format == "JPEG"
        and img.mode == "RGB"
        and orientation in (None, 1)
        and max(img.size) <= size * THUMB_SLACK
    )


def thumbnail_jpeg_rgb(rgb: np.ndarray, size: int = 256, quality: int = 85) -> bytes:
    """The same thumbnail from an already upright 8-bit RGB array."""
    return thumbnail_jpeg(Image.fromarray(rgb), size, quality)
