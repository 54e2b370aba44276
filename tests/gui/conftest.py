"""GUI fixtures: a real library from ../shared/data, settings in a temp file, the main window."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import dermdesk.gui  # noqa: F401  (applies the PySide6 refcount guard before any Qt call)
from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import Library

# A few of each real dataset: clinical phone photos, dermoscopy, atlas photos with skin types.
SUBSET = (("pad_ufes_20", 40), ("ham10000", 24), ("fitzpatrick17k", 48))


@pytest.fixture(scope="session")
def template_library(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A library built once per session from real images; tests get copies."""
    root = tmp_path_factory.mktemp("template") / "library"
    items = []
    for name, count in SUBSET:
        items += plan_path(shared_data / name).items[:count]
    with Library.open(root, actor="fixture") as lib:
        report = run_import(lib, items, workers=2)
    assert not report.refused, report.refused
    return root


# A real fine-tuning run, as small as still makes a model with every report section.
TINY_FINETUNE = {
    "arch": "vit_test",
    "img_size": 32,
    "epochs": 4,
    "batch_size": 16,
    "micro_batch": 8,
    "threads": 1,
    "n_boot": 50,
    "min_class_images": 5,
    "augment": "none",
    "name": "clinic tiny",
}


@pytest.fixture(scope="session")
def trained_template(template_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template library plus one model a real fine-tuning job trained and registered
    (so the GUI shows the report shape a real run writes, not a made-up one)."""
    from dermdesk.jobs.runner import JobRunner

    root = tmp_path_factory.mktemp("trained") / "library"
    shutil.copytree(template_library, root)
    runner = JobRunner(root, actor="fixture")
    try:
        row = runner.wait(runner.submit("finetune", TINY_FINETUNE), timeout_s=600)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    return root


@pytest.fixture
def library_dir(template_library: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "library"
    shutil.copytree(template_library, dest)
    return dest


@pytest.fixture
def settings(tmp_path: Path, qapp: object) -> object:
    from PySide6.QtCore import QSettings

    from dermdesk.gui.settings import Settings

    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    return Settings(store)


@pytest.fixture
def lib(library_dir: Path) -> Iterator[Library]:
    library = Library.open(library_dir, actor="tester")
    yield library
    library.close()


@pytest.fixture
def window(qtbot: object, lib: Library, settings: object) -> Iterator[object]:
    from PySide6.QtWidgets import QApplication

    from dermdesk.gui.main_window import MainWindow
    from dermdesk.gui.theme import apply_theme

    # The app's palette is process-wide: a test that left the dark theme on must not
    # decide how the next window looks (its settings say light).
    app = QApplication.instance()
    if isinstance(app, QApplication):
        apply_theme(app, "light")
    w = MainWindow(lib, settings)  # type: ignore[arg-type]
    w.show()
    qtbot.waitExposed(w)  # type: ignore[attr-defined]
    w.activateWindow()
    qtbot.waitUntil(lambda: w.gallery_model.rowCount() > 0)  # type: ignore[attr-defined]
    yield w
    # Closing with a running job asks the user first; stop test jobs before closing.
    for job in w.jobs.model.jobs:  # type: ignore[attr-defined]
        if job.active:
            w.jobs_backend.cancel(job.id)  # type: ignore[attr-defined]
    qtbot.waitUntil(  # type: ignore[attr-defined]
        lambda: not any(j.status == "running" for j in w.jobs.model.jobs),  # type: ignore[attr-defined]
        timeout=120_000,
    )
    w.close()
