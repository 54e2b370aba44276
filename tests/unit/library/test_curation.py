"""Duplicate decisions and exclusions: rows with audit entries, undo, and their effect on
splits and exports; on real PH2 images and near-copies of them made the way they happen
(the same photo re-saved smaller and recompressed)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.export import ExportOptions, plan_export
from dermdesk.exchange.importer import ImportItem, run_import
from dermdesk.exchange.splits import plan_split
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library import curation_store as cs
from dermdesk.library.verify import verify


@pytest.fixture(scope="module")
def library(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("curation")
    lib = Library.open(root / "lib", actor="curator")
    items = plan_path(shared_data / "ph2").items[:30]
    copies = root / "copies"
    copies.mkdir()
    for item in items[:4]:  # near-copies: re-saved at 80 % size, quality 70
        with Image.open(item.path) as img:
            small = img.convert("RGB").resize((img.width * 4 // 5, img.height * 4 // 5))
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=70)
        (copies / f"copy_{item.path.stem}.jpg").write_bytes(buf.getvalue())
    extra = [ImportItem(p, p.name, dataset="clinic") for p in sorted(copies.iterdir())]
    report = run_import(lib, [*items, *extra])
    assert not report.refused
    yield lib
    lib.close()


def test_near_copies_are_listed_as_pairs(library: Library) -> None:
    pairs = cs.duplicate_pairs(library)
    copies = {r["id"] for r in library.images(ImageFilter(dataset=["clinic"]))}
    paired = {p["a"] for p in pairs} | {p["b"] for p in pairs}
    assert copies <= paired
    assert all(p["decision"] is None for p in pairs)
    assert pairs == sorted(pairs, key=lambda p: (p["distance"], p["a"], p["b"]))


def _pair(library: Library, n: int) -> tuple[str, str]:
    copies = sorted(r["id"] for r in library.images(ImageFilter(dataset=["clinic"])))
    pair = next(p for p in cs.duplicate_pairs(library) if copies[n] in (p["a"], p["b"]))
    other = pair["a"] if pair["b"] == copies[n] else pair["b"]
    return other, copies[n]


def test_merge_links_and_excludes_and_undo_puts_everything_back(library: Library) -> None:
    original, copy = _pair(library, 0)
    before = {i: library.image(i) for i in (original, copy)}
    decision = cs.decide(library, original, copy, "merge")
    after = library.image(copy)
    assert after["lesion_id"] == library.image(original)["lesion_id"] is not None
    assert copy in cs.excluded_ids(library)
    # Splits and exports leave an excluded image out, and say so.
    split = plan_split(library, ImageFilter(), (0.7, 0.15, 0.15), 0)
    assert copy not in split.assignment
    plan = plan_export(library, ExportOptions("isic"))
    assert copy not in {it.row["id"] for it in plan.items}
    assert plan.left_out["excluded by a curator (dermdesk curate include)"] == 1
    cs.undo(library, decision)
    for image_id, row in before.items():
        now = library.image(image_id)
        assert (now["patient_id"], now["lesion_id"]) == (row["patient_id"], row["lesion_id"])
    assert copy not in cs.excluded_ids(library)
    actions = [e["action"] for e in library.audit_entries(copy)]
    assert {"duplicate.decide", "duplicate.undo", "image.exclude", "image.include"} <= set(actions)
    assert verify(library).errors == []


def test_not_duplicate_stops_splits_joining_the_pair(library: Library) -> None:
    from dermdesk.exchange.splits import split_groups

    original, copy = _pair(library, 1)
    rows = library.images(ImageFilter(ids=[original, copy]))
    groups = split_groups(library, rows)
    assert groups[original] == groups[copy]
    decision = cs.decide(library, original, copy, "not_duplicate", note="two lesions")
    groups = split_groups(library, rows)
    assert groups[original] != groups[copy]
    cs.undo(library, decision)


def test_exclude_and_include_by_hand_and_bad_input(library: Library) -> None:
    original, copy = _pair(library, 2)
    assert cs.exclude(library, [copy], "blurred") == 1
    assert cs.exclude(library, [copy], "again") == 0  # already out; the first reason stands
    assert library.count(ImageFilter(excluded=True)) >= 1
    assert copy not in {r["id"] for r in library.images(ImageFilter(excluded=False))}
    assert cs.include(library, [copy]) == 1 and copy not in cs.excluded_ids(library)
    with pytest.raises(LibraryError, match="say why"):
        cs.exclude(library, [copy], " ")
    with pytest.raises(LibraryError, match="unknown decision 'keep'"):
        cs.decide(library, original, copy, "keep")
    with pytest.raises(LibraryError, match="two different images"):
        cs.decide(library, copy, copy, "exclude")
    with pytest.raises(LibraryError, match="no current duplicate decision 9999"):
        cs.undo(library, 9999)
    with pytest.raises(LibraryError, match="no such image: abcdef0123"):
        cs.exclude(library, ["abcdef0123"], "x")


def test_the_cli_twins(library: Library) -> None:
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dermdesk", "--library", str(library.root), "curate", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    original, copy = _pair(library, 3)
    listed = cli("duplicates", "--undecided")
    assert (
        listed.returncode == 0
        and copy[:12] in listed.stdout
        and "near-duplicate pairs" in listed.stdout
    )
    made = cli("decide", original[:10], copy[:10], "exclude", "--note", "blurred copy")
    assert made.returncode == 0, made.stderr
    decision = int(made.stdout.split()[1].rstrip(":"))
    assert copy in cs.excluded_ids(library)
    assert "exclude (#" in cli("duplicates").stdout
    assert cli("undo", str(decision)).returncode == 0 and copy not in cs.excluded_ids(library)
    assert "1 images excluded" in cli("exclude", copy[:10], "--reason", "test").stdout
    assert "1 images back" in cli("include", copy[:10]).stdout
    bad = cli("decide", original[:10], copy[:10], "keep")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    missing = cli("undo", "424242")
    assert missing.returncode == 2 and "no current duplicate decision 424242" in missing.stderr
