"""`dermdesk import`, `check` and `show` as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def dermdesk(library: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DERMDESK_USER": "tester"}
    return subprocess.run(
        [sys.executable, "-m", "dermdesk", "--library", str(library), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_import_check_and_show_report_quality(shared_data: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(shared_data / "pad_ufes_20/images/PAT_858_1632_977.jpg", photos / "good.jpg")
    dark = np.asarray(Image.open(photos / "good.jpg").convert("RGB")) // 12
    Image.fromarray(dark.astype(np.uint8)).save(photos / "dark.png")
    library = tmp_path / "lib"

    imported = dermdesk(library, "import", str(photos), "--quiet")
    assert imported.returncode == 0, imported.stderr
    assert "2 added" in imported.stdout

    checked = dermdesk(library, "check", "--all", "--quiet")
    assert checked.returncode == 0, checked.stderr
    assert "checked 2 images" in checked.stdout
    exposure = next(line for line in checked.stdout.splitlines() if line.startswith("exposure"))
    assert exposure.split()[1:] == ["1", "0", "1"]  # pass, warn, fail

    nothing_left = dermdesk(library, "check", "--quiet")
    assert "checked 0 images" in nothing_left.stdout

    listing = dermdesk(library, "ls", "--json")
    dark_id = next(line for line in listing.stdout.splitlines() if "dark.png" in line)
    image_id = dark_id.split('"id": "')[1][:12]
    shown = dermdesk(library, "show", image_id)
    assert shown.returncode == 0, shown.stderr
    assert "quality (checker" in shown.stdout
    assert any(
        line.split()[:2] == ["fail", "exposure"] and "too dark" in line
        for line in shown.stdout.splitlines()
    )


def test_check_on_a_missing_library_is_one_line(tmp_path: Path) -> None:
    result = dermdesk(tmp_path / "none", "check")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no library here" in result.stderr
