"""Curated dataset splits and the leakage report (issue 16); numpy only, no torch.

A curated split keeps together everything that would let a model recognise a test image
from training: images of one patient, else of one lesion, and near-duplicates (perceptual
hashes within the duplicate check's distance, joined transitively), so near-copies never
straddle parts even where a dataset has no patient ids (Fitzpatrick17k). Groups are
assigned by ``ml.splits``' stratified greedy rule over diagnosis x Fitzpatrick group x
device. The leakage report checks any split (stored, or a CSV) for what crosses parts.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.quality_store import near_duplicate_groups
from dermdesk.library.split_store import PARTS
from dermdesk.ml.groups import fitzpatrick_group
from dermdesk.ml.splits import grouped_split, item_from_row

# What a split's report compares across parts.
REPORT_FIELDS = ("diagnosis", "fitzpatrick", "device", "modality", "dataset")
RENDER_VALUES = 12  # values of one field shown in the side-by-side table


def split_groups(lib: Library, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Image id -> group: the union of its patient, its lesion and its near-duplicates.

    A union, not "patient, else lesion": a source can name one lesion under two patients
    (nine PAD-UFES-20 lesion ids do), and a near-copy of another patient's image must join
    that patient."""
    near = near_duplicate_groups(lib, [r["id"] for r in rows])
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for r in rows:
        own = f"image:{r['id']}"
        root(own)
        if r.get("patient_id"):
            join(own, f"patient:{r['patient_id']}")
        if r.get("lesion_id"):
            join(own, f"lesion:{r['lesion_id']}")
        join(own, f"dup:{near.get(r['id'], r['id'])}")
    return {r["id"]: root(f"image:{r['id']}") for r in rows}


def parse_fractions(text: str) -> tuple[float, float, float]:
    """'70/15/15' (or 0.7,0.15,0.15) -> three fractions summing to 1."""
    parts = [p for p in text.replace(",", "/").split("/") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise LibraryError(
            f"fractions must be three numbers train/val/test, e.g. 70/15/15 (got {text!r})"
        )
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


@dataclass
class SplitPlan:
    """A split before it is stored: the assignment, its parameters and its report."""

    assignment: dict[str, str]
    params: dict[str, Any]
    report: dict[str, Any]


def _field_value(row: Mapping[str, Any], name: str) -> str:
    if name == "fitzpatrick":
        return fitzpatrick_group(row.get("fitzpatrick"))  # rated only: estimates are not ratings
    value = row.get(name)
    return str(value) if value not in (None, "") else "unknown"


def plan_split(
    lib: Library,
    flt: ImageFilter,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> SplitPlan:
    """Group, stratify and assign the images ``flt`` selects."""
    rows = lib.images(replace(flt, excluded=False), order="id")
    if not rows:
        raise LibraryError("no image matches the filters: nothing to split")
    excluded = lib.count(flt) - len(rows)
    groups = split_groups(lib, rows)
    items = []
    for r in rows:
        item = item_from_row(r)
        stratum = f"{item.stratum}|{_field_value(r, 'device')}"
        items.append(replace(item, group=groups[r["id"]], stratum=stratum))
    assignment = grouped_split(items, tuple(fractions), seed)
    params = {
        "fractions": [round(f, 6) for f in fractions],
        "seed": seed,
        "query": flt.as_params(),
        "query_text": flt.describe(),
        "grouping": "patient, lesion and near-duplicates joined (a union)",
        "strata": "diagnosis x rated Fitzpatrick group x device",
        "excluded_by_curator": excluded,
    }
    return SplitPlan(assignment, params, split_report(rows, assignment, groups))


def split_report(
    rows: Sequence[Mapping[str, Any]],
    assignment: Mapping[str, str],
    groups: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Per part: images, groups and the distribution of each report field (counts), and the
    largest imbalance: the value whose share in one part is furthest from its share
    overall (percentage points)."""
    by_id = {r["id"]: r for r in rows if r["id"] in assignment}
    parts = [p for p in PARTS if p in set(assignment.values())]
    out: dict[str, Any] = {"parts": {}, "total": len(by_id)}
    for part in parts:
        ids = [i for i, p in assignment.items() if p == part and i in by_id]
        entry: dict[str, Any] = {"images": len(ids)}
        if groups is not None:
            entry["groups"] = len({groups[i] for i in ids if i in groups})
        entry["patients"] = len({by_id[i]["patient_id"] for i in ids if by_id[i].get("patient_id")})
        for name in REPORT_FIELDS:
            entry[name] = dict(sorted(Counter(_field_value(by_id[i], name) for i in ids).items()))
        out["parts"][part] = entry
    worst: dict[str, Any] | None = None
    for name in REPORT_FIELDS:
        overall = Counter(_field_value(r, name) for r in by_id.values())
        for part in parts:
            n_part = out["parts"][part]["images"]
            if not n_part:
                continue
            for value, n in overall.items():
                share = out["parts"][part][name].get(value, 0) / n_part
                gap = abs(share - n / len(by_id)) * 100
                if worst is None or gap > worst["points"] + 1e-9:
                    worst = {
                        "field": name,
                        "value": value,
                        "part": part,
                        "share": round(share * 100, 1),
                        "overall": round(n / len(by_id) * 100, 1),
                        "points": round(gap, 1),
                    }
    out["largest_imbalance"] = worst
    return out


def render_report(report: Mapping[str, Any], fields: Sequence[str] = REPORT_FIELDS) -> str:
    """The parts side by side, one table per field, and the largest imbalance in words."""
    parts = list(report["parts"])
    lines = ["part       " + "".join(f"{p:>14}" for p in parts)]
    for key in ("images", "groups", "patients"):
        if all(key in report["parts"][p] for p in parts):
            lines.append(f"{key:<11}" + "".join(f"{report['parts'][p][key]:>14}" for p in parts))
    for name in fields:
        totals = Counter[str]()
        for p in parts:
            totals.update(report["parts"][p][name])
        values = sorted(v for v, _ in totals.most_common(RENDER_VALUES))
        lines.append("")
        lines.append(
            f"{name}"
            + (
                f" (the {RENDER_VALUES} commonest of {len(totals)})"
                if len(totals) > RENDER_VALUES
                else ""
            )
        )
        for value in values:
            cells = []
            for p in parts:
                n = report["parts"][p][name].get(value, 0)
                total = report["parts"][p]["images"] or 1
                cells.append(f"{n:>6} ({n / total * 100:4.1f}%)")
            lines.append(f"  {value[:26]:<26}" + "".join(f"{c:>14}" for c in cells))
    worst = report.get("largest_imbalance")
    if worst:
        lines.append("")
        lines.append(
            f"largest imbalance: {worst['field']} {worst['value']} is {worst['share']}% of "
            f"{worst['part']} against {worst['overall']}% overall ({worst['points']} points)"
        )
    return "\n".join(lines)


# -- leakage ---------------------------------------------------------------------------------


def read_split_csv(path: Path, lib: Library) -> dict[str, str]:
    """A split given as a CSV with columns ``image_id`` (a full id or a unique prefix of 6+
    characters) and ``split`` (train / val / test; validation and valid read as val)."""
    aliases = {"validation": "val", "valid": "val", "dev": "val"}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fieldnames = [f.strip().lower() for f in reader.fieldnames or []]
            if "image_id" not in fieldnames or "split" not in fieldnames:
                raise LibraryError(f"{path}: needs the columns image_id and split")
            out: dict[str, str] = {}
            for n, raw in enumerate(reader, start=2):
                row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
                part = aliases.get(row["split"].lower(), row["split"].lower())
                if part not in PARTS:
                    raise LibraryError(
                        f"{path}, line {n}: split {row['split']!r} is not train, val or test"
                    )
                out[lib.image(row["image_id"])["id"]] = part
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LibraryError(f"cannot read {path}: {exc}") from exc
    if not out:
        raise LibraryError(f"{path}: no rows")
    return out


def random_image_split(
    image_ids: Sequence[str], fractions: Sequence[float], seed: int = 0
) -> dict[str, str]:
    """A naive split that ignores patients, lesions and duplicates: each image drawn at random
    (the comparison the leakage report is measured against)."""
    rng = np.random.default_rng(seed)
    ids = sorted(image_ids)
    draws = rng.choice(len(PARTS), size=len(ids), p=np.asarray(fractions) / sum(fractions))
    return {i: PARTS[int(d)] for i, d in zip(ids, draws, strict=True)}


def leakage_report(
    lib: Library, assignment: Mapping[str, str], examples: int = 5
) -> dict[str, Any]:
    """What crosses parts: near-duplicate pairs, patients and lesions with images in more than
    one part. Counts, and a few examples of each (image ids)."""
    from dermdesk.imaging.dedup import HashIndex
    from dermdesk.imaging.quality_config import DUPLICATE_MAX_DISTANCE

    ids = sorted(assignment)
    rows = {
        r["id"]: r
        for r in lib.query(
            "SELECT id, patient_id, lesion_id FROM image WHERE id IN "
            "(SELECT value FROM json_each(?))",
            [_json_list(ids)],
        )
    }
    missing = [i for i in ids if i not in rows]
    if missing:
        raise LibraryError(f"image {missing[0][:12]} of the split is not in the library")
    hashes = lib.conn.execute(
        "SELECT image_id, phash FROM image_hash WHERE image_id IN (SELECT value FROM json_each(?))",
        [_json_list(ids)],
    ).fetchall()
    index = HashIndex(hashes)
    pairs = []
    for image_id, value in hashes:
        for m in index.near(value, DUPLICATE_MAX_DISTANCE, exclude=image_id):
            if image_id < m.image_id and assignment[image_id] != assignment[m.image_id]:
                pairs.append((m.distance, image_id, m.image_id))
    pairs.sort()
    out: dict[str, Any] = {
        "images": len(ids),
        "hashed": len(hashes),
        "parts": dict(sorted(Counter(assignment.values()).items())),
        "near_duplicate_pairs": len(pairs),
        "near_duplicate_examples": [
            {"distance": d, "a": a, "a_part": assignment[a], "b": b, "b_part": assignment[b]}
            for d, a, b in pairs[:examples]
        ],
    }
    for key in ("patient_id", "lesion_id"):
        members: dict[str, set[str]] = {}
        images: dict[str, list[str]] = {}
        for i in ids:
            owner = rows[i].get(key)
            if owner:
                members.setdefault(owner, set()).add(assignment[i])
                images.setdefault(owner, []).append(i)
        crossing = sorted(o for o, ps in members.items() if len(ps) > 1)
        name = key.removesuffix("_id")
        out[f"{name}s_across"] = len(crossing)
        out[f"{name}_images_across"] = sum(len(images[o]) for o in crossing)
        out[f"{name}_examples"] = [
            {name: o, "parts": sorted(members[o]), "images": len(images[o])}
            for o in crossing[:examples]
        ]
    out["clean"] = not (pairs or out["patients_across"] or out["lesions_across"])
    return out


def render_leakage(report: Mapping[str, Any]) -> str:
    lines = [
        f"{report['images']} images in the split ("
        + ", ".join(f"{p} {n}" for p, n in report["parts"].items())
        + f"); {report['hashed']} have a perceptual hash",
        f"near-duplicate pairs across parts: {report['near_duplicate_pairs']}",
    ]
    for ex in report["near_duplicate_examples"]:
        lines.append(
            f"  {ex['a'][:12]} ({ex['a_part']})  {ex['b'][:12]} ({ex['b_part']})  "
            f"distance {ex['distance']}"
        )
    for name in ("patient", "lesion"):
        lines.append(
            f"{name}s with images in more than one part: {report[f'{name}s_across']} "
            f"({report[f'{name}_images_across']} images)"
        )
        for ex in report[f"{name}_examples"]:
            lines.append(f"  {ex[name]}: {ex['images']} images in {', '.join(ex['parts'])}")
    lines.append("no leakage" if report["clean"] else "LEAKAGE: the parts share the items above")
    return "\n".join(lines)


def _json_list(values: Sequence[str]) -> str:
    import json

    return json.dumps(list(values))
