"""Build the desktop app with PyInstaller and use the built binary like a user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("PyInstaller", reason="PyInstaller not installed (pip install -e .[dev])")
    work = tmp_path_factory.mktemp("pyinstaller")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            str(ROOT / "packaging" / "dermdesk.spec"),
            "--noconfirm",
            "--distpath",
            str(work / "dist"),
            "--workpath",
            str(work / "build"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "dist" / "dermdesk" / "dermdesk"


@pytest.mark.slow
def test_built_app_imports_verifies_and_opens_its_window(app: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DERMDESK_HOME": str(tmp_path / "lib"), "QT_QPA_PLATFORM": "offscreen"}
    photos = tmp_path / "photos"
    photos.mkdir()
    from tests.helpers import encode, skin_like

    for i in range(3):
        (photos / f"p{i}.jpg").write_bytes(encode(skin_like(seed=i), "JPEG"))
    version = subprocess.run([app, "--version"], capture_output=True, text=True, env=env)
    assert version.stdout.startswith("dermdesk ")
    out = subprocess.run(
        [app, "import", photos, "--quiet"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "3 added" in out.stdout, out.stderr
    verify = subprocess.run([app, "verify"], capture_output=True, text=True, env=env)
    assert "verify OK: 3 images" in verify.stdout
    gui = subprocess.run(
        [app],
        env={**env, "DERMDESK_QUIT_AFTER_MS": "800"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gui.returncode == 0, gui.stderr[-2000:]
    # the training stack stays out of the bundle
    assert not list(app.parent.glob("_internal/torch"))
    shutil.rmtree(tmp_path / "lib")
