"""Visual meta-domains (issue 18) on real images: assigned from the checker's measurements,
deterministic for a seed, stored with their version, filtered and counted, and reported
by every evaluation."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from dermdesk.library import ImageFilter, Library
from dermdesk.library.domain_store import domain_items, save_assignment
from dermdesk.ml.meta_domains import assign_domains, feature_matrix, kmeans, silhouette
from tests.e2e.test_cli import run
from tests.helpers import copy_pad_subset


@pytest.fixture(scope="module")
def template(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PH2 (dermoscopic, 200) and 80 PAD-UFES-20 phone photos (clinical), checked."""
    home = tmp_path_factory.mktemp("domains") / "lib"
    pad = tmp_path_factory.mktemp("pad") / "pad_ufes_20"
    copy_pad_subset(shared_data, pad, 80)
    run(home, "import", shared_data / "ph2", pad, "--quiet")
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "lib"
    shutil.copytree(template, dest)
    return dest


def test_domains_are_assigned_stored_filtered_and_counted(home: Path) -> None:
    out = run(home, "domains", "assign", "--seed", "0").stdout
    assert "280 images in" in out and "by silhouette (k=2:" in out
    db = sqlite3.connect(home / "library.sqlite")
    rows = db.execute("SELECT modality, meta_domain, meta_domain_version FROM image").fetchall()
    # every domain refines its image's modality, and says which method and seed made it
    assert all(domain.split("-")[0] == modality for modality, domain, _ in rows)
    assert {version for _, _, version in rows} == {"look-kmeans 1 seed 0"}
    counts: dict[str, int] = {}
    for _, domain, _ in rows:
        counts[domain] = counts.get(domain, 0) + 1
    described = dict(db.execute("SELECT name, n FROM meta_domain").fetchall())
    assert described == counts
    some = sorted(counts)[0]
    listed = run(home, "ls", "--domain", some, "--limit", "1000").stdout.strip().splitlines()
    assert listed[-1] == f"{counts[some]} of {counts[some]} images"
    stats = run(home, "stats").stdout
    assert "visual meta-domain (estimated" in stats and some in stats
    # the same images and seed give the same domains; nothing changes on a second run
    again = run(home, "domains", "assign", "--seed", "0").stdout
    assert "0 changed" in again
    audit = db.execute("SELECT count(*) FROM audit WHERE action = 'image.meta_domain'").fetchone()
    assert audit[0] == 280
    assert "verify OK" in run(home, "verify", "--quick").stdout
    db.close()


def test_the_clustering_is_deterministic_and_its_criterion_is_the_silhouette(
    home: Path,
) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    with Library.open(home, readonly=True) as lib:
        items = domain_items(lib)
    a = assign_domains(items, seed=3)
    b = assign_domains(list(reversed(items)), seed=3)
    assert a.by_image == b.by_image and a.version == "look-kmeans 1 seed 3"
    derm = [i for i in items if i.modality == "dermoscopic"]
    x, _ = feature_matrix(derm)
    labels = kmeans(x, 3, seed=0)[0]
    assert silhouette(x, labels) == pytest.approx(
        sklearn_metrics.silhouette_score(x, labels), abs=1e-9
    )
    forced = assign_domains(items, seed=0, k=1)
    assert sorted({d.name for d in forced.domains}) == ["clinical", "dermoscopic"]


def test_a_library_without_checks_or_with_one_modality_gets_a_clear_answer(
    shared_data: Path, tmp_path: Path, home: Path
) -> None:
    unchecked = tmp_path / "unchecked"
    run(unchecked, "import", shared_data / "ph2", "--quiet", "--no-checks")
    proc = run(unchecked, "domains", "assign", check=False)
    assert proc.returncode == 2 and "run `dermdesk check` first" in proc.stderr
    db = sqlite3.connect(unchecked / "library.sqlite")
    assert db.execute("SELECT count(*) FROM image WHERE meta_domain IS NOT NULL").fetchone() == (0,)
    db.close()
    bad = run(home, "domains", "assign", "--k", "0", check=False)
    assert bad.returncode == 2 and "--k must be at least 1" in bad.stderr
    # one modality only: its images still get domains (of that modality)
    with Library.open(home) as lib:
        only = [i for i in domain_items(lib) if i.modality == "dermoscopic"]
        assignment = assign_domains(only, seed=0)
        assert save_assignment(lib, assignment) == len(only)
        assert lib.count(ImageFilter(meta_domain=["unassigned"])) == 80  # the clinical photos


def test_evaluations_report_per_meta_domain(home: Path) -> None:
    from dermdesk.inference.evaluate_job import group_labels
    from dermdesk.ml.data import collect_samples, subgroups

    run(home, "domains", "assign")
    with Library.open(home, readonly=True) as lib:
        rows = lib.images(ImageFilter(labelled=True))
        samples = collect_samples(lib, ImageFilter(labelled=True), ["MEL", "NEV"])
    assert set(group_labels(rows, "rated")["meta_domain"]) == {r["meta_domain"] for r in rows}
    groups = subgroups(samples)["meta_domain"]
    assert "unassigned" not in groups and len(set(groups)) >= 2
    assert np.all([g.split("-")[0] in ("clinical", "dermoscopic") for g in groups])


def test_a_backbones_features_can_make_the_domains(home: Path) -> None:
    """The issue's first choice: a registered MAE backbone's features, clustered per
    modality; the version names the backbone; anything else is refused in one line."""
    out = run(
        home, "train", "pretrain", "--arch", "vit_test", "--img-size", "32", "--epochs", "1",
        "--batch-size", "16", "--micro-batch", "16", "--threads", "1", "--max-images", "64",
        "--name", "tiny backbone",
    ).stdout  # fmt: skip
    backbone = re.search(r"(M-\w+)", out.split("registered")[0].splitlines()[-1])
    assert backbone, out
    assigned = run(home, "domains", "assign", "--backbone", "tiny backbone").stdout
    assert f"backbone-kmeans 1 ({backbone.group(1)}) seed 0" in assigned
    db = sqlite3.connect(home / "library.sqlite")
    rows = db.execute("SELECT modality, meta_domain FROM image").fetchall()
    db.close()
    assert all(domain.split("-")[0] == modality for modality, domain in rows)
    missing = run(home, "domains", "assign", "--backbone", "no such model", check=False)
    assert missing.returncode == 2 and "\n" not in missing.stderr.strip()


def test_a_backbone_finds_near_copies_that_then_stay_together(home: Path, tmp_path: Path) -> None:
    """Issue 16: near-duplicates by embedding cosine when a backbone exists; listed with
    the perceptual-hash pairs, and splits keep them on one side."""
    from PIL import Image

    db = sqlite3.connect(home / "library.sqlite")
    file, original = db.execute(
        "SELECT file, id FROM image WHERE dataset = 'ph2' ORDER BY id LIMIT 1"
    ).fetchone()
    db.close()
    copy = tmp_path / "copy" / "resent.jpg"
    copy.parent.mkdir()
    with Image.open(home / file) as im:  # the same photo, re-sent smaller and recompressed
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(copy, quality=60)
    run(home, "import", copy.parent, "--quiet")
    run(
        home, "train", "pretrain", "--arch", "vit_test", "--img-size", "32", "--epochs", "1",
        "--batch-size", "16", "--micro-batch", "16", "--threads", "1", "--max-images", "64",
        "--name", "tiny backbone",
    )  # fmt: skip
    out = run(home, "curate", "embed-duplicates", "--backbone", "tiny backbone").stdout
    assert re.search(r"\d+ pairs of 281 images at cosine >= 0.95", out), out
    listed = run(home, "curate", "duplicates", "--limit", "1000").stdout
    row = next(line for line in listed.splitlines() if original[:12] in line)
    assert re.search(r"\b0\.9\d\d\b|\b1\.000\b", row), row  # the copy's cosine is shown
    split = run(home, "curate", "split", "--name", "v1", "--fractions", "60/20/20").stdout
    assert "v1" in split
    db = sqlite3.connect(home / "library.sqlite")
    parts = dict(db.execute("SELECT image_id, part FROM dataset_split_image").fetchall())
    pairs = db.execute("SELECT image_a, image_b FROM embedding_pair").fetchall()
    db.close()
    assert pairs and all(parts[a] == parts[b] for a, b in pairs if a in parts and b in parts)
    bad = run(home, "curate", "embed-duplicates", "--backbone", "tiny backbone",
              "--min-cosine", "2", check=False)  # fmt: skip
    assert bad.returncode == 2 and "--min-cosine must be in (0, 1]" in bad.stderr


def test_an_export_carries_the_domains_as_estimates(home: Path, tmp_path: Path) -> None:
    import csv

    run(home, "domains", "assign")
    run(home, "export", "--format", "isic", tmp_path / "out")
    with open(tmp_path / "out" / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    db = sqlite3.connect(home / "library.sqlite")
    domains = {d for (d,) in db.execute("SELECT DISTINCT meta_domain FROM image")}
    db.close()
    assert {r["meta_domain_estimated"] for r in rows} == domains
    card = (tmp_path / "out" / "DATACARD.md").read_text()
    assert "Diagnosis x visual meta-domain (estimated)" in card
