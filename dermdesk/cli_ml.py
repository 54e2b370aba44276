"""``dermdesk train``, ``jobs``, ``models`` and ``predict``: the model side of the CLI.

Kept apart from :mod:`dermdesk.cli` (which registers these commands) so the
core CLI stays short. Nothing here imports torch: training runs in the job
runner's spawned worker; prediction and the promotion rule use ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from dermdesk.library import LibraryError

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
FINETUNE_OPTIONS = (
    # (flag, params key, type, help)
    ("--arch", "arch", str, "vit_tiny (default), vit_small, vit_base, resnet10t, vit_test"),
    ("--img-size", "img_size", int, "input size in pixels (default 224)"),
    ("--epochs", "epochs", int, "maximum epochs (default 30)"),
    ("--max-steps", "max_steps", int, "maximum optimiser steps"),
    ("--batch-size", "batch_size", int, "images per optimiser step (default 32)"),
    ("--micro-batch", "micro_batch", int, "images per forward pass (accumulation; default 16)"),
    ("--lr", "lr", float, "peak learning rate (default 5e-4)"),
    ("--patience", "patience", int, "evaluations without improvement before stopping (5)"),
    ("--eval-every", "eval_every", int, "optimiser steps between evaluations (default: epoch)"),
    ("--seed", "seed", int, "training seed"),
    ("--split-seed", "split_seed", int, "seed of the patient-grouped split"),
    ("--split", "split", str, "a stored split's name (dermdesk curate split) to train on"),
    ("--balance", "balance", str, "class balancing: sampler (default), loss, none"),
    ("--augment", "augment", str, "augmentation: full (default), light, none"),
    ("--max-images", "max_images", int, "train on a seeded subset of this many images"),
    ("--min-class-images", "min_class_images", int, "minimum images for a class (10)"),
    ("--threads", "threads", int, "CPU threads (default: all cores)"),
    ("--compute", "device", str, "where to train: auto (a CUDA GPU when present), cpu, cuda"),
    ("--precision", "precision", str, "auto (bf16 autocast on a GPU), bf16 or fp32"),
    ("--devices", "devices", int, "processes/GPUs; >1 runs DDP under torchrun"),
    ("--name", "name", str, "name of the registered model"),
    ("--boot", "n_boot", int, "bootstrap resamples for confidence intervals (500)"),
    (
        "--tone-groups",
        "tone_groups",
        str,
        "skin-type groups of the report: rated (default) or rated_or_estimated",
    ),
)


PRETRAIN_OPTIONS = (
    ("--arch", "arch", str, "the ViT: vit_tiny (default), vit_small, vit_base, vit_tiny_8"),
    ("--img-size", "img_size", int, "input size in pixels (default 224)"),
    ("--mask-ratio", "mask_ratio", float, "share of patches hidden (default 0.75)"),
    ("--decoder-dim", "decoder_dim", int, "decoder width (default 256)"),
    ("--decoder-depth", "decoder_depth", int, "decoder blocks (default 4)"),
    ("--epochs", "epochs", int, "epochs (default 100)"),
    ("--max-steps", "max_steps", int, "maximum optimiser steps"),
    ("--batch-size", "batch_size", int, "images per optimiser step (default 128)"),
    ("--micro-batch", "micro_batch", int, "images per forward pass (default 64)"),
    ("--lr", "lr", float, "peak learning rate (default 1e-3)"),
    ("--eval-every", "eval_every", int, "optimiser steps between previews and probes"),
    ("--seed", "seed", int, "training seed (images, masks, augmentation)"),
    ("--augment", "augment", str, "augmentation: light (default), full, none"),
    ("--max-images", "max_images", int, "pretrain on a seeded subset of this many images"),
    ("--threads", "threads", int, "CPU threads (default: all cores)"),
    ("--compute", "device", str, "where to train: auto (a CUDA GPU when present), cpu, cuda"),
    ("--precision", "precision", str, "auto (bf16 autocast on a GPU), bf16 or fp32"),
    ("--name", "name", str, "name of the registered backbone"),
)
DISTILL_OPTIONS = (
    ("--arch", "arch", str, "the student: vit_tiny (default), vit_tiny_8, deit_tiny_8, ..."),
    ("--temperature", "temperature", float, "softening temperature T (default 4)"),
    ("--alpha", "alpha", float, "weight of the teacher's term; 1 - alpha on labels (0.5)"),
)

ADAPT_OPTIONS = (
    ("--stage", "stage", int, "1: contrastive training on both modalities; 2: guided tuning"),
    ("--contrast-weight", "contrast_weight", float, "stage 1: weight of the contrastive term"),
    ("--lwf-weight", "lwf_weight", float, "stage 2: weight of keeping the start's outputs (1)"),
    ("--sp-weight", "sp_weight", float, "stage 2: weight of L2-SP to the start (0.01)"),
)
# Cross-validation makes its own folds.
CROSSVAL_OPTIONS = tuple(o for o in FINETUNE_OPTIONS if o[0] not in ("--split", "--name"))
# A student trains on its teacher's split; its architecture is DISTILL_OPTIONS' --arch.
STUDENT_OPTIONS = tuple(
    o for o in FINETUNE_OPTIONS if o[0] not in ("--split", "--split-seed", "--arch")
)


def _metavar(flag: str) -> str:
    return flag[2:].upper().replace("-", "_")  # --img-size IMG_SIZE, not OPT_IMG_SIZE


def add_parsers(sub: Any, add_filters: Any) -> None:
    """Add the model-side subcommands to the main parser's subparsers."""
    train = sub.add_parser("train", help="train models (runs as a background job)")
    train_sub = train.add_subparsers(dest="train_command", metavar="KIND", required=True)

    def kind(
        name: str,
        text: str,
        options: tuple[tuple[str, str, Any, str], ...],
        *,
        start: str | None = None,
        classes: bool = True,
        quantize: bool = True,
    ) -> Any:
        """A train KIND's parser: filters, --from (``start``: its help), the options
        (``--flag`` -> params key ``opt_key``), --classes, --no-quantize and --queue."""
        p = train_sub.add_parser(name, help=text)
        add_filters(p)
        if start:
            p.add_argument("--from", dest="init", default="scratch", help=start)
        for flag, key, typ, help_text in options:
            p.add_argument(
                flag, dest=f"opt_{key}", type=typ, metavar=_metavar(flag), help=help_text
            )
        if classes:
            p.add_argument(
                "--classes", help="diagnosis codes to learn (default: all with enough images)"
            )
        if quantize:
            p.add_argument("--no-quantize", action="store_true", help="skip the int8 copy")
        p.add_argument("--queue", action="store_true", help="only queue it (the app runs it)")
        return p

    kind(
        "finetune",
        "fine-tune a classifier on the library's labels",
        FINETUNE_OPTIONS,
        start="start from: scratch (default), active, a model id or name, or a weights file",
    )
    kind(
        "pretrain",
        "MAE self-supervised pretraining of a ViT on library images (a backbone)",
        PRETRAIN_OPTIONS,
        classes=False,
        quantize=False,
    )
    p = kind(
        "distill",
        "distil a registered classifier (the teacher) into a small student",
        DISTILL_OPTIONS + STUDENT_OPTIONS,
        start="the student's start: scratch (default), a backbone or model id, or a weights file",
        classes=False,
    )
    p.add_argument("--teacher", required=True, help="the teacher: a classifier's id or name")
    p.add_argument(
        "--distill-token",
        action="store_true",
        help="DeiT's distillation token learns the teacher (a DeiT student: --arch deit_tiny_8)",
    )
    p = kind(
        "adapt",
        "dermoscopic -> clinical adaptation: stage 1 (contrastive, both modalities), "
        "then stage 2 (guided tuning on clinical images, --from the stage-1 model)",
        ADAPT_OPTIONS + FINETUNE_OPTIONS,
        start="start from: scratch (stage 1), or the model to tune (stage 2: an id or name)",
    )
    p.add_argument(
        "--fallback",
        action="store_true",
        help="where adaptation cannot run (one modality; stage 2 without --from), "
        "fine-tune plainly instead of refusing",
    )
    p = kind(
        "crossval",
        "out-of-fold probabilities of every labelled image (k patient-grouped folds), "
        "for label review",
        CROSSVAL_OPTIONS,
        quantize=False,
    )
    p.add_argument("--folds", dest="opt_folds", type=int, metavar="K", help="folds (default 5)")

    jobs = sub.add_parser("jobs", help="list, show, cancel, resume background jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    p = jobs_sub.add_parser("list", help="recent jobs")
    p.add_argument("--limit", type=int, default=30)
    p = jobs_sub.add_parser("show", help="one job: parameters, progress, log, result, error")
    p.add_argument("job", type=int)
    p.add_argument("--json", action="store_true")
    p = jobs_sub.add_parser("cancel", help="cancel a queued or running job (it checkpoints)")
    p.add_argument("job", type=int)
    p = jobs_sub.add_parser("resume", help="continue a cancelled or failed job")
    p.add_argument("job", type=int)
    p.add_argument("--queue", action="store_true", help="only queue it (the app runs it)")
    jobs_sub.add_parser("run", help="run queued jobs in this terminal until none are left")

    models = sub.add_parser("models", help="registered models and promotion")
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    models_sub.add_parser("list", help="registered models")
    p = models_sub.add_parser("show", help="a model: parents, data, metrics per group")
    p.add_argument("model", help="id, id prefix, name or 'active'")
    p.add_argument("--json", action="store_true")
    p = models_sub.add_parser("promote", help="make a model active if the rule allows it")
    p.add_argument("model")
    p.add_argument("--check", action="store_true", help="show the rule's verdict only")
    p.add_argument("--force", action="store_true", help="promote even if the rule says no")
    p.add_argument("--min-group", type=int, default=30, help="judge groups of at least N images")
    p.add_argument("--margin", type=float, default=0.0, help="tolerated loss per group")
    p = models_sub.add_parser(
        "evaluate",
        help="score a model on a library query (e.g. images just imported) and keep the "
        "report per skin type, device and domain with the model",
    )
    p.add_argument("model", help="id, id prefix, name or 'active'")
    add_filters(p)
    p.add_argument("--name", help="words for the query (default: the filters)")
    p.add_argument(
        "--tones",
        choices=("rated", "rated_or_estimated"),
        default="rated",
        help="group skin types by ratings only (default) or fall back to estimates",
    )
    p.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples (intervals)")
    p.add_argument("--min-group", type=int, default=10, help="report groups of at least N")
    p.add_argument(
        "--include-seen",
        action="store_true",
        help="also score the images the model (or a model it was made from) trained or was "
        "validated on; left out by default, as they flatter it",
    )
    p.add_argument("--queue", action="store_true", help="queue the job and return")

    p = sub.add_parser("predict", help="predict library images with a model (ONNX Runtime)")
    add_filters(p)
    p.add_argument("--model", default="active", help="id, name or 'active' (default)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--int8", action="store_true", help="use the int8 model file")


# -- train -----------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from dermdesk.cli import filter_from_args

    kind = args.train_command
    flt = filter_from_args(args)
    params: dict[str, Any] = {
        "filter": {k: v for k, v in vars(flt).items() if v not in (None, [], "")}
    }
    options = {
        "finetune": FINETUNE_OPTIONS,
        "pretrain": PRETRAIN_OPTIONS,
        "distill": DISTILL_OPTIONS + STUDENT_OPTIONS,
        "adapt": ADAPT_OPTIONS + FINETUNE_OPTIONS,
        "crossval": (("--folds", "folds", int, ""), *CROSSVAL_OPTIONS),
    }[kind]
    for _, key, _, _ in options:
        value = getattr(args, f"opt_{key}", None)
        if value is not None:
            params[key] = value
    if kind not in ("pretrain", "crossval"):
        params["init"] = args.init
    if kind == "distill":
        params["teacher"] = args.teacher
    if getattr(args, "classes", None):
        params["classes"] = [c.strip().upper() for c in args.classes.split(",") if c.strip()]
    if getattr(args, "no_quantize", False):
        params["quantize"] = False
    if getattr(args, "fallback", False):
        params["fallback"] = True
    if getattr(args, "distill_token", False):
        params["distill_token"] = True
    _check_params(kind, params)
    runner = _runner(args)
    _check_against_library(runner.lib, kind, params)
    job_id = runner.submit(kind, params)
    print(f"job {job_id}: {kind} queued")
    if args.queue:
        runner.lib.close()
        return 0
    return _follow(runner, job_id)


def _check_params(kind: str, params: dict[str, Any]) -> None:
    """Refuse bad options here, before a worker starts, with the same one-line errors."""
    from dermdesk.ml.config import (
        AdaptConfig,
        CrossvalConfig,
        DistillConfig,
        FinetuneConfig,
        PretrainConfig,
    )

    config: dict[str, Any] = {
        "finetune": FinetuneConfig,
        "pretrain": PretrainConfig,
        "distill": DistillConfig,
        "adapt": AdaptConfig,
        "crossval": CrossvalConfig,
    }
    try:
        config[kind].from_params(params)
    except (TypeError, ValueError) as exc:
        raise LibraryError(str(exc)) from None
    init = str(params.get("init", "scratch"))
    if init not in ("scratch", "active") and (
        "/" in init or os.sep in init or init.endswith(WEIGHT_SUFFIXES)
    ):
        path = Path(init).expanduser().resolve()
        if not path.is_file():
            raise LibraryError(f"{init}: no such file")
        check_weights_file(path)
        params["init"] = str(path)  # the job may resume from another working folder


def _check_against_library(lib: Any, kind: str, params: dict[str, Any]) -> None:
    """What only the library can tell, checked before the job is queued: the start model's
    architecture, the teacher, the stored split, that the filter matches images."""
    from dermdesk.library import ImageFilter
    from dermdesk.library.model_store import get_model

    if params.get("split"):
        from dermdesk.library.split_store import split_info

        split_info(lib, params["split"])  # a name that does not exist: one line, now
    arch = params.get("arch") or "vit_tiny"
    init = str(params.get("init", "scratch"))
    if init != "scratch" and not Path(init).is_file():
        parent = get_model(lib, init)
        if parent["architecture"] != arch:
            raise LibraryError(
                f"model {parent['id']} is a {parent['architecture']} {parent['kind']}; this "
                f"job trains {arch} (give --arch {parent['architecture']})"
            )
    if kind == "distill":
        teacher = get_model(lib, params["teacher"])
        if teacher["kind"] != "classifier":
            raise LibraryError(f"teacher {teacher['id']} is a {teacher['kind']}, not a classifier")
        asked, own = params.get("classes"), teacher["training_set"].get("classes")
        if asked and asked != own:
            raise LibraryError(
                f"teacher {teacher['id']} knows {', '.join(own)}; the student was asked for "
                f"{', '.join(asked)} (a student learns its teacher's classes)"
            )
    if kind == "adapt" and params.get("stage") == 2 and init != "scratch":
        start = get_model(lib, init)
        if start["kind"] != "classifier":
            raise LibraryError(f"stage 2 tunes a classifier; {start['id']} is a {start['kind']}")
    labelled = {} if kind == "pretrain" else {"labelled": True}
    flt = ImageFilter(**{**params["filter"], "excluded": False, **labelled})
    if lib.count(flt) == 0:
        raise LibraryError(f"the {kind} filter matches no images")


def check_weights_file(path: Path) -> None:
    """A one-line error for a weights file that cannot be a checkpoint (torch-free: a
    damaged zip archive, or neither a zip nor a pickle nor a safetensors file)."""
    import zipfile

    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix == ".safetensors":
        size = int.from_bytes(head, "little") if len(head) == 8 else 0
        if not 0 < size < path.stat().st_size:
            raise LibraryError(f"{path.name}: damaged safetensors file (bad header)")
        return
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError) as exc:
            raise LibraryError(f"{path.name}: damaged checkpoint ({exc})") from None
        if bad is not None:
            raise LibraryError(f"{path.name}: damaged checkpoint (entry {bad} fails its CRC)")
    elif head[:1] != b"\x80":
        raise LibraryError(f"{path.name}: not a PyTorch checkpoint (unrecognised file content)")


def _runner(args: argparse.Namespace) -> Any:
    from dermdesk.jobs.runner import JobRunner
    from dermdesk.paths import resolve_library_dir

    return JobRunner(resolve_library_dir(args.library))


def _follow(runner: Any, job_id: int, *, close: bool = True) -> int:
    """Run/watch a job in the foreground; Ctrl-C cancels it (with a checkpoint)."""
    line = _ProgressLine()
    interrupted = False
    try:
        try:
            row = runner.wait(job_id, on_event=line)
        except KeyboardInterrupt:
            interrupted = True
            line.end()
            print(f"cancelling job {job_id} (saving a checkpoint)...", file=sys.stderr)
            runner.cancel(job_id)
            row = runner.wait(job_id, on_event=line)
    finally:
        line.end()
        if close:
            runner.close()
    code = _report(row)
    return 130 if interrupted else code


def _report(row: dict[str, Any]) -> int:
    status = row["status"]
    print(f"job {row['id']} {status}: {row['message'] or ''}")
    if status == "failed":
        error = (row["error"] or "").strip().splitlines()
        print(
            f"dermdesk: job {row['id']} failed: {error[0] if error else 'no reason given'}",
            file=sys.stderr,
        )
        print(f"(its log, with the details: dermdesk jobs show {row['id']})", file=sys.stderr)
        return 1
    if status == "cancelled":
        print(f"resume it with: dermdesk jobs resume {row['id']}")
        return 0
    if row.get("model_id"):
        print(f"model {row['model_id']} registered; see: dermdesk models show {row['model_id']}")
    return 0


class _ProgressLine:
    """Log lines as they come; a progress line on stderr, at most ~5 updates a second."""

    def __init__(self) -> None:
        self.last = 0.0
        self.open = False

    def __call__(self, event: Any) -> None:
        if event.type == "log":
            self.end()
            print(event.line, flush=True)
        elif event.type in ("progress", "started") and event.message and sys.stderr.isatty():
            # A progress line redraws itself with \r: only on a terminal, never in a log.
            t = time.monotonic()
            if t - self.last >= 0.2:
                self.last = t
                pct = f"{100 * (event.progress or 0):5.1f}%"
                print(f"\r{pct} {event.message[:100]:<100}", end="", file=sys.stderr, flush=True)
                self.open = True

    def end(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


# -- jobs ------------------------------------------------------------------------------------


def cmd_jobs(args: argparse.Namespace) -> int:
    action = args.jobs_command
    if action in ("list", "show"):  # reads: no runner, so read-only media work too
        from dermdesk.cli import open_for_reading
        from dermdesk.library import job_store

        with open_for_reading(args) as lib:
            if action == "list":
                _print_jobs(lib.jobs(args.limit))
            else:
                _print_job(job_store.get_job(lib, args.job), as_json=args.json)
        return 0
    runner = _runner(args)
    if action == "run":
        return _run_queue(runner)
    try:
        if action == "list":
            _print_jobs(runner.jobs(args.limit))
        elif action == "show":
            _print_job(runner.job(args.job), as_json=args.json)
        elif action == "cancel":
            outcome = runner.cancel(args.job)
            print(
                {
                    "cancelled": f"job {args.job} cancelled",
                    "requested": f"job {args.job}: cancel requested; it stops at its next check",
                }.get(outcome, f"job {args.job} is already {outcome}")
            )
        elif action == "resume":
            runner.resume(args.job)
            print(f"job {args.job} queued to resume from its checkpoint")
            if not args.queue:
                return _follow(runner, args.job)
    finally:
        if not runner.busy:
            runner.lib.close()
    return 0


def _run_queue(runner: Any) -> int:
    from dermdesk.library import job_store

    status = 0
    while True:
        queued = job_store.jobs_with_status(runner.lib, "queued")
        if not queued:
            runner.close()
            return status
        status = max(status, _follow_keep_open(runner, int(queued[0]["id"])))


def _follow_keep_open(runner: Any, job_id: int) -> int:
    line = _ProgressLine()
    row = runner.wait(job_id, on_event=line)
    line.end()
    return _report(row)


def _print_jobs(rows: list[dict[str, Any]]) -> None:
    from dermdesk.cli import print_table

    table = [
        [
            r["id"],
            r["kind"],
            r["status"],
            f"{100 * (r['progress'] or 0):.0f}%",
            (r["created_at"] or "")[:19],
            r["model_id"] or "",
            textwrap.shorten(r["message"] or "", 70, placeholder=" …"),
        ]
        for r in rows
    ]
    print_table(["id", "kind", "status", "progress", "created", "model", "message"], table)


def _print_job(row: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(row, indent=2, default=str))
        return
    for key in (
        "id",
        "kind",
        "status",
        "progress",
        "message",
        "model_id",
        "pid",
        "created_at",
        "started_at",
        "finished_at",
    ):
        print(f"{key:>12}: {row[key] if row[key] is not None else ''}")
    print(f"{'params':>12}: {json.dumps(row['params'], sort_keys=True)}")
    if row.get("result"):
        print(f"{'result':>12}: {json.dumps(row['result'], sort_keys=True)}")
    print("log:")
    print("  " + "\n  ".join((row["log"] or "").rstrip().splitlines()))
    if row.get("error"):
        print("error:")
        print("  " + "\n  ".join(row["error"].rstrip().splitlines()))


# -- models ----------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from dermdesk.cli import open_for_reading, open_library, print_table
    from dermdesk.library import model_store

    opener = (
        open_for_reading if args.models_command in ("list", "show", "evaluate") else open_library
    )
    with opener(args) as lib:
        if args.models_command == "list":
            rows = model_store.list_models(lib)
            print_table(
                ["id", "name", "arch", "status", "created", "test bal.acc", "test n", "parents"],
                [
                    [
                        r["id"],
                        r["name"],
                        r["architecture"],
                        r["status"],
                        r["created_at"][:19],
                        "" if r["test_bacc"] is None else f"{r['test_bacc']:.3f}",
                        r["test_n"] or "",
                        ", ".join(json.loads(r["parents"] or "[]")),
                    ]
                    for r in rows
                ],
            )
            return 0
        if args.models_command == "show":
            model = model_store.get_model(lib, args.model)
            evaluations = model_store.evaluations(lib, model["id"])
            if args.json:
                print(json.dumps({**model, "evaluations": evaluations}, indent=2, default=str))
                return 0
            _print_model(model)
            _print_evaluations(evaluations)
            _print_check(lib, model["id"], show_only=True)
            return 0
        if args.models_command == "evaluate":
            return _evaluate(lib, args)
        return _promote(lib, args)


def _evaluate(lib: Any, args: argparse.Namespace) -> int:
    """Queue an ``evaluate`` job (checked here first, so a bad query fails at once)."""
    from dermdesk.cli import filter_from_args
    from dermdesk.inference.evaluate_job import check_scorable, query_rows, split_seen
    from dermdesk.inference.predictor import ModelLoadError, OnnxClassifier, load_registered

    flt = filter_from_args(args)
    try:
        model, path = load_registered(lib, args.model)
        classes = OnnxClassifier(path).classes
    except ModelLoadError as exc:
        raise LibraryError(str(exc)) from None
    what = args.name or flt.describe()
    rows = query_rows(lib, flt)
    check_scorable(rows, classes, what)
    if not args.include_seen:
        check_scorable(split_seen(lib, model, rows, what)[0], classes, what)
    params = {
        "model": model["id"],
        "filter": flt.as_params(),
        "tones": args.tones,
        "n_boot": args.n_boot,
        "min_group": args.min_group,
        "include_seen": args.include_seen,
    }
    if args.name:
        params["name"] = args.name
    lib.close()
    runner = _runner(args)
    job_id = runner.submit("evaluate", params)
    print(f"job {job_id}: evaluate {model['id']} on {args.name or flt.describe()} queued")
    if args.queue:
        runner.lib.close()
        return 0
    code = _follow(runner, job_id, close=False)
    if code == 0:
        from dermdesk.library import model_store

        stored = model_store.evaluations(runner.lib, model["id"])
        if stored:
            _print_groups(stored[0]["report"])
    runner.close()
    return code


def _promote(lib: Any, args: argparse.Namespace) -> int:
    from dermdesk.ml.promotion import check_promotion, promote

    kwargs = {"min_group": args.min_group, "margin": args.margin}
    if args.check:
        check = check_promotion(lib, args.model, **kwargs)
    else:
        check = promote(lib, args.model, force=args.force, **kwargs)
    print("\n".join(check.lines()))
    if args.check:
        return 0 if check.passed else 1
    if check.passed or args.force:
        print(f"model {check.candidate_id} is now active" + ("" if check.passed else " (forced)"))
        return 0
    print("not promoted (use --force to override, recorded in the audit log)")
    return 1


def _print_check(lib: Any, model_id: str, *, show_only: bool) -> None:
    from dermdesk.ml.promotion import check_promotion

    try:
        check = check_promotion(lib, model_id)
    except LibraryError as exc:
        print(f"\npromotion: cannot check ({exc})")
        return
    print("\npromotion check against the active model:")
    print("  " + "\n  ".join(check.lines()))


def _print_model(model: dict[str, Any]) -> None:
    from dermdesk.ml.metrics import headline

    ts, params, m = model["training_set"] or {}, model["params"] or {}, model["metrics"] or {}
    print(f"{model['id']}  {model['name']}  [{model['status']}]")
    print(f"  {model['kind']}, architecture {model['architecture']}, file {model['file']}")
    if model["kind"] == "backbone":
        _print_backbone(model)
        return
    print(
        f"  parents: {', '.join(model['parents'] or []) or 'none'} ({params.get('init_from', '')})"
    )
    print(f"  classes: {', '.join(ts.get('classes', []))}")
    for name, part in (ts.get("summary") or {}).items():
        print(f"  {name}: {part['images']} images, {part['groups']} patients/lesions")
    print(f"  split: {ts.get('method', '')}, seed {ts.get('seed')}")
    training = m.get("training", {})
    print(
        f"  training: {training.get('steps')} steps, {training.get('epochs')} epochs, "
        f"{training.get('stop_reason')}, {training.get('seconds')} s"
    )
    for split in ("val", "test"):
        report = m.get(split) or {}
        if report.get("overall", {}).get("n"):
            print(f"  {split}: {headline(report['overall'])}")
            _print_groups(report)
    onnx = m.get("onnx") or {}
    if onnx.get("parity_max_abs_logit_diff") is not None:
        print(f"  ONNX parity: max |logit diff| {onnx['parity_max_abs_logit_diff']:.2e}")
        q = onnx.get("int8")
        if q:
            print(
                f"  int8: validation balanced accuracy {q['val_balanced_accuracy_fp32']:.3f} -> "
                f"{q['val_balanced_accuracy_int8']:.3f} "
                f"({q['balanced_accuracy_change_points']:+.1f} points)"
            )


def _print_backbone(model: dict[str, Any]) -> None:
    """A pretrained encoder: what it saw, how far it trained, its probe over time."""
    ts, params, m = model["training_set"], model["params"], model["metrics"]
    training = m.get("training", {})
    print(
        f"  pretrained on {len(ts.get('image_ids', []))} images "
        f"({ts.get('synthetic_in_training', 0)} synthetic): {ts.get('method', '')}"
    )
    print(
        f"  MAE at {params.get('img_size')} px, mask ratio {params.get('mask_ratio')}, decoder "
        f"{params.get('decoder_depth')} x {params.get('decoder_dim')}"
    )
    rate = training.get("images_per_second")
    print(
        f"  training: {training.get('steps')} steps, {training.get('epochs')} epochs, "
        f"{training.get('seconds')} s" + (f", {rate} images/s" if rate else "")
    )
    probe = ts.get("probe") or {}
    if probe.get("classes"):
        print(
            f"  linear probe on {', '.join(probe['classes'])} "
            f"({len(probe['split']['train'])} / {len(probe['split']['val'])} images):"
        )
    for e in training.get("evaluations", []):
        score = e.get("probe_balanced_accuracy")
        print(
            f"    step {e['step']}: reconstruction loss {e['val_recon_loss']:.4f}"
            + (f", probe balanced accuracy {score:.3f}" if score is not None else "")
        )
    print(f"  start a classifier from it: dermdesk train finetune --from {model['id']}")


def _print_evaluations(evaluations: list[dict[str, Any]]) -> None:
    from dermdesk.library.browse import seen_note
    from dermdesk.ml.metrics import headline

    if not evaluations:
        return
    print("\nevaluations on library queries (models evaluate), newest first:")
    for ev in evaluations:
        report = ev["report"]
        overall = report.get("overall") or {}
        print(f"  #{ev['id']} {ev['created_at'][:16]} by {ev['created_by']}: {ev['name']}")
        if overall.get("n"):
            print(f"    {headline(overall)}")
        if seen_note(report):
            print(f"    {seen_note(report)}")
        _print_groups(report)


def _print_groups(report: dict[str, Any]) -> None:
    for grouping in ("fitzpatrick", "device", "modality", "domain", "meta_domain"):
        for group, r in (report.get(grouping) or {}).items():
            if "balanced_accuracy" in r:
                ba = r["balanced_accuracy"]
                ci = ba["ci"]
                interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
                value = "-" if ba["value"] is None else f"{ba['value']:.3f}"
                print(f"    {grouping} {group}: n={r['n']} balanced accuracy {value}{interval}")
            else:
                print(f"    {grouping} {group}: n={r['n']} (too few to report)")


# -- predict ---------------------------------------------------------------------------------


def cmd_predict(args: argparse.Namespace) -> int:
    from dermdesk.cli import filter_from_args, open_library
    from dermdesk.inference.predictor import ModelLoadError, predict_library

    flt = filter_from_args(args)
    with open_library(args, create=False) as lib:
        try:
            report = predict_library(
                lib,
                args.model,
                flt,
                batch_size=args.batch_size,
                int8=args.int8,
                progress=_count_line,
            )
        except ModelLoadError as exc:
            raise LibraryError(str(exc)) from None
    print(file=sys.stderr)
    for image_id, reason in report.failed:
        print(f"image {image_id[:12]}: skipped: {reason}")
    print(f"predicted {report.predicted} images, {len(report.failed)} unreadable")
    return 1 if report.failed else 0


def _count_line(done: int, total: int) -> None:
    print(f"\r{done}/{total} images", end="", file=sys.stderr, flush=True)


COMMANDS = {"train": cmd_train, "jobs": cmd_jobs, "models": cmd_models, "predict": cmd_predict}
