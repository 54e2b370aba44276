"""Where an image's modality came from is stored with it (issue 14): a detector's guess is
never shown or counted as a recorded modality, and an import says how many it could not
decide."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dermdesk import taxonomy
from dermdesk.cli import main
from dermdesk.exchange.datasets import plan_files, plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import ImageFilter, Library
from dermdesk.library.browse import dashboard_stats, tiles
from dermdesk.library.verify import verify

PHOTOS = (("pad_ufes_20", 4), ("ham10000", 3), ("ph2", 3))


@pytest.fixture
def photos(shared_data: Path, tmp_path: Path) -> Path:
    """A plain folder of real photos with no metadata: the importer must look at them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for dataset, n in PHOTOS:
        for item in plan_path(shared_data / dataset).items[:n]:
            shutil.copy(item.path, folder / f"{dataset}_{item.path.name}")
    return folder


def test_plain_photos_are_marked_detected_or_unsure_never_recorded(
    lib: Library, photos: Path
) -> None:
    report = run_import(lib, plan_files(sorted(photos.iterdir()), None).items)
    rows = lib.images()
    assert len(rows) == sum(n for _, n in PHOTOS) == len(report.added)
    assert {r["modality_method"] for r in rows} <= {"detected", "unsure"}
    unsure = {r["id"] for r in rows if r["modality_method"] == "unsure"}
    assert set(report.modality_unsure) == unsure
    if unsure:
        assert f"modality undecided for {len(unsure)}" in report.summary()
    # counted apart from recorded modalities, in the dashboard and by the filter
    stats = dashboard_stats(lib)
    assert stats.modality == {}
    assert sum(stats.modality_detected.values()) + sum(stats.modality_unsure.values()) == len(rows)
    assert lib.count(ImageFilter(modality_method=["recorded"])) == 0
    assert lib.count(ImageFilter(modality_method=["unsure"])) == len(unsure)
    # the gallery's tiles carry it, so the tooltip says it
    assert {t.modality_method for t in tiles(lib, [r["id"] for r in rows])} <= {
        "detected",
        "unsure",
    }


def test_dataset_metadata_and_a_persons_edit_are_recorded(
    lib: Library, shared_data: Path, photos: Path
) -> None:
    run_import(lib, plan_path(shared_data / "ph2").items[:2])
    assert {r["modality_method"] for r in lib.images()} == {"recorded"}
    run_import(lib, plan_files(sorted(photos.iterdir())[:2], None).items)
    guessed = lib.images(ImageFilter(modality_method=["detected", "unsure"]))
    assert len(guessed) == 2
    lib.update_image(guessed[0]["id"], modality="clinical")
    edited = lib.image(guessed[0]["id"])
    assert (edited["modality"], edited["modality_method"]) == ("clinical", "recorded")
    assert verify(lib).ok  # the audit log leads to the same provenance as the rows


def test_words_never_show_a_guess_as_recorded() -> None:
    assert taxonomy.modality_words("clinical", "recorded") == "clinical"
    assert taxonomy.modality_words("clinical", "detected") == "clinical (detected)"
    assert taxonomy.modality_words("dermoscopic", "unsure") == "unsure (looks dermoscopic)"


def test_cli_lists_counts_and_settles_the_undecided(
    tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = str(tmp_path / "cli_lib")
    assert main(["--library", library, "import", str(photos)]) == 0
    assert main(["--library", library, "stats"]) == 0
    out = capsys.readouterr().out
    assert "(detected) (" in out or "unsure (looks " in out
    assert main(["--library", library, "ls", "--modality-method", "detected,unsure"]) == 0
    listed = capsys.readouterr().out
    assert f"{sum(n for _, n in PHOTOS)} of {sum(n for _, n in PHOTOS)} images" in listed
    assert main(["--library", library, "ls", "--modality-method", "guessed"]) == 2
    assert "unknown modality method 'guessed'" in capsys.readouterr().err
    with Library.open(Path(library)) as lib:
        first = lib.images()[0]["id"]
    assert main(["--library", library, "edit", first[:10], "--modality", "dermoscopic"]) == 0
    assert (
        main(["--library", library, "edit", "--where", "modality-unsure", "--modality", "clinical"])
        == 0
    )
    with Library.open(Path(library)) as lib:
        assert lib.image(first)["modality_method"] == "recorded"
        assert lib.count(ImageFilter(modality_method=["unsure"])) == 0
    assert main(["--library", library, "edit", first[:10]]) == 2
    assert "nothing to change" in capsys.readouterr().err
    assert main(["--library", library, "edit", "nosuchid", "--modality", "clinical"]) == 2
