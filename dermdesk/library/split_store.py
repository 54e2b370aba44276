"""Named dataset splits in the library (migration 10): write once, read by training and export.

A split says which part (train / val / test) each of its images is in. It is written in
one transaction with its parameters (fractions, seed, query, grouping) and its report,
audited as ``split.create``; it is never edited, so an export or a model that names a
split names exactly these images.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dermdesk.library.db import LibraryError
from dermdesk.library.library import Library

PARTS = ("train", "val", "test")


def create_split(
    lib: Library,
    name: str,
    assignment: Mapping[str, str],
    params: Mapping[str, Any],
    report: Mapping[str, Any],
) -> int:
    """Store a split (image id -> part); refuses a name in use or an unknown part."""
    name = name.strip()
    if not name:
        raise LibraryError("a split needs a name")
    bad = sorted({p for p in assignment.values() if p not in PARTS})
    if bad:
        raise LibraryError(f"unknown split part {bad[0]!r}; parts: {', '.join(PARTS)}")
    if not assignment:
        raise LibraryError("the split has no images: the filters match nothing")
    with lib.transaction() as txn:
        if txn.conn.execute("SELECT 1 FROM dataset_split WHERE name = ?", (name,)).fetchone():
            raise LibraryError(
                f"a split named {name!r} exists; splits are never changed, pick a new name"
            )
        cur = txn.conn.execute(
            "INSERT INTO dataset_split (name, params, report, created_by, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                name,
                json.dumps(params, sort_keys=True),
                json.dumps(report, sort_keys=True),
                txn.actor,
                txn.at,
            ),
        )
        split_id = int(cur.lastrowid or 0)
        txn.conn.executemany(
            "INSERT INTO dataset_split_image (split_id, image_id, part) VALUES (?, ?, ?)",
            [(split_id, i, p) for i, p in sorted(assignment.items())],
        )
        counts = {p: sum(v == p for v in assignment.values()) for p in PARTS}
        txn.record("split.create", "dataset_split", name, None, {**params, "images": counts})
    return split_id


def splits(lib: Library) -> list[dict[str, Any]]:
    """Every stored split, newest first, with its image count per part."""
    rows = lib.query("SELECT * FROM dataset_split ORDER BY id DESC")
    counts: dict[int, dict[str, int]] = {}
    for sid, part, n in lib.conn.execute(
        "SELECT split_id, part, count(*) FROM dataset_split_image GROUP BY split_id, part"
    ):
        counts.setdefault(int(sid), {})[part] = int(n)
    for row in rows:
        row["params"] = json.loads(row["params"])
        row["report"] = json.loads(row["report"])
        row["parts"] = {p: counts.get(row["id"], {}).get(p, 0) for p in PARTS}
    return rows


def split_info(lib: Library, name: str) -> dict[str, Any]:
    """One split's row (params and report decoded); a clear error for an unknown name."""
    for row in splits(lib):
        if row["name"] == name:
            return row
    known = [r["name"] for r in splits(lib)]
    hint = f"; splits: {', '.join(known)}" if known else "; none exist yet (dermdesk curate split)"
    raise LibraryError(f"no split named {name!r}{hint}")


def assignment(lib: Library, name: str) -> dict[str, str]:
    """Image id -> part of a stored split."""
    info = split_info(lib, name)
    rows = lib.conn.execute(
        "SELECT image_id, part FROM dataset_split_image WHERE split_id = ? ORDER BY image_id",
        (info["id"],),
    )
    return {str(i): str(p) for i, p in rows}
