"""Reading what meta-domains need and storing an assignment (schema version 13).

The clustering itself is :mod:`dermdesk.ml.meta_domains` (numpy); this module gives it
every image's modality, source, device and stored quality scores, and writes its
result in one transaction: ``image.meta_domain`` / ``meta_domain_version`` per image
(an audit entry for each image whose domain changed), and the ``meta_domain`` rows that
describe the version's domains. Images without quality findings are left unassigned.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from dermdesk.library.db import LibraryError
from dermdesk.library.query import ImageFilter, device_name

if TYPE_CHECKING:
    from dermdesk.library.library import Library
    from dermdesk.ml.meta_domains import Assignment, DomainItem


def domain_items(lib: Library, flt: ImageFilter | None = None) -> list[DomainItem]:
    """What the clustering reads of every (real) image the filter picks that has been
    checked; synthetic images never shape a domain."""
    from dermdesk.ml.meta_domains import DomainItem

    flt = ImageFilter(**{**vars(flt or ImageFilter()), "synthetic": False})
    where, params = flt.where()
    scores: dict[str, dict[str, float | None]] = defaultdict(dict)
    for row in lib.query(
        f"SELECT q.image_id, q.check_name, q.score FROM quality q JOIN image "
        f"ON image.id = q.image_id WHERE {where}",
        params,
    ):
        scores[row["image_id"]][row["check_name"]] = row["score"]
    rows = lib.query(
        f"SELECT id, modality, dataset, device_make, device_model FROM image WHERE {where} "
        "ORDER BY id",
        params,
    )
    return [
        DomainItem(
            image_id=r["id"],
            modality=r["modality"] or "other",
            dataset=r["dataset"],
            device=device_name(r["device_make"], r["device_model"]) or "unknown",
            scores=scores[r["id"]],
        )
        for r in rows
        if r["id"] in scores
    ]


def save_assignment(lib: Library, assignment: Assignment) -> int:
    """Store every image's domain and the version's domain rows; returns how many images
    changed domain. Images the assignment does not name keep what they had."""
    if not assignment.by_image:
        raise LibraryError("no checked images to assign meta-domains to (run `dermdesk check`)")
    lib.require_images(assignment.by_image)
    changed = 0
    with lib.transaction() as txn:
        conn = txn.conn
        current = {
            image_id: (domain, version)
            for image_id, domain, version in conn.execute(
                "SELECT id, meta_domain, meta_domain_version FROM image"
            )
        }
        conn.execute("DELETE FROM meta_domain WHERE version = ?", (assignment.version,))
        conn.executemany(
            "INSERT INTO meta_domain (version, name, modality, n, description, centre, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    assignment.version,
                    d.name,
                    d.modality,
                    d.n,
                    d.description,
                    json.dumps(d.centre, sort_keys=True),
                    txn.at,
                )
                for d in assignment.domains
            ],
        )
        for image_id, domain in assignment.by_image.items():
            before = current.get(image_id)
            if before == (domain, assignment.version):
                continue
            conn.execute(
                "UPDATE image SET meta_domain = ?, meta_domain_version = ? WHERE id = ?",
                (domain, assignment.version, image_id),
            )
            txn.record(
                "image.meta_domain",
                "image",
                image_id,
                {"meta_domain": before[0], "version": before[1]} if before and before[0] else None,
                {"meta_domain": domain, "version": assignment.version},
            )
            changed += 1
    return changed


def domain_rows(lib: Library) -> list[dict[str, Any]]:
    """The domains images are in now, with their description (from the version that
    assigned them) and the number of images in each; unassigned images as one row."""
    rows = lib.query(
        "SELECT image.meta_domain AS name, image.meta_domain_version AS version, "
        "count(*) AS n, d.description, d.modality FROM image LEFT JOIN meta_domain d "
        "ON d.version = image.meta_domain_version AND d.name = image.meta_domain "
        "GROUP BY image.meta_domain, image.meta_domain_version ORDER BY image.meta_domain"
    )
    out = []
    for r in rows:
        if r["name"] is None:
            out.append({"name": "unassigned", "version": None, "n": r["n"], "description": ""})
        else:
            out.append(dict(r))
    return out


def domain_names(lib: Library) -> list[str]:
    """The meta-domains images are in now (for filters and completion)."""
    return [
        r["meta_domain"]
        for r in lib.query(
            "SELECT DISTINCT meta_domain FROM image WHERE meta_domain IS NOT NULL "
            "ORDER BY meta_domain"
        )
    ]
