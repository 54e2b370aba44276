"""The subgroups every evaluation reports on (numpy-free, torch-free).

Fitzpatrick group, device and meta-domain of an image row: used by the
splits (stratification), the metrics (per-group reports) and the promotion
rule, so all three group images the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FITZPATRICK_GROUPS = ("I-II", "III-IV", "V-VI", "unknown")


def fitzpatrick_group(value: int | None) -> str:
    """Fitzpatrick I-II / III-IV / V-VI / unknown."""
    if value is None:
        return "unknown"
    return ("I-II", "I-II", "III-IV", "III-IV", "V-VI", "V-VI")[int(value) - 1]


def device_name(row: Mapping[str, Any]) -> str:
    """Camera make and model as one name ('unknown' without EXIF)."""
    make = (row.get("device_make") or "").strip()
    model = (row.get("device_model") or "").strip()
    if not make and not model:
        return "unknown"
    return model if make and model.lower().startswith(make.lower()) else f"{make} {model}".strip()


def domain_name(modality: str, dataset: str | None) -> str:
    """Meta-domain: modality and acquisition source (the dataset, else 'local')."""
    return f"{modality}/{dataset or 'local'}"
