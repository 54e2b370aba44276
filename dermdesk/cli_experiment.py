"""`dermdesk experiment`: plan and run a study, list, show and export its tables.

    dermdesk experiment run gap|imbalance --profile smoke|cpu|full [--seeds N] [--arch A]
        [--size S]
    dermdesk experiment list / show N / export N --format md|csv|json [--out FILE]
    dermdesk experiment resume N

Every run of an experiment is a job (the Jobs panel shows them; Ctrl-C here cancels the
one running with a checkpoint, and `experiment resume` continues). Planning is torch-free;
the runs train in spawned job workers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dermdesk.library import LibraryError

STUDIES = ("gap", "imbalance")
PROFILE_NAMES = ("smoke", "cpu", "full")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a recorded study (gap: dermoscopic -> clinical; imbalance: MAE and "
        "distillation vs a CNN) and show its tables",
    )
    ex = p.add_subparsers(dest="experiment_command", metavar="ACTION", required=True)
    run = ex.add_parser("run", help="plan a study's runs and run them as jobs")
    run.add_argument("study", choices=STUDIES)
    run.add_argument("--profile", choices=PROFILE_NAMES, default="cpu")
    run.add_argument("--seeds", type=int, help="seeds (default: the profile's)")
    run.add_argument("--arch", help="architecture (default: the profile's)")
    run.add_argument("--size", type=int, help="input size in pixels (default: the profile's)")
    run.add_argument("--name", help="a name for the experiment")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one recipe value of the profile (e.g. mae_epochs=100); recorded with it",
    )
    run.add_argument(
        "--from",
        dest="backbone",
        help="a registered MAE backbone the from-scratch runs start from (id or name)",
    )
    run.add_argument(
        "--allow-overlap",
        action="store_true",
        help="accept a backbone pretrained on some evaluation images (the tables say so)",
    )
    run.add_argument("--queue", action="store_true", help="only queue the runs (the app runs them)")
    ex.add_parser("list", help="experiments, newest first")
    show = ex.add_parser("show", help="an experiment's tables")
    show.add_argument("experiment", type=int)
    resume = ex.add_parser("resume", help="run an experiment's unfinished runs")
    resume.add_argument("experiment", type=int)
    export = ex.add_parser("export", help="an experiment's tables as md, csv or json")
    export.add_argument("experiment", type=int)
    export.add_argument("--format", choices=("md", "csv", "json"), default="md")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")


def cmd_experiment(args: argparse.Namespace) -> int:
    action = args.experiment_command
    if action == "run":
        return _run(args)
    if action == "resume":
        return _resume(args)
    from dermdesk.cli import open_for_reading, print_table
    from dermdesk.library import experiment_store as es

    with open_for_reading(args) as lib:
        if action == "list":
            print_table(
                ["id", "name", "study", "profile", "runs", "done", "created"],
                [
                    [
                        r["id"],
                        r["name"],
                        r["study"],
                        r["profile"],
                        r["runs"],
                        r["done"] or 0,
                        r["created_at"][:16],
                    ]
                    for r in es.experiments(lib)
                ],
            )
            return 0
        exp = es.experiment(lib, args.experiment)
        runs = es.runs(lib, args.experiment, with_split=True)
    text = render(exp, runs, args.format if action == "export" else "md")
    if action == "export" and args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def render(exp: dict[str, Any], runs: list[dict[str, Any]], fmt: str) -> str:
    from dermdesk.ml import experiment_report as rep

    imbalance = exp.get("study") == "imbalance"
    tables: Any = rep.imbalance_tables(runs) if imbalance else rep.gap_tables(runs)
    if fmt == "csv":
        return rep.imbalance_csv(tables) if imbalance else rep.csv_rows(tables)
    if fmt == "json":
        data = {
            "experiment": exp,
            "tables": tables.to_json(),
            "runs": [
                {k: v for k, v in r.items() if k != "split"} | {"images": _sizes(r)} for r in runs
            ],
        }
        return json.dumps(data, indent=2, default=str) + "\n"
    note = rep.profile_note(exp, runs)
    to_md = rep.imbalance_markdown if imbalance else rep.markdown
    return to_md(f"Experiment {exp['id']}: {exp['name']}", tables, note)


def _sizes(run: dict[str, Any]) -> dict[str, int]:
    return {k: len(v) for k, v in (run.get("split") or {}).items()}


def _run(args: argparse.Namespace) -> int:
    from dermdesk.cli import open_library
    from dermdesk.cli_ml import _runner
    from dermdesk.library import experiment_store as es
    from dermdesk.ml.gap_study import plan_gap
    from dermdesk.ml.imbalance_study import plan_imbalance

    planner = plan_imbalance if args.study == "imbalance" else plan_gap
    with open_library(args, create=False) as lib:
        plan = planner(
            lib,
            args.profile,
            seeds=args.seeds,
            arch=args.arch,
            size=args.size,
            name=args.name,
            overrides=recipe_overrides(args.set),
        )
        _check_arch(plan.params["recipe"]["arch"])
        if args.backbone:
            from dermdesk.ml.gap_study import with_backbone

            if args.study != "gap":
                raise LibraryError(
                    "--from applies to the gap study (the imbalance study pretrains its own "
                    "backbones on each seed's training images)"
                )

            plan = with_backbone(lib, plan, args.backbone, allow_overlap=args.allow_overlap)
        exp_id = es.create_experiment(lib, plan)
    runner = _runner(args)
    for run in plan.runs:
        job_id = runner.submit("experiment.run", {"run_id": run.id, "experiment_id": exp_id})
        es.set_run_job(runner.lib, int(run.id or 0), job_id)
    print(f"experiment {exp_id}: {len(plan.runs)} runs queued ({plan.name})")
    if args.queue:
        runner.lib.close()
        return 0
    return _follow_runs(runner, args, exp_id)


def recipe_overrides(pairs: list[str]) -> dict[str, str]:
    """``["mae_epochs=100"]`` -> ``{"mae_epochs": "100"}`` (typed and checked by the plan)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise LibraryError(f"bad --set {pair!r}: use KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _check_arch(arch: str) -> None:
    from dermdesk.ml.config import ARCH_NAMES

    if arch not in ARCH_NAMES:
        raise LibraryError(f"unknown architecture {arch!r}; known: {', '.join(ARCH_NAMES)}")


def _resume(args: argparse.Namespace) -> int:
    from dermdesk.cli_ml import _runner
    from dermdesk.library import experiment_store as es

    runner = _runner(args)
    pending = es.pending_runs(runner.lib, args.experiment)
    if not pending:  # nothing to run: say so, and show what it found
        print(f"experiment {args.experiment}: every run is done")
        runs = es.runs(runner.lib, args.experiment, with_split=True)
        exp = es.experiment(runner.lib, args.experiment)
        runner.close()
        sys.stdout.write("\n" + render(exp, runs, "md"))
        return 0
    for run in pending:
        job = runner.job(run["job_id"]) if run["job_id"] else None
        if job is not None and job["status"] in ("failed", "cancelled"):
            runner.resume(run["job_id"])
        elif job is None:
            job_id = runner.submit(
                "experiment.run", {"run_id": run["id"], "experiment_id": args.experiment}
            )
            es.set_run_job(runner.lib, run["id"], job_id)
    print(f"experiment {args.experiment}: {len(pending)} runs to finish")
    return _follow_runs(runner, args, args.experiment)


def _follow_runs(runner: Any, args: argparse.Namespace, exp_id: int) -> int:
    """Run the queue in the foreground, one line per finished run, then the tables."""
    from dermdesk.cli_ml import _follow
    from dermdesk.library import experiment_store as es

    status = 0
    for run in es.pending_runs(runner.lib, exp_id):
        if run["job_id"] is None:
            continue
        job = runner.job(run["job_id"])
        if job["status"] in ("queued", "running"):
            code = _follow(runner, run["job_id"], close=False)
            status = max(status, 0 if code == 130 else code)
            if code == 130 or runner.job(run["job_id"])["status"] == "cancelled":
                print(f"experiment {exp_id} stopped; continue it with: ", end="")
                print(f"dermdesk experiment resume {exp_id}")
                runner.close()
                return 130 if code == 130 else 1
    runs = es.runs(runner.lib, exp_id, with_split=True)
    exp = es.experiment(runner.lib, exp_id)
    runner.close()
    sys.stdout.write("\n" + render(exp, runs, "md"))
    return status


COMMANDS = {"experiment": cmd_experiment}
