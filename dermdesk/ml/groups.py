"""The subgroups every evaluation reports on (numpy-free, torch-free).

Fitzpatrick group, device and meta-domain of an image row: used by the
splits (stratification), the metrics (per-group reports) and the promotion
rule, so all three group images the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dermdesk.library.query import device_name as library_device_name

FITZPATRICK_GROUPS = ("I-II", "III-IV", "V-VI", "unknown")


def fitzpatrick_group(value: int | None) -> str:
    """Fitzpatrick I-II / III-IV / V-VI / unknown."""
    if value is None:
        return "unknown"
    return ("I-II", "I-II", "III-IV", "III-IV", "V-VI", "V-VI")[int(value) - 1]


TONE_GROUPINGS = ("rated", "rated_or_estimated")


def fitzpatrick_of(row: Mapping[str, Any], tones: str = "rated") -> int | None:
    """The Fitzpatrick type an evaluation groups an image row by: its rating (a person's or
    a dataset's) by default; ``rated_or_estimated`` falls back to the automatic estimate,
    only when a user asks for it."""
    if tones not in TONE_GROUPINGS:
        raise ValueError(f"tone groups must be one of {', '.join(TONE_GROUPINGS)}")
    rated = row.get("fitzpatrick")
    if rated is not None or tones == "rated":
        return rated
    return row.get("fitzpatrick_est")


def device_name(row: Mapping[str, Any]) -> str:
    """The device group of an image row: the library's one device name ('unknown'
    without EXIF), so metrics, filters and stats name a device the same way."""
    return library_device_name(row.get("device_make"), row.get("device_model")) or "unknown"


def domain_name(modality: str, dataset: str | None) -> str:
    """Meta-domain: modality and acquisition source (the dataset, else 'local')."""
    return f"{modality}/{dataset or 'local'}"
