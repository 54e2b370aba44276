"""The model registry and stored predictions: reads and writes over a :class:`Library`.

A registered model is a row in ``model`` plus a folder ``models/<id>/`` in the
library (``model.pt`` weights, ``model.onnx`` for prediction, optionally
``model.int8.onnx``, and ``card.json``). The files are written before the row
that names them. Status is ``candidate`` when registered, ``active`` once
promoted (at most one active model per kind), ``retired`` when replaced.
Every write is one ``BEGIN IMMEDIATE`` transaction with an audit entry.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermdesk.library.audit import AuditWriter
from dermdesk.library.db import LibraryError
from dermdesk.library.library import Library

MODELS_DIR = "models"
STATUSES = ("candidate", "active", "retired")
JSON_COLUMNS = ("parents", "training_set", "params", "metrics")


@dataclass
class ModelRecord:
    """Everything registered about one trained model."""

    id: str
    name: str
    kind: str  # e.g. 'classifier'
    architecture: str
    file: str  # ONNX file, relative to the library folder
    sha256: str
    parents: list[str] = field(default_factory=list)
    training_set: dict[str, Any] = field(default_factory=dict)  # image ids per split, seed
    params: dict[str, Any] = field(default_factory=dict)  # hyper-parameters
    metrics: dict[str, Any] = field(default_factory=dict)  # overall and per group

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ModelRecord:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def new_model_id() -> str:
    return f"M-{secrets.token_hex(5)}"


def model_dir(lib_root: Path, model_id: str) -> Path:
    return lib_root / MODELS_DIR / model_id


# -- writes ----------------------------------------------------------------------------------


def insert_model(conn: sqlite3.Connection, audit: AuditWriter, rec: ModelRecord) -> None:
    """Insert a model row inside the caller's transaction (used by job completion too)."""
    if conn.execute("SELECT 1 FROM model WHERE id = ?", (rec.id,)).fetchone():
        raise LibraryError(f"model {rec.id} is already registered")
    missing = [
        p
        for p in rec.parents
        if not conn.execute("SELECT 1 FROM model WHERE id = ?", (p,)).fetchone()
    ]
    if missing:
        raise LibraryError(f"parent model {missing[0]} is not registered")
    conn.execute(
        "INSERT INTO model (id, name, kind, architecture, file, sha256, parents, training_set, "
        "params, metrics, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rec.id,
            rec.name,
            rec.kind,
            rec.architecture,
            rec.file,
            rec.sha256,
            json.dumps(rec.parents),
            json.dumps(rec.training_set, sort_keys=True),
            json.dumps(rec.params, sort_keys=True),
            json.dumps(rec.metrics, sort_keys=True),
            "candidate",
            audit.at,
        ),
    )
    audit.record(
        "model.register",
        "model",
        rec.id,
        None,
        {
            "name": rec.name,
            "kind": rec.kind,
            "architecture": rec.architecture,
            "file": rec.file,
            "sha256": rec.sha256,
            "parents": rec.parents,
        },
    )


def register_model(lib: Library, rec: ModelRecord) -> str:
    """Register a trained model as a candidate; its files must already be in place."""
    if not (lib.root / rec.file).is_file():
        raise LibraryError(f"model file {rec.file} is missing; write files before registering")
    with lib.transaction() as txn:
        conn = txn.conn
        audit = txn.audit
        insert_model(conn, audit, rec)
    return rec.id


def set_active(lib: Library, model_id: str, *, reason: Mapping[str, Any] | None = None) -> None:
    """Make a model the active one of its kind; the previous active one is retired."""
    model = get_model(lib, model_id)
    with lib.transaction() as txn:
        conn = txn.conn
        audit = txn.audit
        previous = conn.execute(
            "SELECT id FROM model WHERE kind = ? AND status = 'active' AND id != ?",
            (model["kind"], model["id"]),
        ).fetchall()
        for (old,) in previous:
            conn.execute("UPDATE model SET status = 'retired' WHERE id = ?", (old,))
            audit.record("model.retire", "model", old, {"status": "active"}, {"status": "retired"})
        conn.execute("UPDATE model SET status = 'active' WHERE id = ?", (model["id"],))
        audit.record(
            "model.promote",
            "model",
            model["id"],
            {"status": model["status"]},
            {"status": "active", "rule": dict(reason or {})},
        )


def store_predictions(
    lib: Library, model_id: str, rows: Sequence[tuple[str, Mapping[str, float]]]
) -> int:
    """Store (image id, {class: probability}) rows for a model, replacing earlier ones."""
    if not rows:
        return 0
    with lib.transaction() as txn:
        conn, audit, at = txn.conn, txn.audit, txn.at
        conn.executemany(
            "INSERT OR REPLACE INTO prediction "
            "(image_id, model_id, probabilities, top, created_at) VALUES (?, ?, ?, ?, ?)",
            [
                (image_id, model_id, json.dumps(probs), max(probs, key=probs.__getitem__), at)
                for image_id, probs in rows
            ],
        )
        # One audit entry per batch: predictions are derived data, reproducible from the model.
        audit.record("prediction.store", "model", model_id, None, {"images": len(rows)})
    return len(rows)


def store_evaluation(lib: Library, payload: Mapping[str, Any]) -> None:
    """Keep a model's evaluation on a library query (``models evaluate``) with the model:
    the query, the images scored and the report; audited (the runner's write op)."""
    model = get_model(lib, str(payload["model_id"]))
    with lib.transaction() as txn:
        eval_id = txn.insert(
            "model_evaluation",
            {
                "model_id": model["id"],
                "name": str(payload["name"]),
                "query": json.dumps(payload.get("query") or {}, sort_keys=True),
                "image_ids": json.dumps(list(payload["image_ids"])),
                "report": json.dumps(payload["report"], sort_keys=True),
                "job_id": payload.get("job_id"),
                "created_by": txn.actor,
                "created_at": txn.at,
            },
        )
        overall = payload["report"].get("overall", {})
        txn.record(
            "model.evaluate",
            "model",
            model["id"],
            None,
            {
                "evaluation": eval_id,
                "query": payload["name"],
                "images": overall.get("n"),
                "balanced_accuracy": (overall.get("balanced_accuracy") or {}).get("value"),
            },
        )


def evaluations(lib: Library, model_id: str) -> list[dict[str, Any]]:
    """A model's stored evaluations, newest first; ``query`` and ``report`` decoded
    (the image id list stays out: ``n`` is in the report)."""
    rows = lib.query(
        "SELECT id, model_id, name, query, report, job_id, created_by, created_at "
        "FROM model_evaluation WHERE model_id = ? ORDER BY id DESC",
        [model_id],
    )
    for row in rows:
        row["query"] = json.loads(row["query"])
        row["report"] = json.loads(row["report"])
    return rows


# -- reads -----------------------------------------------------------------------------------


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for col in JSON_COLUMNS:
        if row.get(col):
            row[col] = json.loads(row[col])
    return row


def get_model(lib: Library, id_or_prefix: str) -> dict[str, Any]:
    """One model by id, unique id prefix, ``active`` or its name; JSON columns decoded."""
    key = id_or_prefix.strip()
    if key == "active":
        found = active_model(lib)
        if found is None:
            raise LibraryError("there is no active model; promote one first")
        return found
    rows = list(lib.query("SELECT * FROM model WHERE id = ?", [key]))
    if not rows:
        rows = list(lib.query("SELECT * FROM model WHERE id LIKE ? LIMIT 2", [key + "%"]))
    if not rows:
        rows = list(lib.query("SELECT * FROM model WHERE name = ? LIMIT 2", [key]))
    if not rows:
        raise LibraryError(f"no model {id_or_prefix!r}")
    if len(rows) > 1:
        raise LibraryError(f"model {id_or_prefix!r} is ambiguous")
    return _decode(rows[0])


def active_model(lib: Library, kind: str = "classifier") -> dict[str, Any] | None:
    rows = list(
        lib.query("SELECT * FROM model WHERE kind = ? AND status = 'active' LIMIT 1", [kind])
    )
    return _decode(rows[0]) if rows else None


def seen_images(lib: Library, model: Mapping[str, Any]) -> dict[str, str]:
    """Every image a model learnt from or was chosen on, with the model that saw it: its own
    and each ancestor's (``parents``, recursively) training and validation images, and a
    backbone's self-supervised ones. Scoring a model on these would flatter it; its test
    images are not in the map."""
    seen: dict[str, str] = {}
    todo, done = [dict(model)], set()
    while todo:
        m = todo.pop()
        if m["id"] in done:
            continue
        done.add(m["id"])
        ts = m.get("training_set") or {}
        split = ts.get("split") or {}
        for image_id in [*split.get("train", []), *split.get("val", []), *ts.get("image_ids", [])]:
            seen.setdefault(str(image_id), str(m["id"]))
        for parent in m.get("parents") or []:
            if parent not in done:
                todo.append(get_model(lib, str(parent)))
    return seen


def list_models(lib: Library) -> list[dict[str, Any]]:
    """All models, newest first, without the (large) JSON columns decoded."""
    return list(
        lib.query(
            "SELECT id, name, kind, architecture, file, status, created_at, parents, "
            "json_extract(metrics, '$.test.overall.balanced_accuracy.value') AS test_bacc, "
            "json_extract(metrics, '$.test.overall.n') AS test_n "
            "FROM model ORDER BY created_at DESC, id"
        )
    )


def predictions_for(
    lib: Library, model_id: str, image_ids: Iterable[str] | None = None
) -> dict[str, dict[str, float]]:
    """image id -> probabilities stored for a model (all images, or the given ones)."""
    if image_ids is None:
        rows = lib.conn.execute(
            "SELECT image_id, probabilities FROM prediction WHERE model_id = ?", (model_id,)
        ).fetchall()
    else:
        ids = list(image_ids)
        rows = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows += lib.conn.execute(
                "SELECT image_id, probabilities FROM prediction WHERE model_id = ? "
                f"AND image_id IN ({', '.join('?' * len(chunk))})",
                (model_id, *chunk),
            ).fetchall()
    return {image_id: json.loads(probs) for image_id, probs in rows}


def model_file_hashes(model: dict[str, Any]) -> dict[str, str]:
    """The SHA-256 recorded for each of a registered model's ONNX files."""
    hashes = {Path(model["file"]).name: model["sha256"]} if model.get("sha256") else {}
    metrics = model.get("metrics")
    if isinstance(metrics, str):
        metrics = json.loads(metrics or "{}")
    int8 = ((metrics or {}).get("onnx") or {}).get("int8") or {}
    if isinstance(int8, dict) and int8.get("sha256"):
        hashes["model.int8.onnx"] = int8["sha256"]
    return hashes
