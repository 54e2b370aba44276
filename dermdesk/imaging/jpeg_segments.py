"""JPEG metadata removed from the byte stream itself, without decoding or re-encoding.

A JPEG file is a marker stream: SOI, then segments (``FF xx`` + 2-byte length + data)
up to the start of scan (SOS), then the entropy-coded image data to EOI. Metadata
lives in application segments (APP1 EXIF and XMP with GPS, camera serial numbers and
owner names; APP13 IPTC/Photoshop; ...) and comments (COM). Dropping those segments
keeps every pixel bit-identical. Thumbnails and exports use this (issue 13, issue 16).
"""

from __future__ import annotations

SOI, SOS, EOI = 0xD8, 0xDA, 0xD9
APP0, APP2, APP14, COM = 0xE0, 0xE2, 0xEE, 0xFE
# Markers without a length: TEM and the restart markers (never before SOS in practice).
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


class NotAJpeg(ValueError):
    """The bytes are not a JPEG marker stream this module can rewrite."""


def segments(data: bytes) -> list[tuple[int, int, int, int]]:
    """(marker, start, payload start, end) of every segment before the image data, in
    order; the SOS segment is last and its ``end`` is the end of the file."""
    if data[:2] != b"\xff\xd8":
        raise NotAJpeg("no JPEG start-of-image marker")
    out: list[tuple[int, int, int, int]] = [(SOI, 0, 2, 2)]
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise NotAJpeg(f"expected a marker at byte {pos}")
        start = pos
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= len(data):
            raise NotAJpeg("file ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            out.append((marker, start, pos, pos))
            continue
        if marker == EOI:
            raise NotAJpeg("end of image before any image data")
        if pos + 2 > len(data):
            raise NotAJpeg("file ends inside a segment length")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > len(data):
            raise NotAJpeg(f"segment at byte {start} runs past the end of the file")
        if marker == SOS:
            out.append((marker, start, pos + 2, len(data)))
            return out
        out.append((marker, start, pos + 2, pos + length))
        pos += length
    raise NotAJpeg("no image data (no start-of-scan marker)")


def is_metadata(marker: int, payload: bytes) -> bool:
    """Application segments and comments, except what decoding needs: the JFIF header
    (APP0 ``JFIF``), the colour profile (APP2 ``ICC_PROFILE``) and Adobe's colour
    transform flag (APP14 ``Adobe``, which says whether the data are YCbCr)."""
    if marker == COM:
        return True
    if not APP0 <= marker <= 0xEF:
        return False
    keep = {APP0: (b"JFIF\0", b"JFXX\0"), APP2: (b"ICC_PROFILE\0",), APP14: (b"Adobe",)}
    return not payload.startswith(keep.get(marker, (b"\x00never",)))


def strip_metadata(data: bytes) -> bytes:
    """The same JPEG without its metadata segments; every pixel unchanged."""
    kept = [
        data[start:end]
        for marker, start, body, end in segments(data)
        if not is_metadata(marker, data[body:end])
    ]
    return b"".join(kept)


def metadata_segments(data: bytes) -> list[str]:
    """Names of the metadata segments a JPEG still carries (e.g. ``APP1 Exif``)."""
    found = []
    for marker, _, body, end in segments(data):
        payload = data[body:end]
        if is_metadata(marker, payload):
            name = "COM" if marker == COM else f"APP{marker - APP0}"
            tag = payload[:12].split(b"\0")[0].decode("latin-1", "replace")
            found.append(f"{name} {tag}".strip())
    return found
