"""Reference classifier on PAD-UFES-20: patient-grouped k-fold cross-validation.

    python scripts/train_reference.py [--library DIR] [--data ../shared/data]
        [--arch vit_tiny] [--img-size 112] [--epochs 20] [--extra ham10000,isic2017,ph2]

Every fold tests on the PAD-UFES-20 images of one fifth of the patients; the
model trains on the other patients' PAD images (15% of those patients held
out for early stopping) plus, by default, the dermoscopic sets (HAM10000,
ISIC 2017, PH2) mapped to PAD's six classes, which never enter validation or
test. It uses the app's own training loop, data pipeline and metrics. Prints
balanced accuracy of the pooled out-of-fold predictions with its bootstrap
95% interval, per fold, per Fitzpatrick group, and the time taken.

Published image-only baselines on PAD-UFES-20 reach about 0.65-0.70 balanced
accuracy with ImageNet-pretrained networks; this app never downloads weights,
so this reference trains from scratch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import ImageFilter, Library
from dermdesk.ml import metrics
from dermdesk.ml.config import FinetuneConfig
from dermdesk.ml.data import collect_samples, subgroups
from dermdesk.ml.finetune import FinetuneTask, predict_torch
from dermdesk.ml.loop import NullControl, train
from dermdesk.ml.splits import grouped_folds, grouped_split, item_from_row

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PAD = "pad_ufes_20"
CLASSES = ["MEL", "NEV", "BCC", "SCC", "ACK", "SEK"]  # PAD-UFES-20's six diagnoses
FOLDERS = {
    PAD: ["pad_ufes_20"],
    "ham10000": ["ham10000", "ham10000_224"],
    "isic2017": ["isic2017"],
    "ph2": ["ph2"],
    "fitzpatrick17k": ["fitzpatrick17k", "fitzpatrick17k_more"],
}


class FoldTask(FinetuneTask):
    """Fine-tuning with a split fixed by the cross-validation instead of drawn."""

    def __init__(
        self, library_dir: Path, cfg: FinetuneConfig, split: dict[str, list[str]], log: Any
    ) -> None:
        super().__init__(library_dir, cfg, log)
        self.fixed_split = split

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        with Library.open(self.library_dir, readonly=True) as lib:
            every = collect_samples(lib, ImageFilter(labelled=True, diagnosis=CLASSES), CLASSES)
        self.classes = CLASSES
        self.split_ids = self.fixed_split
        self.split_summary = {k: {"images": len(v)} for k, v in self.fixed_split.items()}
        members = {k: set(v) for k, v in self.fixed_split.items()}
        self.samples = {k: [s for s in every if s.image_id in ids] for k, ids in members.items()}
        self._init_weights = None


def ensure_library(args: argparse.Namespace) -> Path:
    root = Path(args.library) if args.library else Path(tempfile.mkdtemp()) / "library"
    with Library.open(root, actor="reference") as lib:
        have = {r["dataset"] for r in lib.counts(["dataset"])}
        for name in [PAD, *args.extra]:
            if name in have:
                continue
            for folder in FOLDERS[name]:
                report = run_import(lib, plan_path(args.data / folder).items, progress=None)
                print(f"imported {folder}: {report.summary()}")
    return root


def folds(
    root: Path, k: int, seed: int, extra_sets: list[str]
) -> tuple[dict[str, int], list[str], dict[str, Any]]:
    with Library.open(root, readonly=True) as lib:
        pad = lib.images(ImageFilter(dataset=[PAD], diagnosis=CLASSES), order="id")
        extra_filter = ImageFilter(dataset=extra_sets, diagnosis=CLASSES, synthetic=False)
        extra = [r["id"] for r in lib.images(extra_filter)] if extra_sets else []
    rows = {r["id"]: r for r in pad}
    return grouped_folds([item_from_row(r) for r in pad], k, seed), extra, rows


def run_fold(
    root: Path,
    fold: int,
    assignment: dict[str, int],
    rows: dict[str, Any],
    extra: list[str],
    args: argparse.Namespace,
) -> tuple[np.ndarray, np.ndarray, list]:
    test = sorted(i for i, f in assignment.items() if f == fold)
    rest = [item_from_row(rows[i]) for i, f in assignment.items() if f != fold]
    inner = grouped_split(rest, (0.85, 0.15, 0.0), seed=args.seed + fold)
    split = {
        "train": sorted([i for i, s in inner.items() if s == "train"] + extra),
        "val": sorted(i for i, s in inner.items() if s == "val"),
        "test": test,
    }
    cfg = FinetuneConfig.from_params(
        {
            "arch": args.arch,
            "img_size": args.img_size,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "micro_batch": args.batch_size,
            "lr": args.lr,
            "patience": args.patience,
            "seed": args.seed,
            "threads": args.threads,
            "augment": args.augment,
            "balance": args.balance,
            "quantize": False,
        }
    )
    control = NullControl()
    control.log = lambda line: print(f"  [fold {fold + 1}] {line}", flush=True)  # type: ignore[method-assign]
    task = FoldTask(root, cfg, split, control)
    result, model = train(task, cfg.loop, control, Path(tempfile.mkdtemp()) / "ckpt.pt")
    if result.best_state:
        model.load_state_dict(result.best_state)
    import torch

    y, probs = predict_torch(model.cpu(), task.eval_set("test"), torch.device("cpu"))
    return y, probs, task.samples["test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="library with the datasets (default: a temp one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--run-folds", help="only these folds, e.g. 0,1 (default: all)")
    parser.add_argument("--arch", default="vit_tiny")
    parser.add_argument("--img-size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--augment", default="full")
    parser.add_argument("--balance", default="sampler")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--boot", type=int, default=2000)
    parser.add_argument(
        "--extra",
        default="ham10000,isic2017,ph2",
        help="datasets added to training only ('' for PAD alone)",
    )
    parser.add_argument("--out", type=Path, help="write the full report as JSON here")
    args = parser.parse_args()
    args.extra = [e for e in args.extra.split(",") if e]
    started = time.perf_counter()
    root = ensure_library(args)
    assignment, extra, rows = folds(root, args.folds, args.seed, args.extra)
    chosen = [int(f) for f in args.run_folds.split(",")] if args.run_folds else range(args.folds)
    print(
        f"{len(rows)} PAD-UFES-20 images in {args.folds} patient-grouped folds; "
        f"{len(extra)} extra training images from {', '.join(args.extra) or 'nothing'}"
    )
    ys, ps, samples, per_fold = [], [], [], []
    for fold in chosen:
        t = time.perf_counter()
        y, probs, fold_samples = run_fold(root, fold, assignment, rows, extra, args)
        bacc = metrics.balanced_accuracy(y, probs)
        per_fold.append(bacc)
        print(
            f"fold {fold + 1}: {len(y)} test images, balanced accuracy {bacc:.3f} "
            f"({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
        ys.append(y)
        ps.append(probs)
        samples += fold_samples
    report = metrics.evaluate_groups(
        np.concatenate(ys),
        np.concatenate(ps),
        CLASSES,
        subgroups(samples),
        n_boot=args.boot,
        min_n=10,
    )
    print_summary(report, per_fold, args, time.perf_counter() - started)
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "per_fold": per_fold,
                    "report": report,
                },
                indent=2,
            )
        )


def print_summary(
    report: dict[str, Any], per_fold: list[float | None], args: argparse.Namespace, seconds: float
) -> None:
    overall = report["overall"]
    print()
    print(
        f"reference: {args.arch} at {args.img_size} px from scratch, {args.epochs} epochs max, "
        f"extra training data: {', '.join(args.extra) or 'none'}"
    )
    print(f"pooled out-of-fold: {metrics.headline(overall)}")
    folds_done = [f for f in per_fold if f is not None]
    print(
        f"per fold: {', '.join(f'{f:.3f}' for f in folds_done)} "
        f"(mean {np.mean(folds_done):.3f} +- {np.std(folds_done):.3f})"
    )
    mal = overall.get("malignant")
    if mal:
        sens = mal["sensitivity_at_specificity"]["value"]
        print(
            f"MEL sensitivity at {mal['specificity']:.0%} specificity: "
            f"{'-' if sens is None else f'{sens:.3f}'} (n={mal['n_positive']})"
        )
    for code, c in overall["per_class"].items():
        print(
            f"  {code}: n={c['n']} sensitivity {c['sensitivity'] or 0:.3f} "
            f"specificity {c['specificity'] or 0:.3f}"
        )
    for group, r in report["fitzpatrick"].items():
        if "balanced_accuracy" in r:
            print(f"  Fitzpatrick {group}: {metrics.headline(r)}")
        else:
            print(f"  Fitzpatrick {group}: n={r['n']} (too few)")
    print(f"time: {seconds / 60:.1f} min on {args.threads or 'all'} CPU threads")


if __name__ == "__main__":
    main()
