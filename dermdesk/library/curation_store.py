"""Curators' duplicate decisions and exclusions (migration 11): rows with audit and undo.

A near-duplicate pair is decided once, and the decision is a row:

- ``same_lesion``: both stay, as different views of one lesion (the second image is
  linked to the first one's patient and lesion, a new lesion when the first has none);
- ``merge``: one picture of one lesion: linked as above, and the second image excluded;
- ``exclude``: the second image is kept out of datasets (nothing else changes);
- ``not_duplicate``: different pictures after all; splits stop joining the pair.

Excluded images are never deleted: splits, exports and training leave them out, the
gallery can show them, and ``undo`` puts everything back (the link to what the image was
linked to before, the exclusion withdrawn), every step audited.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from dermdesk.library.db import LibraryError
from dermdesk.library.library import Library
from dermdesk.library.records import LesionRef
from dermdesk.library.writes import Txn

DECISIONS = ("same_lesion", "merge", "exclude", "not_duplicate")


def excluded_ids(lib: Library) -> set[str]:
    """Images currently kept out of datasets."""
    return {r[0] for r in lib.conn.execute("SELECT image_id FROM exclusion WHERE is_current")}


def not_duplicate_pairs(lib: Library) -> set[tuple[str, str]]:
    """Pairs a curator said are different pictures (each pair as (smaller, larger) id)."""
    rows = lib.conn.execute(
        "SELECT image_a, image_b FROM duplicate_decision "
        "WHERE is_current AND decision = 'not_duplicate'"
    )
    return {(min(a, b), max(a, b)) for a, b in rows}


def _exclude(txn: Txn, image_id: str, reason: str, decision_id: int | None) -> None:
    current = txn.conn.execute(
        "SELECT id FROM exclusion WHERE image_id = ? AND is_current", (image_id,)
    ).fetchone()
    if current:
        return  # already out of datasets; the first reason stands
    txn.insert(
        "exclusion",
        {
            "image_id": image_id,
            "reason": reason,
            "decision_id": decision_id,
            "created_by": txn.actor,
            "created_at": txn.at,
            "is_current": 1,
        },
    )
    txn.record("image.exclude", "image", image_id, None, {"reason": reason})


def exclude(lib: Library, image_ids: Iterable[str], reason: str) -> int:
    """Keep images out of datasets (never deleted); returns how many were newly excluded."""
    ids = lib.require_images(image_ids)
    if not reason.strip():
        raise LibraryError("say why the images are excluded (--reason)")
    before = excluded_ids(lib)
    with lib.transaction() as txn:
        for image_id in ids:
            _exclude(txn, image_id, reason.strip(), None)
    return len(set(ids) - before)


def include(lib: Library, image_ids: Iterable[str]) -> int:
    """Withdraw the exclusion of images; returns how many were excluded."""
    ids = lib.require_images(image_ids)
    n = 0
    with lib.transaction() as txn:
        for image_id in ids:
            cur = txn.conn.execute(
                "UPDATE exclusion SET is_current = 0 WHERE image_id = ? AND is_current",
                (image_id,),
            )
            if cur.rowcount:
                n += 1
                txn.record("image.include", "image", image_id, {"excluded": True}, None)
    return n


def decide(lib: Library, image_a: str, image_b: str, decision: str, note: str | None = None) -> int:
    """Record a decision on the pair (a, b); ``b`` is the one linked or excluded."""
    if decision not in DECISIONS:
        raise LibraryError(f"unknown decision {decision!r}; decisions: {', '.join(DECISIONS)}")
    a, b = (lib.image(x) for x in (image_a, image_b))
    if a["id"] == b["id"]:
        raise LibraryError("a duplicate decision needs two different images")
    with lib.transaction() as txn:
        before = {
            key: {"patient_id": img["patient_id"], "lesion_id": img["lesion_id"]}
            for key, img in (("a", a), ("b", b))
        }
        decision_id = txn.insert(
            "duplicate_decision",
            {
                "image_a": a["id"],
                "image_b": b["id"],
                "decision": decision,
                "note": note,
                "before": json.dumps(before),
                "created_by": txn.actor,
                "created_at": txn.at,
                "is_current": 1,
            },
        )
        if decision in ("same_lesion", "merge"):
            lesion = a["lesion_id"] or txn.lesion(
                LesionRef("curation", f"lesion-of-{a['id'][:16]}"), a["patient_id"]
            )
            if not a["lesion_id"]:
                txn.link(a["id"], a["patient_id"], lesion)
            txn.link(b["id"], a["patient_id"] or b["patient_id"], lesion)
        if decision in ("merge", "exclude"):
            _exclude(txn, b["id"], f"near-copy of {a['id'][:12]}", decision_id)
        txn.record(
            "duplicate.decide",
            "image",
            b["id"],
            None,
            {"decision": decision, "other": a["id"], "id": decision_id},
        )
    return decision_id


def undo(lib: Library, decision_id: int) -> None:
    """Take a decision back: its link undone (the image linked as before), its exclusion
    withdrawn, the row kept (not current) for the record."""
    rows = lib.query("SELECT * FROM duplicate_decision WHERE id = ?", [decision_id])
    if not rows or not rows[0]["is_current"]:
        raise LibraryError(f"no current duplicate decision {decision_id}")
    row = rows[0]
    before = json.loads(row["before"])
    with lib.transaction() as txn:
        txn.conn.execute(
            "UPDATE duplicate_decision SET is_current = 0 WHERE id = ?", (decision_id,)
        )
        if row["decision"] in ("same_lesion", "merge"):
            for key in ("b", "a"):
                was = before[key]
                txn.link(row[f"image_{key}"], was["patient_id"], was["lesion_id"])
        cur = txn.conn.execute(
            "UPDATE exclusion SET is_current = 0 WHERE decision_id = ? AND is_current",
            (decision_id,),
        )
        if cur.rowcount:
            txn.record("image.include", "image", row["image_b"], {"excluded": True}, None)
        txn.record(
            "duplicate.undo",
            "image",
            row["image_b"],
            {"decision": row["decision"], "id": decision_id},
            None,
        )


def decisions(lib: Library, *, current_only: bool = True) -> list[dict[str, Any]]:
    sql = "SELECT * FROM duplicate_decision"
    if current_only:
        sql += " WHERE is_current"
    return lib.query(sql + " ORDER BY id")


def duplicate_pairs(lib: Library, image_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Near-duplicate pairs: perceptual hashes within the duplicate check's distance
    (``distance``) and stored embedding-cosine pairs (``cosine``; either may be None),
    nearest first, each with the current decision on it (None when undecided)."""
    from dermdesk.imaging.dedup import HashIndex
    from dermdesk.imaging.quality_config import DUPLICATE_MAX_DISTANCE

    rows = lib.conn.execute("SELECT image_id, phash FROM image_hash").fetchall()
    if image_ids is not None:
        wanted = set(image_ids)
        rows = [r for r in rows if r[0] in wanted]
    index = HashIndex(rows)
    decided = {
        (min(d["image_a"], d["image_b"]), max(d["image_a"], d["image_b"])): d
        for d in decisions(lib)
    }
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for image_id, value in rows:
        for m in index.near(value, DUPLICATE_MAX_DISTANCE, exclude=image_id):
            if image_id < m.image_id:
                found[(image_id, m.image_id)] = {"distance": m.distance, "cosine": None}
    wanted_ids = set(image_ids) if image_ids is not None else None
    for a, b, cosine in embedding_pairs(lib):
        if wanted_ids is None or (a in wanted_ids and b in wanted_ids):
            found.setdefault((a, b), {"distance": None, "cosine": None})["cosine"] = cosine
    pairs = []
    for (a, b), how in found.items():
        d = decided.get((a, b))
        pairs.append(
            {
                "a": a,
                "b": b,
                **how,
                "decision": d["decision"] if d else None,
                "decision_id": d["id"] if d else None,
            }
        )
    # perceptual-hash pairs nearest first, then those only the embedding found, closest first
    return sorted(
        pairs,
        key=lambda p: (
            p["distance"] is None,
            p["distance"] or 0,
            -(p["cosine"] or 0.0),
            p["a"],
            p["b"],
        ),
    )


def embedding_pairs(lib: Library) -> list[tuple[str, str, float]]:
    """Near-duplicates by embedding cosine (``curate embed-duplicates``): (a, b, the
    highest cosine any backbone gave the pair), a < b."""
    try:
        rows = lib.conn.execute(
            "SELECT image_a, image_b, max(cosine) FROM embedding_pair GROUP BY image_a, image_b"
        ).fetchall()
    except sqlite3.OperationalError:  # a library read-only at an older schema version
        return []
    return [(a, b, float(c)) for a, b, c in rows]


def save_embedding_pairs(
    lib: Library, model_id: str, min_cosine: float, pairs: Iterable[tuple[str, str, float]]
) -> int:
    """Replace a backbone's near-duplicate pairs (one transaction, one audit entry)."""
    rows = [(a, b, model_id, c) for a, b, c in pairs]
    lib.require_images({i for a, b, _, _ in rows for i in (a, b)})
    with lib.transaction() as txn:
        before = txn.conn.execute(
            "SELECT count(*) FROM embedding_pair WHERE model_id = ?", (model_id,)
        ).fetchone()[0]
        txn.conn.execute("DELETE FROM embedding_pair WHERE model_id = ?", (model_id,))
        txn.conn.executemany(
            "INSERT INTO embedding_pair (image_a, image_b, model_id, cosine, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(*r, txn.at) for r in rows],
        )
        txn.record(
            "curation.embedding_pairs",
            "model",
            model_id,
            {"pairs": before},
            {"pairs": len(rows), "min_cosine": min_cosine},
        )
    return len(rows)
