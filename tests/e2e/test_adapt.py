"""`dermdesk train adapt` (issue 18): stage 1 and stage 2 on real dermoscopic and clinical
images register models with their parents and per-domain metrics; forgetting is measured;
requests adaptation cannot serve fail in one line before any worker starts."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.test_cli import run

pytestmark = [pytest.mark.ml, pytest.mark.slow]

TINY = [
    "--arch", "vit_test", "--img-size", "32", "--epochs", "2", "--batch-size", "16",
    "--micro-batch", "16", "--threads", "1", "--boot", "30", "--min-class-images", "5",
    "--augment", "light", "--classes", "MEL,NEV,BCC", "--no-quantize",
]  # fmt: skip


@pytest.fixture(scope="module")
def template(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 HAM10000 (dermoscopic) and 120 PAD-UFES-20 (clinical) images."""
    home = tmp_path_factory.mktemp("adapt") / "lib"
    folders = tmp_path_factory.mktemp("sources")
    for name, table, column, count in (
        ("pad_ufes_20", "metadata.csv", "img_id", 120),
        ("ham10000", "HAM10000_metadata.csv", "image_id", 90),
    ):
        source = shared_data / name
        dest = folders / name
        (dest / "images").mkdir(parents=True)
        meta = source / table
        lines = meta.read_text().splitlines()
        index = lines[0].split(",").index(column)
        kept = [lines[0]]
        for line in lines[1:]:
            stem = Path(line.split(",")[index]).stem
            found = next(iter(source.rglob(stem + ".*")), None)
            if found and found.suffix.lower() in (".jpg", ".png") and len(kept) <= count:
                shutil.copy(found, dest / "images" / found.name)
                kept.append(line)
        (dest / meta.name).write_text("\n".join(kept) + "\n")
    run(home, "import", folders / "pad_ufes_20", folders / "ham10000", "--quiet", "--no-checks")
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "lib"
    shutil.copytree(template, dest)
    return dest


def model_of(out: str) -> str:
    return re.search(r"model (M-\w+) registered", out).group(1)  # type: ignore[union-attr]


def record(home: Path, model_id: str) -> dict:
    db = sqlite3.connect(home / "library.sqlite")
    row = db.execute("SELECT parents, metrics FROM model WHERE id = ?", (model_id,)).fetchone()
    db.close()
    return {"parents": json.loads(row[0]), "metrics": json.loads(row[1])}


def test_both_stages_register_models_with_parents_and_per_domain_metrics(home: Path) -> None:
    first = run(home, "train", "adapt", "--stage", "1", *TINY, "--name", "stage one").stdout
    log = run(home, "jobs", "show", "1").stdout
    assert "stage 1: " in log and "gap transforms previewed in" in log
    preview = home / "jobs" / "1" / "transforms.png"
    from PIL import Image

    with Image.open(preview) as im:  # three dermoscopic and three clinical rows
        assert im.size[1] == 6 * 128
    stage1 = model_of(first)
    second = run(home, "train", "adapt", "--stage", "2", "--from", stage1, *TINY).stdout
    stage2 = model_of(second)
    log = run(home, "jobs", "show", "2").stdout
    assert f"stage 2 from {stage1}: tuning on" in log and "L2-SP x0.01" in log
    one, two = record(home, stage1), record(home, stage2)
    assert one["parents"] == [] and two["parents"] == [stage1]
    test = two["metrics"]["test"]
    assert {"modality", "domain", "meta_domain"} <= set(test)
    assert set(test["modality"]) == {"clinical", "dermoscopic"}
    adaptation = two["metrics"]["adaptation"]
    assert adaptation["stage"] == 2 and adaptation["start"] == stage1
    derm = adaptation["dermoscopic_test"]
    assert derm["n"] > 0 and derm["forgetting"] == pytest.approx(
        derm["start_balanced_accuracy"] - derm["balanced_accuracy"]
    )
    # stage 2 tunes on the start model's own split: the same test images
    db = sqlite3.connect(home / "library.sqlite")
    splits = [
        json.loads(t)["split"]["test"]
        for (t,) in db.execute("SELECT training_set FROM model ORDER BY created_at")
    ]
    db.close()
    assert splits[0] == splits[1]


def test_requests_adaptation_cannot_serve_fail_in_one_line(home: Path, tmp_path: Path) -> None:
    no_start = run(home, "train", "adapt", "--stage", "2", *TINY, check=False)
    assert no_start.returncode == 2 and "stage 2 tunes a stage-1 model" in no_start.stderr
    assert "--fallback" in no_start.stderr
    bad_stage = run(home, "train", "adapt", "--stage", "3", *TINY, check=False)
    assert bad_stage.returncode == 2 and "stage must be 1" in bad_stage.stderr
    # one modality only: refused, unless plain fine-tuning is asked for
    one = run(home, "train", "adapt", "--modality", "clinical", *TINY, check=False)
    assert one.returncode != 0 and "hold no dermoscopic image" in one.stdout + one.stderr
    plain = run(home, "train", "adapt", "--modality", "clinical", "--fallback", *TINY).stdout
    assert record(home, model_of(plain))["metrics"]["adaptation"]["plain_fallback"] is True
