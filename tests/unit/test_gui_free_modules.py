"""The non-GUI helpers the desktop app uses import no Qt and no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = (
    "dermdesk.library.browse",
    "dermdesk.library.edits",
    "dermdesk.imaging.camera",
    "dermdesk.exchange.capture",
)


def test_helpers_import_neither_qt_nor_torch() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'torch')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
