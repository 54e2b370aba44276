"""Real images shared by the imaging tests, decoded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermdesk.imaging.working import Decoded, decode_for_checks

# Typical images (median sharpness of their dataset) that pass every pixel check as they are.
TYPICAL = {
    "pad_ufes_20": "pad_ufes_20/images/PAT_858_1632_977.jpg",
    "ham10000": "ham10000/images/ISIC_0030002.jpg",
    "fitzpatrick17k": "fitzpatrick17k/images/3bb47651dab6157dbca1fb1585de91f2.jpg",
}


@pytest.fixture(scope="session")
def typical(shared_data: Path) -> dict[str, Decoded]:
    return {name: decode_for_checks(shared_data / rel) for name, rel in TYPICAL.items()}
