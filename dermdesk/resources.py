"""Locate files the app loads at run time (taxonomy, icons, style sheets).

They live in the top-level ``resources/`` folder of a checkout, are copied to
``dermdesk/resources/`` inside a wheel, and to ``resources/`` inside a
PyInstaller bundle; :func:`resource_path` finds them in all three.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dirs() -> list[Path]:
    """Candidate resource folders, most specific first."""
    dirs = []
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        dirs.append(Path(frozen_root) / "resources")
    dirs.append(_PACKAGE_DIR / "resources")  # installed wheel
    dirs.append(_PACKAGE_DIR.parent / "resources")  # checkout / editable install
    return dirs


def resource_path(name: str) -> Path:
    """Return the path of the bundled resource ``name``; raise FileNotFoundError if absent."""
    for folder in resource_dirs():
        candidate = folder / name
        if candidate.exists():
            return candidate
    searched = ", ".join(str(d) for d in resource_dirs())
    raise FileNotFoundError(f"resource {name!r} not found (looked in {searched})")
