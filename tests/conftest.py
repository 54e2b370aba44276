"""Shared fixtures: the real images in ../shared/data, fresh libraries, synthetic files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# GUI tests render offscreen; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from dermdesk.library import Library
from tests.helpers import encode, skin_like

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DERMDESK_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real labelled images; tests that need them skip where they are absent."""
    if not (SHARED_DATA / "manifest.csv").is_file():
        pytest.skip(
            f"real dermatology images not found at {SHARED_DATA} "
            "(set DERMDESK_SHARED_DATA to the shared/data folder)"
        )
    return SHARED_DATA


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[Library]:
    library = Library.open(tmp_path / "library", actor="tester")
    yield library
    library.close()


@pytest.fixture
def jpeg_bytes() -> bytes:
    return encode(skin_like(), "JPEG", quality=90)
