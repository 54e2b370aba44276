"""The import rules of docs/design.md, checked on the real modules.

Nothing outside dermdesk.gui imports Qt; nothing outside dermdesk.ml (and job
workers) imports torch, timm or diffusers at import time; the inference
package needs neither.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import dermdesk

PACKAGE_DIR = Path(dermdesk.__file__).parent
HEAVY = ("torch", "timm", "diffusers", "torchvision")
QT = ("PySide6", "shiboken6")


def modules(exclude: tuple[str, ...]) -> list[str]:
    names = [m.name for m in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="dermdesk.")]
    return sorted(n for n in names if not n.startswith(exclude))


def loaded_after_import(names: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_packages_import_neither_qt_nor_torch() -> None:
    names = modules(exclude=("dermdesk.gui", "dermdesk.ml", "dermdesk.jobs"))
    assert "dermdesk.library.library" in names and "dermdesk.cli" in names
    loaded = loaded_after_import(names)
    assert not loaded & set(QT), f"Qt imported outside dermdesk.gui: {loaded & set(QT)}"
    assert not loaded & set(HEAVY), f"torch-side packages imported: {loaded & set(HEAVY)}"


@pytest.mark.parametrize("package", ["dermdesk.ml", "dermdesk.jobs"])
def test_training_packages_do_not_import_qt(package: str) -> None:
    names = [n for n in modules(exclude=()) if n == package or n.startswith(package + ".")]
    assert not loaded_after_import(names) & set(QT)


def test_gui_modules_do_not_import_torch_when_loaded() -> None:
    names = [n for n in modules(exclude=()) if n.startswith("dermdesk.gui")]
    loaded = loaded_after_import(names)
    assert "PySide6" in loaded
    assert not loaded & set(HEAVY), f"GUI start-up would import {loaded & set(HEAVY)}"


def test_no_qt_import_statements_outside_gui() -> None:
    offenders = []
    for path in PACKAGE_DIR.rglob("*.py"):
        rel = path.relative_to(PACKAGE_DIR)
        if rel.parts[0] == "gui":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import PySide6", "from PySide6", "import shiboken6")):
                offenders.append(f"{rel}: {stripped}")
    assert not offenders


def test_reading_commands_start_without_sqlite_utils_or_the_pixel_stack(tmp_path: Path) -> None:
    """sqlite-utils' import cost more than the rest of `dermdesk ls`; reads use plain
    sqlite3, and sqlite-utils loads only where asked for (Library.db)."""
    from dermdesk.library import Library

    Library.open(tmp_path / "lib").close()
    code = (
        "import sys\n"
        "from dermdesk.cli import main\n"
        f"main(['--library', {str(tmp_path / 'lib')!r}, 'ls'])\n"
        "print('LOADED', *sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split("LOADED", 1)[1].split())
    assert not loaded & {"sqlite_utils", "cv2", "onnxruntime", *HEAVY}, loaded
