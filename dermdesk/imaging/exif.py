"""Device metadata from EXIF: make, model, lens, software, capture time, exposure.

Only what describes the *device and acquisition* is read; identifying tags
(GPS, serial numbers, owner names) are never copied into the library.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

_IFD0 = {0x010F: "device_make", 0x0110: "device_model", 0x0131: "device_software"}
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_DATETIME = 0x0132
_EXIF_NUMBERS = {0x829A: "exposure_time", 0x829D: "f_number", 0x920A: "focal_length"}
_ISO = 0x8827
_LENS_MAKE = 0xA433
_LENS_MODEL = 0xA434


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    return text[:200] or None


def _number(value: Any) -> float | None:
    if isinstance(value, tuple) and value:
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number == number and abs(number) < 1e9 else None  # drop NaN/absurd


def _timestamp(value: Any) -> str | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' -> ISO 'YYYY-MM-DDTHH:MM:SS' (local camera time)."""
    text = _text(value)
    if not text or len(text) < 19 or text.startswith("0000"):
        return None
    return f"{text[0:4]}-{text[5:7]}-{text[8:10]}T{text[11:19]}"


def device_metadata(img: Image.Image) -> dict[str, Any]:
    """Device fields for the image row; empty when the file has no (readable) EXIF."""
    try:
        exif = img.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # malformed EXIF blocks are common; they must not refuse the image
        return {}
    out: dict[str, Any] = {}
    for tag, name in _IFD0.items():
        if (text := _text(exif.get(tag))) is not None:
            out[name] = text
    for tag, name in _EXIF_NUMBERS.items():
        if (number := _number(sub.get(tag))) is not None:
            out[name] = number
    iso = _number(sub.get(_ISO))
    if iso is not None:
        out["iso"] = int(iso)
    lens = " ".join(t for t in (_text(sub.get(_LENS_MAKE)), _text(sub.get(_LENS_MODEL))) if t)
    if lens:
        out["device_lens"] = lens
    captured = _timestamp(sub.get(_DATETIME_ORIGINAL)) or _timestamp(exif.get(_DATETIME))
    if captured:
        out["captured_at"] = captured
    return out
