"""Safe decoding: every awkward file is decoded correctly or refused with a reason."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.imaging.decode import THUMB_SLACK, ImageRejected, decode_rgb, open_image
from dermdesk.library.records import StoredFile
from dermdesk.library.store import Store
from tests.helpers import encode, skin_like


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims 10 gigapixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    s.ensure_dirs()
    return s


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"patient: Jane Doe\nnot an image\n", "not an image"),
        (png_bomb(), "decompression bomb"),
        # 249.6 MP: under the bomb limit, but a PNG decodes whole (88 s, 3.5 GB once)
        (png_bomb(16_000, 15_600), r"249\.6 MP PNG: a PNG file is decoded whole"),
    ],
    ids=["zero-byte", "text-named-jpg", "png-bomb", "huge-png"],
)
def test_refused_with_reason(store: Store, data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected, match=reason):
        ingest_bytes(data, store)
    assert not list(store.iter_files("originals"))  # nothing stored for a refused file


def test_the_full_decode_budget_follows_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    from dermdesk.imaging import decode

    class Tight:
        available = 2 * 1024**3  # 2 GB free

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight())
    monkeypatch.setattr(decode.os, "cpu_count", lambda: 8)
    budget = decode.full_decode_budget()
    assert budget == 2 * 1024**3 // 8 // decode.BYTES_PER_FULL_PIXEL  # ~22 MP a worker
    with pytest.raises(ImageRejected, match="over the 22 MP this computer allows"):
        decode.open_image(png_bomb(6000, 4000))
    decode.open_image(encode(skin_like(64, 48), "PNG"))  # a small PNG is fine
    img = Image.new("RGB", (6000, 4000))
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    decode.open_image(buf.getvalue())  # a JPEG decodes reduced: not held to the budget


def test_truncated_jpeg_is_refused(store: Store) -> None:
    data = encode(skin_like(640, 480), "JPEG", quality=95)
    with pytest.raises(ImageRejected, match="truncated"):
        ingest_bytes(data[: len(data) // 2], store)


def test_cmyk_jpeg_is_converted_for_the_thumbnail(store: Store) -> None:
    img = Image.fromarray(skin_like()).convert("CMYK")
    out = store.root / "cmyk.jpg"
    img.save(out, "JPEG")
    stored = ingest_bytes(out.read_bytes(), store)
    assert isinstance(stored, StoredFile) and stored.mode == "CMYK"
    with Image.open(store.path(store.thumb_rel(stored.sha256))) as thumb:
        assert thumb.mode == "RGB"
        assert np.asarray(thumb).mean() > 100  # not an inverted/black thumbnail


def test_16bit_tiff_keeps_its_tones(store: Store) -> None:
    gray16 = np.tile(np.linspace(0, 65535, 200), (100, 1)).astype(np.uint16)
    path = store.root / "scan16.tif"
    Image.fromarray(gray16).save(path)  # mode I;16
    stored = ingest_bytes(path.read_bytes(), store)
    assert isinstance(stored, StoredFile) and stored.format == "TIFF"
    rgb = decode_rgb(path)
    assert rgb.dtype == np.uint8 and rgb[:, 0].mean() < 10 and rgb[:, -1].mean() > 245


def test_grayscale_and_alpha_images_import(store: Store) -> None:
    gray = encode(skin_like()[:, :, 0], "PNG")
    rgba = np.dstack([skin_like(), np.full((240, 320), 128, np.uint8)])
    for data in (
        gray,
        encode(rgba, "PNG"),
        encode(skin_like(), "WEBP"),
        encode(skin_like(), "BMP"),
    ):
        assert isinstance(ingest_bytes(data, store), StoredFile)


def test_exif_rotated_photo_is_stored_upright(store: Store) -> None:
    img = Image.fromarray(skin_like(400, 200))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a portrait phone photo
    path = store.root / "rotated.jpg"
    img.save(path, "JPEG", exif=exif)
    stored = ingest_bytes(path.read_bytes(), store)
    assert isinstance(stored, StoredFile)
    assert (stored.width, stored.height, stored.orientation) == (200, 400, 6)
    with Image.open(store.path(store.thumb_rel(stored.sha256))) as thumb:
        assert thumb.height > thumb.width
    # the original bytes are kept exactly as they were
    assert store.path(stored.file).read_bytes() == path.read_bytes()


def test_heic_from_a_phone_imports(store: Store) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    path = store.root / "phone.heic"
    try:
        pillow_heif.from_pillow(Image.fromarray(skin_like())).save(path, quality=80)
    except (RuntimeError, ValueError) as exc:  # wheel built without an encoder
        pytest.skip(f"pillow-heif cannot encode here: {exc}")
    stored = ingest_bytes(path.read_bytes(), store)
    assert isinstance(stored, StoredFile) and stored.format == "HEIF"
    assert stored.file.endswith(".heic")


def test_mislabelled_extension_is_stored_by_content(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(skin_like(), "PNG"))
    stored = ingest_bytes(path.read_bytes(), store)
    assert isinstance(stored, StoredFile) and stored.file.endswith(".png")


def test_unicode_and_spaces_in_paths(tmp_path: Path) -> None:
    folder = tmp_path / "Ärztin Müller" / "läsion 1"
    folder.mkdir(parents=True)
    path = folder / "naevus – rücken.jpg"
    path.write_bytes(encode(skin_like(), "JPEG"))
    assert decode_rgb(path).shape == (240, 320, 3)


def test_open_image_reads_only_the_header_of_a_bomb() -> None:
    with pytest.raises(ImageRejected, match="decompression bomb"):
        open_image(png_bomb())


@pytest.mark.parametrize("size", [(2048, 1536), (1536, 2048), (3000, 800), (300, 200)])
def test_thumbnails_keep_the_shape_and_a_gallery_sized_long_side(
    store: Store, size: tuple[int, int]
) -> None:
    stored = ingest_bytes(encode(skin_like(*size)), store)
    assert isinstance(stored, StoredFile)
    with Image.open(store.path(store.thumb_rel(stored.sha256))) as thumb:
        long_side = max(thumb.size)
        # at least 256 px (or the image's own size), at most 1.6x that
        assert min(256, max(size)) <= long_side <= 256 * THUMB_SLACK
        assert thumb.width / thumb.height == pytest.approx(size[0] / size[1], rel=0.03)


def test_a_small_jpeg_s_thumbnail_is_its_pixels_without_its_metadata(
    store: Store, shared_data: Path
) -> None:
    """Re-encoding a JPEG already thumbnail-sized would only lose quality: its thumbnail
    is its own byte stream minus the metadata segments, in a file of its own, so the
    thumbnail carries no GPS or camera serial and writing it cannot touch the original."""
    from dermdesk.imaging.jpeg_segments import metadata_segments

    def small(path: Path) -> bool:
        with Image.open(path) as img:
            return max(img.size) <= 400

    with_exif = next(
        p
        for p in sorted((shared_data / "fitzpatrick17k" / "images").glob("*.jpg"))
        if metadata_segments(p.read_bytes()) and small(p)
    )
    data = with_exif.read_bytes()
    stored = ingest_bytes(data, store)
    assert isinstance(stored, StoredFile) and stored.device  # the original keeps its EXIF
    thumb = store.path(store.thumb_rel(stored.sha256))
    assert thumb.stat().st_ino != store.path(stored.file).stat().st_ino
    assert metadata_segments(thumb.read_bytes()) == [] and b"Exif" not in thumb.read_bytes()
    with Image.open(thumb) as small, Image.open(with_exif) as big:
        assert np.array_equal(np.asarray(small), np.asarray(big))  # no re-encode
    thumb.write_bytes(b"overwritten")
    assert store.path(stored.file).read_bytes() == data


def test_a_small_truncated_jpeg_is_refused_too(store: Store) -> None:
    data = encode(skin_like(300, 300), "JPEG", quality=95)
    with pytest.raises(ImageRejected, match="truncated"):
        ingest_bytes(data[: len(data) // 2], store)
    assert not list(store.iter_files("thumbs"))


def test_a_small_rotated_jpeg_gets_an_upright_thumbnail(store: Store) -> None:
    img = Image.fromarray(skin_like(300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    stored = ingest_bytes(buf.getvalue(), store)
    assert isinstance(stored, StoredFile) and (stored.width, stored.height) == (200, 300)
    with Image.open(store.path(store.thumb_rel(stored.sha256))) as thumb:
        assert thumb.size == (200, 300)
