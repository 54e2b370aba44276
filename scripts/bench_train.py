"""Benchmark: fine-tuning speed (images/s) of the student ViT, CPU and (if present) GPU.

    python scripts/bench_train.py [--library DIR] [--steps 12] [--sizes 224,112]

Runs the app's own training loop (real PAD-UFES-20 images, full augmentation,
class-balanced sampling) for a few optimiser steps and reports steady-state
images/s (after warm-up steps that decode the images), next to the bare
model step on random tensors, so the data pipeline's share is visible. On a
CUDA GPU it also runs bf16 autocast and fp32 in the same run; without one it
says so and skips those rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.library import Library
from dermdesk.ml.config import FinetuneConfig
from dermdesk.ml.data import ImageDataset
from dermdesk.ml.finetune import FinetuneTask
from dermdesk.ml.loop import NullControl, autocast_for, train
from dermdesk.ml.models import build_model

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class StepClock(NullControl):
    """Records the time of every optimiser step the loop reports."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        if message and message.startswith("step"):
            self.times.append(time.perf_counter())

    def log(self, line: str) -> None:
        pass


class WarmTask(FinetuneTask):
    """The fine-tuning task with every training image decoded before the clock starts.

    That is the state of epoch 2 onwards of a real run (decoded views are kept
    in memory); the validation set is cut to one image because evaluating is
    not training.
    """

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        if hasattr(self, "_train"):  # a later round: images are decoded already
            return
        super().prepare(saved_state)
        self.samples["val"] = self.samples["val"][:1]
        self._train = super().train_set()
        for i in range(len(self._train)):
            self._train.base(i)

    def train_set(self) -> ImageDataset:
        return self._train


def library(args: argparse.Namespace) -> Path:
    if args.library:
        return Path(args.library)
    root = Path(tempfile.mkdtemp()) / "library"
    with Library.open(root, actor="bench") as lib:
        run_import(lib, plan_path(args.data / "pad_ufes_20").items, progress=None)
    return root


def warm_task(
    root: Path, size: int, args: argparse.Namespace, device: str, precision: str
) -> tuple[WarmTask, FinetuneConfig, StepClock]:
    cfg = FinetuneConfig.from_params(
        {
            "arch": "vit_tiny",
            "img_size": size,
            "epochs": 1000,
            "max_steps": args.warmup + args.steps,
            "batch_size": args.batch,
            "micro_batch": args.batch,
            "eval_every": 10_000,
            "device": device,
            "precision": precision,
            "threads": args.threads,
            "filter": {"dataset": ["pad_ufes_20"]},
        }
    )
    clock = StepClock()
    return WarmTask(root, cfg, clock), cfg, clock


def loop_rate(task: WarmTask, cfg: FinetuneConfig, clock: StepClock, warmup: int) -> float:
    """Steady-state images/s of the real fine-tuning loop (one run of it)."""
    clock.times = []
    train(task, cfg.loop, clock, Path(tempfile.mkdtemp()) / "ckpt.pt")
    steady = clock.times[warmup:]
    return cfg.loop.batch_size * (len(steady) - 1) / (steady[-1] - steady[0])


def model_rate(size: int, args: argparse.Namespace, device: torch.device, precision: str) -> float:
    """Images/s of forward + backward + AdamW on random tensors (no data pipeline)."""
    torch.manual_seed(0)
    model = build_model("vit_tiny", 6, size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 3, size, size, device=device)
    y = torch.randint(0, 6, (args.batch,), device=device)
    autocast = autocast_for(device, precision)
    times = []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    return args.batch / statistics.median(times)


def measure(
    root: Path, size: int, args: argparse.Namespace, device: str, precision: str
) -> tuple[list[float], list[float]]:
    """Interleaved rounds of (bare model step, full loop) images/s."""
    task, cfg, clock = warm_task(root, size, args, device, precision)
    bare, full = [], []
    for _ in range(args.rounds):
        bare.append(model_rate(size, args, torch.device(device), precision))
        full.append(loop_rate(task, cfg, clock, args.warmup))
    return bare, full


def row(device: str, precision: str, size: int, bare: list[float], full: list[float]) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):7.1f} ({min(values):5.1f}-{max(values):5.1f})"

    return f"{device:<6} {precision:<10} {size:>5} {cell(bare):>24} {cell(full):>24}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="library with PAD-UFES-20 (default: import into temp)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", default="224,112")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="default: all cores")
    args = parser.parse_args()
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    root = library(args)
    print(
        f"vit_tiny fine-tuning, batch {args.batch}, {args.steps} steps after {args.warmup} "
        f"warm-up, {args.rounds} interleaved rounds (median, min-max); CPU: {threads} threads"
    )
    print(
        f"{'device':<6} {'precision':<10} {'size':>5} {'model step img/s':>24} "
        f"{'full loop img/s':>24}"
    )
    for size in sizes:
        print(row("cpu", "fp32", size, *measure(root, size, args, "cpu", "fp32")), flush=True)
    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: GPU bf16 vs fp32 rows skipped")
        return
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    for size in sizes:
        for precision in ("fp32", "bf16"):
            bare, full = measure(root, size, args, "cuda", precision)
            print(row("cuda", precision, size, bare, full), flush=True)


if __name__ == "__main__":
    main()
