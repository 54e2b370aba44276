"""De-identified image bytes for exports (issue 16).

A JPEG keeps its compressed data bit for bit: its metadata segments (EXIF, XMP, IPTC,
comments, maker notes, embedded thumbnails) are dropped from the byte stream, and so is
whatever follows the image's end marker (phones append second images and trailers there).
When the original was stored rotated with an EXIF orientation tag, a minimal EXIF segment
holding only that tag is written back, so viewers still show it upright and nothing else
survives. Any other format is decoded, turned upright and written as PNG (lossless) with no
text chunks. Pixels never change in a JPEG; in a PNG they are the decoded pixels.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

from dermdesk.imaging import decode, jpeg_segments

# The modes PNG stores as they are; anything else (CMYK, YCbCr, float) becomes RGB(A).
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}
EOI_MARKER = b"\xff\xd9"
# What Pillow reports about a clean file: decoding parameters, the colour profile, and the
# orientation-only EXIF (checked tag by tag below).
_HARMLESS_INFO = {
    "jfif",
    "jfif_version",
    "jfif_unit",
    "jfif_density",
    "dpi",
    "exif",
    "icc_profile",
    "adobe",
    "adobe_transform",
    "progressive",
    "progression",
}
# Byte patterns of XMP, IPTC and PNG text chunks (long enough not to occur by chance).
_TELL_TALES = (
    b"http://ns.adobe.com/xap",
    b"<x:xmpmeta",
    b"Photoshop 3.0",
    b"tEXt",
    b"iTXt",
    b"zTXt",
)


def orientation_only_exif(orientation: int) -> bytes:
    """An APP1 segment whose EXIF holds one tag: Orientation (little-endian TIFF)."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)  # SHORT, count 1, value
    ifd = struct.pack("<H", 1) + entry + struct.pack("<I", 0)  # no next IFD
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _cut_after_image(data: bytes, scan_start: int) -> bytes:
    """The stream up to and including the first end-of-image marker after the first scan
    (entropy-coded data never holds FF D9: a data FF is always followed by 00)."""
    end = data.find(EOI_MARKER, scan_start)
    return data if end < 0 else data[: end + 2]


def jpeg_bytes(data: bytes, orientation: int | None) -> bytes:
    """The JPEG without metadata and trailers; orientation kept as its only tag."""
    stripped = jpeg_segments.strip_metadata(data)
    scan = stripped.find(b"\xff\xda")
    stripped = _cut_after_image(stripped, max(scan, 0))
    if orientation and orientation != 1:
        # After SOI and a JFIF APP0 when there is one (APP0 must come first for JFIF readers).
        at = 2
        if stripped[2:4] == b"\xff\xe0":
            at = 4 + int.from_bytes(stripped[4:6], "big")
        stripped = stripped[:at] + orientation_only_exif(orientation) + stripped[at:]
    return stripped


def png_bytes(data: bytes) -> bytes:
    """Any image the library accepts, decoded, upright, as a PNG without text chunks."""
    img = decode.upright(decode.load(decode.open_image(data)))
    if img.mode not in _PNG_MODES:
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    out = io.BytesIO()
    # No pnginfo, no exif, no icc: Pillow writes only what it is given. Level 6 is Pillow's
    # default; fixed here so exports of the same library are byte-identical.
    img.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def deidentified(data: bytes, fmt: str, orientation: int | None) -> tuple[bytes, str]:
    """(bytes, extension) of an original ready to leave the library."""
    if fmt in ("JPEG", "MPO"):
        try:
            return jpeg_bytes(data, orientation), "jpg"
        except jpeg_segments.NotAJpeg:
            pass  # a JPEG Pillow reads but this parser does not: re-encode it losslessly
    return png_bytes(data), "png"


def leftover_metadata(data: bytes) -> list[str]:
    """What identifying metadata an exported file still carries (empty when clean): JPEG
    segments, Pillow's info and EXIF beyond orientation, and tell-tale byte patterns."""
    found: list[str] = []
    if data[:2] == b"\xff\xd8":
        found += [s for s in jpeg_segments.metadata_segments(data) if s != "APP1 Exif"]
    img = Image.open(io.BytesIO(data))
    exif = dict(img.getexif())
    exif.pop(0x0112, None)
    if exif:
        found.append(f"EXIF tags {sorted(exif)}")
    found += [f"info {k}" for k in img.info if k not in _HARMLESS_INFO]
    for pattern in _TELL_TALES:
        if pattern in data:
            found.append(f"bytes {pattern.decode()}")
    return found
