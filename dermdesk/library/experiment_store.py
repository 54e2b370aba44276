"""Experiments and their runs in the library (migration 8): plan, record results, read.

Planning writes the experiment and every run (scheme, seed, recipe, the exact image ids
of its training set and of each evaluation set) in one transaction; a run's metrics are
written when its job ends, by the job runner, in one transaction too: a killed or
cancelled run leaves a planned row (resumable), never half a result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dermdesk.library.db import LibraryError
from dermdesk.library.library import Library


@dataclass
class RunPlan:
    """One training run of an experiment, before it runs."""

    name: str
    seed: int
    params: dict[str, Any]
    split: dict[str, list[str]]  # "train" and each evaluation set -> image ids
    job_id: int | None = None
    id: int | None = None


@dataclass
class ExperimentPlan:
    name: str
    study: str
    profile: str
    params: dict[str, Any]
    code_version: str
    runs: list[RunPlan] = field(default_factory=list)


def create_experiment(lib: Library, plan: ExperimentPlan) -> int:
    """Write an experiment and all its runs (status planned); returns its id."""
    with lib.transaction() as txn:
        cur = txn.conn.execute(
            "INSERT INTO experiment (name, study, profile, params, code_version, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                plan.name,
                plan.study,
                plan.profile,
                json.dumps(plan.params, sort_keys=True),
                plan.code_version,
                txn.at,
            ),
        )
        exp_id = int(cur.lastrowid or 0)
        for run in plan.runs:
            cur = txn.conn.execute(
                "INSERT INTO experiment_run (experiment_id, name, seed, params, split, status) "
                "VALUES (?, ?, ?, ?, ?, 'planned')",
                (exp_id, run.name, run.seed, json.dumps(run.params), json.dumps(run.split)),
            )
            run.id = int(cur.lastrowid or 0)
        txn.record(
            "experiment.create",
            "experiment",
            str(exp_id),
            None,
            {
                "name": plan.name,
                "study": plan.study,
                "profile": plan.profile,
                "runs": len(plan.runs),
            },
        )
    return exp_id


def set_run_job(lib: Library, run_id: int, job_id: int) -> None:
    with lib.transaction() as txn:
        txn.conn.execute("UPDATE experiment_run SET job_id = ? WHERE id = ?", (job_id, run_id))


def store_run_result(lib: Library, payload: Mapping[str, Any]) -> None:
    """A run's metrics and wall time (the runner calls this for the run's job)."""
    run_id = int(payload["run_id"])
    with lib.transaction() as txn:
        row = txn.conn.execute(
            "SELECT experiment_id, name, seed FROM experiment_run WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise LibraryError(f"no experiment run {run_id}")
        txn.conn.execute(
            "UPDATE experiment_run SET metrics = ?, seconds = ?, status = 'done', "
            "finished_at = ? WHERE id = ?",
            (
                json.dumps(payload["metrics"], sort_keys=True),
                payload.get("seconds"),
                txn.at,
                run_id,
            ),
        )
        txn.record(
            "experiment.run_result",
            "experiment",
            str(row[0]),
            None,
            {"run": run_id, "scheme": row[1], "seed": row[2]},
        )


def experiments(lib: Library) -> list[dict[str, Any]]:
    """Experiments, newest first, with how many runs are done."""
    return lib.query(
        "SELECT e.*, count(r.id) AS runs, sum(r.status = 'done') AS done FROM experiment e "
        "LEFT JOIN experiment_run r ON r.experiment_id = e.id GROUP BY e.id ORDER BY e.id DESC"
    )


def experiment(lib: Library, exp_id: int) -> dict[str, Any]:
    rows = lib.query("SELECT * FROM experiment WHERE id = ?", [exp_id])
    if not rows:
        raise LibraryError(f"no experiment {exp_id}")
    row = rows[0]
    row["params"] = json.loads(row["params"])
    return row


def runs(lib: Library, exp_id: int, *, with_split: bool = False) -> list[dict[str, Any]]:
    """An experiment's runs in plan order, JSON decoded (the split only when asked)."""
    out = lib.query("SELECT * FROM experiment_run WHERE experiment_id = ? ORDER BY id", [exp_id])
    for row in out:
        row["params"] = json.loads(row["params"])
        row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else None
        row["split"] = json.loads(row["split"]) if with_split else None
    return out


def run_of(lib: Library, run_id: int) -> dict[str, Any]:
    rows = lib.query("SELECT * FROM experiment_run WHERE id = ?", [run_id])
    if not rows:
        raise LibraryError(f"no experiment run {run_id}")
    row = rows[0]
    row["params"] = json.loads(row["params"])
    row["split"] = json.loads(row["split"])
    return row


def pending_runs(lib: Library, exp_id: int) -> Sequence[dict[str, Any]]:
    return [r for r in runs(lib, exp_id) if r["status"] != "done"]
