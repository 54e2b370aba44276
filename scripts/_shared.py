"""Helpers the evaluation and benchmark scripts share: the real images in ../shared/data."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dermdesk.exchange.importer import ImportReport
    from dermdesk.library import Library

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DERMDESK_SHARED_DATA", ROOT.parent / "shared" / "data"))


def manifest(extra: bool = False) -> list[dict[str, str]]:
    """Rows of manifest.csv (or manifest_extra.csv): file, dataset, label, modality, ..."""
    name = "manifest_extra.csv" if extra else "manifest.csv"
    path = SHARED_DATA / name
    if not path.is_file():
        raise SystemExit(f"{path} not found: set DERMDESK_SHARED_DATA to the shared/data folder")
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def pad_patient(file: str) -> int | None:
    """PAD-UFES-20 patient number from a file name like PAT_1006_53_716.jpg."""
    found = re.search(r"PAT_(\d+)_", file)
    return int(found.group(1)) if found else None


def pad_training_fold(file: str) -> bool:
    """PAD-UFES-20 images of even-numbered patients train the modality model; odd ones test it."""
    patient = pad_patient(file)
    return patient is not None and patient % 2 == 0


def import_datasets(lib: Library, data: Path, names: tuple[str, ...] | list[str]) -> ImportReport:
    """Import the dataset folders ``names`` of ``data`` into ``lib``, checks on."""
    from dermdesk.exchange.datasets import plan_path
    from dermdesk.exchange.importer import run_import

    items = []
    for name in names:
        items += plan_path(data / name).items
    return run_import(lib, items)
