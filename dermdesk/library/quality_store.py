"""Storing and reading quality findings, estimated skin tones and perceptual hashes.

Writers follow the library's rules: one ``BEGIN IMMEDIATE`` transaction per
call with an audit entry per image. Per image the ``quality`` table holds one
row per check (replaced on every run, stamped with the checker version), the
``image_hash`` table its perceptual hash, and an estimated skin tone goes
through the library's skin-tone history (a manual rating still wins; an
estimate identical to the current one is not written again, and a refusal
withdraws a stale estimate). Duplicate findings are computed here, against
every hash in the library, so both images of a pair carry the finding.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dermdesk.imaging.dedup import HashIndex, check_duplicate
from dermdesk.imaging.findings import CheckResult
from dermdesk.imaging.quality import CHECKER_VERSION, Assessment
from dermdesk.imaging.skintone import SkinToneEstimate
from dermdesk.library.query import ImageFilter
from dermdesk.library.records import SkinToneIn
from dermdesk.library.writes import Txn

if TYPE_CHECKING:
    from dermdesk.library.library import Library

ESTIMATOR = f"dermdesk-quality {CHECKER_VERSION}"

# Per open Library: its hash index and the transaction (audit writer) that last checked it.
_INDEXES: weakref.WeakKeyDictionary[Any, tuple[HashIndex, Any]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class QualityCount:
    check: str
    verdict: str
    n: int


# -- writing ---------------------------------------------------------------------------------------


def save_assessments(lib: Library, items: Sequence[tuple[str, Assessment]]) -> None:
    """Store the findings of several images in one transaction."""
    if not items:
        return
    lib.require_images(image_id for image_id, _ in items)
    with lib.transaction() as txn:
        for image_id, assessment in items:
            insert_assessment(txn, image_id, assessment)


def insert_assessment(txn: Txn, image_id: str, assessment: Assessment) -> None:
    """Write one image's findings inside the caller's transaction (import uses this)."""
    conn, at = txn.conn, txn.at
    results = list(assessment.checks)
    if assessment.phash is not None:
        index = hash_index(txn.lib, conn, within=txn)
        matches = index.near(assessment.phash, exclude=image_id)
        results.append(check_duplicate(matches))
        _mark_partners(conn, image_id, [m.image_id for m in matches], at)
        conn.execute(
            "INSERT OR REPLACE INTO image_hash (image_id, phash, checker_version, created_at) "
            "VALUES (?, ?, ?, ?)",
            (image_id, assessment.phash, assessment.checker_version, at),
        )
        index.set(image_id, assessment.phash)
    before = _summary(conn, image_id)
    conn.execute("DELETE FROM quality WHERE image_id = ?", (image_id,))
    conn.executemany(
        "INSERT INTO quality (image_id, check_name, score, verdict, reason, checker_version, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (image_id, r.check, r.score, r.verdict, r.reason, assessment.checker_version, at)
            for r in results
        ],
    )
    txn.record("quality.check", "image", image_id, before, _summary_of(results, assessment))
    _store_tone(txn, image_id, assessment)


def _summary(conn: sqlite3.Connection, image_id: str) -> dict[str, Any] | None:
    rows = conn.execute(
        "SELECT check_name, verdict, checker_version FROM quality WHERE image_id = ?", (image_id,)
    ).fetchall()
    if not rows:
        return None
    return {
        "version": rows[0][2],
        "problems": {name: verdict for name, verdict, _ in rows if verdict != "pass"},
    }


def _summary_of(results: list[CheckResult], assessment: Assessment) -> dict[str, Any]:
    return {
        "version": assessment.checker_version,
        "problems": {r.check: r.verdict for r in results if r.verdict != "pass"},
    }


def _mark_partners(conn: sqlite3.Connection, image_id: str, partners: list[str], at: str) -> None:
    """Give the images this one duplicates a duplicate finding too (if they lack one)."""
    for other in partners:
        row = conn.execute(
            "SELECT verdict, checker_version FROM quality "
            "WHERE image_id = ? AND check_name = 'duplicate'",
            (other,),
        ).fetchone()
        if row is None or row[0] != "pass":
            continue
        conn.execute(
            "UPDATE quality SET score = NULL, verdict = 'warn', reason = ?, created_at = ? "
            "WHERE image_id = ? AND check_name = 'duplicate'",
            (
                f"near-duplicate of image {image_id[:12]}: keep one, or link them to the same "
                "lesion so they never end up on both sides of a train/test split",
                at,
                other,
            ),
        )


def _store_tone(txn: Txn, image_id: str, assessment: Assessment) -> None:
    """The estimate becomes current; the same estimate again writes nothing, and a
    refusal withdraws the old estimate (the history keeps it)."""
    estimate = assessment.skin_tone
    current = txn.current_tone(image_id, "estimated")
    if isinstance(estimate, SkinToneEstimate):
        if (
            current
            and (current["fitzpatrick"], current["monk"]) == (estimate.fitzpatrick, estimate.monk)
            and (current["ita"] is not None and abs(current["ita"] - estimate.ita) < 0.5)
        ):
            return  # the same estimate again: no new history row
        tone = SkinToneIn(
            fitzpatrick=estimate.fitzpatrick,
            monk=estimate.monk,
            method="estimated",
            rater=ESTIMATOR,
            ita=estimate.ita,
            confidence=estimate.confidence,
        )
        txn.record_tone(image_id, tone)
    elif current is not None:
        txn.withdraw_tone(image_id, "estimated", "skin_tone.withdraw")


# -- hashes ----------------------------------------------------------------------------------------


def hash_index(
    lib: Library, conn: sqlite3.Connection | None = None, within: Txn | None = None
) -> HashIndex:
    """Every perceptual hash in the library, cached per open Library and kept in step
    with its own writes; reloaded when the row count shows another process wrote some.
    Within one transaction (``within``) the count is checked once."""
    conn = conn or lib.conn
    cached = _INDEXES.get(lib)
    if cached is not None and within is not None and cached[1]() is within:
        return cached[0]
    count = int(conn.execute("SELECT count(*) FROM image_hash").fetchone()[0])
    if cached is None or len(cached[0]) != count:
        index = HashIndex(conn.execute("SELECT image_id, phash FROM image_hash").fetchall())
    else:
        index = cached[0]
    _INDEXES[lib] = (index, weakref.ref(within) if within is not None else lambda: None)
    return index


def near_duplicate_groups(lib: Library, image_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Per image, a group shared by all its exact and near duplicates (perceptual hashes
    within the duplicate check's distance, joined transitively); an image without a
    hash or a duplicate is its own group. Splits keep each group on one side."""
    from dermdesk.imaging.quality_config import DUPLICATE_MAX_DISTANCE

    rows = lib.conn.execute("SELECT image_id, phash FROM image_hash").fetchall()
    wanted = set(image_ids) if image_ids is not None else None
    if wanted is not None:
        rows = [r for r in rows if r[0] in wanted]
    index = HashIndex(rows)
    parent = {image_id: image_id for image_id, _ in rows}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    apart = _not_duplicates(lib)
    edges = [
        (image_id, match.image_id)
        for image_id, value in rows
        for match in index.near(value, DUPLICATE_MAX_DISTANCE, exclude=image_id)
    ]
    from dermdesk.library.curation_store import embedding_pairs

    for a, b, _ in embedding_pairs(lib):  # near-copies by a backbone's features too
        if wanted is None or (a in wanted and b in wanted):
            parent.setdefault(a, a)
            parent.setdefault(b, b)
            edges.append((a, b))
    for first, second in edges:
        if (min(first, second), max(first, second)) in apart:
            continue  # a curator said these are different pictures
        a, b = root(first), root(second)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups = {image_id: root(image_id) for image_id in parent}
    for image_id in wanted or ():
        groups.setdefault(image_id, image_id)
    return groups


def _not_duplicates(lib: Library) -> set[tuple[str, str]]:
    from dermdesk.library.curation_store import not_duplicate_pairs

    try:
        return not_duplicate_pairs(lib)
    except sqlite3.OperationalError:  # a library read-only at an older schema version
        return set()


# -- reading ---------------------------------------------------------------------------------------


def findings(lib: Library, image_id: str) -> list[dict[str, Any]]:
    """One image's findings in display order (check, score, verdict, reason, version)."""
    from dermdesk.imaging.quality import CHECK_TITLES

    order = list(CHECK_TITLES)
    rows = lib.quality(image_id)
    return sorted(
        rows, key=lambda r: order.index(r["check_name"]) if r["check_name"] in order else 99
    )


def worst_findings(lib: Library, image_id: str) -> list[dict[str, Any]]:
    """The findings with the image's worst verdict (none when every check passed), in
    display order: what the gallery's quality dot is about."""
    rows = findings(lib, image_id)
    for verdict in ("fail", "warn"):
        worst = [r for r in rows if r["verdict"] == verdict]
        if worst:
            return worst
    return []


def stale_ids(lib: Library, flt: ImageFilter | None = None) -> list[str]:
    """Images never checked, or checked by another checker version."""
    where, params = (flt or ImageFilter()).where()
    sql = (
        f"SELECT image.id FROM image WHERE {where} AND (NOT EXISTS "
        "(SELECT 1 FROM quality q WHERE q.image_id = image.id) OR EXISTS "
        "(SELECT 1 FROM quality q WHERE q.image_id = image.id AND q.checker_version != ?)) "
        "ORDER BY image.id"
    )
    return [r[0] for r in lib.conn.execute(sql, [*params, CHECKER_VERSION])]


def verdict_counts(lib: Library, flt: ImageFilter | None = None) -> list[QualityCount]:
    """How many images got each verdict on each check."""
    where, params = (flt or ImageFilter()).where()
    rows = lib.conn.execute(
        "SELECT q.check_name, q.verdict, count(*) FROM quality q JOIN image ON image.id = "
        f"q.image_id WHERE {where} GROUP BY q.check_name, q.verdict",
        params,
    ).fetchall()
    return [QualityCount(c, v, int(n)) for c, v, n in rows]


def image_ids(lib: Library, flt: ImageFilter | None = None) -> list[str]:
    where, params = (flt or ImageFilter()).where()
    return [
        r[0] for r in lib.conn.execute(f"SELECT id FROM image WHERE {where} ORDER BY id", params)
    ]


def flatten(counts: Iterable[QualityCount]) -> dict[str, dict[str, int]]:
    """check -> {pass: n, warn: n, fail: n}."""
    table: dict[str, dict[str, int]] = {}
    for c in counts:
        table.setdefault(c.check, {"pass": 0, "warn": 0, "fail": 0})[c.verdict] = c.n
    return table
