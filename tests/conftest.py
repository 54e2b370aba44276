"""Shared fixtures: the real images in ../shared/data, fresh libraries, synthetic files."""

from __future__ import annotations

import os
import sys
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


# -- ending the test process -----------------------------------------------------------------
# After every test has passed, the interpreter's own shutdown sometimes aborted
# ("terminate called without an active exception", exit 134, about one full run in two
# here) while native libraries loaded side by side in this one process (Qt, torch, ONNX
# Runtime, OpenCV) tore down their thread pools in an unlucky order. It never happened in
# a test and never in the app, whose processes load far less; but it turned a green run
# red. So once pytest has reported, the process ends with pytest's own status without the
# native teardown. DERMDESK_TEST_NORMAL_EXIT=1 keeps the ordinary ending (to hunt the
# abort itself).


_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None or os.environ.get("DERMDESK_TEST_NORMAL_EXIT"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
