"""Rows that other parts of dermdesk will write (quality checks, models, predictions, jobs).

Until the quality checker (issue 3) and the job runner / model registry
(issue 5) land, GUI tests put such rows in with plain SQL, exactly in the
library's schema, to see that the GUI shows them.
"""

from __future__ import annotations

import json
from typing import Any

from dermdesk.library import Library
from dermdesk.library.library import now


def add_quality(
    lib: Library, image_id: str, check: str, verdict: str, reason: str, score: float = 1.0
) -> None:
    lib.conn.execute(
        "INSERT OR REPLACE INTO quality (image_id, check_name, score, verdict, reason, "
        "checker_version, "
        "created_at) VALUES (?, ?, ?, ?, ?, 'test-1', ?)",
        (image_id, check, score, verdict, reason, now()),
    )


def add_model(
    lib: Library,
    model_id: str,
    *,
    status: str = "candidate",
    parents: list[str] | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    lib.conn.execute(
        "INSERT INTO model (id, name, kind, architecture, parents, training_set, metrics, status, "
        "created_at) "
        "VALUES (?, ?, 'classifier', 'vit_tiny', ?, ?, ?, ?, ?)",
        (
            model_id,
            f"model {model_id}",
            json.dumps(parents or []),
            json.dumps({"image_ids": ["a", "b", "c"]}),
            json.dumps(metrics or {}),
            status,
            now(),
        ),
    )


def add_prediction(
    lib: Library, image_id: str, model_id: str, probabilities: dict[str, float]
) -> None:
    top = max(probabilities, key=probabilities.__getitem__)
    lib.conn.execute(
        "INSERT INTO prediction (image_id, model_id, probabilities, top, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (image_id, model_id, json.dumps(probabilities), top, now()),
    )


def add_job(
    lib: Library, kind: str, status: str, progress: float = 0.0, log: str = "", **extra: Any
) -> int:
    started = extra.pop("started_at", now())
    cursor = lib.conn.execute(
        "INSERT INTO job (kind, status, progress, log, created_at, started_at, result, model_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            kind,
            status,
            progress,
            log,
            now(),
            started,
            json.dumps(extra.get("result")) if extra.get("result") else None,
            extra.get("model_id"),
        ),
    )
    return int(cursor.lastrowid or 0)
