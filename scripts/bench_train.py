"""Benchmark: is the input pipeline ever the bottleneck of training? Side by side, one run.

    python scripts/bench_train.py [--arch resnet10t] [--size 112] [--batch 64] [--rounds 3]

On real PAD-UFES-20 and HAM10000 images of a throw-away library, images/s of:

(a) the old decode path: decode every original and augment it in numpy/Pillow, per
    epoch (what fine-tuning did before the cache);
(b) the cache loader alone: slices of the memory-mapped cache, padded into a batch and
    augmented as tensors on the training device (the data side of (d));
(c) a training step alone: forward, backward and AdamW on random tensors already on
    the device (the most the model can do);
(d) the full job's steady state: the app's own loop and fine-tuning task over the cache.

Goal (issue 15): (d) within 10 % of (c) on the CPU; on a GPU, within 20 % at ViT-S
112 px with bf16. Rounds alternate (c) and (d) so drift in machine load falls on both;
the table gives medians.

    python scripts/bench_train.py --mae [--arch vit_base] [--size 224] [--batch 256]

MAE pretraining instead (issue 17): (c) an MAE step on random tensors in fp32 eager,
bf16 and bf16 + torch.compile (the last two on a GPU only), against (d) the pretraining
job's steady state reading real images through the cache (its own precision: bf16 on a
GPU). Goal on a GPU: (d) >= 4,500 img/s for ViT-B/16 at 224 px.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermdesk.exchange.datasets import plan_path
from dermdesk.exchange.importer import run_import
from dermdesk.inference.preprocess import PreprocessSpec
from dermdesk.library import ImageFilter, Library
from dermdesk.ml.cached_data import CachedTrainViews, cache_for, train_inputs
from dermdesk.ml.config import FinetuneConfig
from dermdesk.ml.data import ImageDataset, collect_samples
from dermdesk.ml.finetune import FinetuneTask
from dermdesk.ml.loop import DistEnv, NullControl, autocast_for, pick_device, train
from dermdesk.ml.models import build_model
from dermdesk.ml.tensor_augment import TensorAugment

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class StepClock(NullControl):
    """The time of every optimiser step the loop reports."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        if message and message.startswith("step"):
            self.times.append(time.perf_counter())

    def log(self, line: str) -> None:
        pass


def make_library(folder: Path, data: Path) -> Path:
    with Library.open(folder, actor="bench") as lib:
        items = plan_path(data / "pad_ufes_20").items[:300] + plan_path(data / "ham10000").items
        run_import(lib, items, checks=False)
    return folder


def samples(folder: Path) -> list[Any]:
    with Library.open(folder, readonly=True) as lib:
        return collect_samples(lib, ImageFilter(labelled=True), ["MEL", "NEV", "BCC", "ACK", "SEK"])


def old_decode_rate(folder: Path, size: int, n: int) -> float:
    """(a): decode + numpy augmentation of every image, nothing kept between epochs."""
    data = ImageDataset(samples(folder)[:n], PreprocessSpec(size=size), train=True, cache_budget=0)
    start = time.perf_counter()
    for i in range(len(data)):
        data.item(i, 1)
    return len(data) / (time.perf_counter() - start)


def cache_loader_rate(folder: Path, size: int, batch: int, device: torch.device) -> float:
    """(b): cached slices -> padded uint8 batch -> tensor augmentation on ``device``."""
    spec = PreprocessSpec(size=size)
    every = samples(folder)
    cache = cache_for(folder, spec, every)
    views = CachedTrainViews(cache, every, seed=0, augment=TensorAugment())
    batches = [list(range(k, min(k + batch, len(views)))) for k in range(0, len(views), batch)]
    train_inputs(views.collate_fn([views.item(i, 0) for i in batches[0]]), device, size)
    start = time.perf_counter()
    for idx in batches:
        train_inputs(views.collate_fn([views.item(i, 1) for i in idx]), device, size)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(views) / (time.perf_counter() - start)


def step_rate(arch: str, size: int, batch: int, device: torch.device, steps: int) -> float:
    """(c): the model's own speed on random tensors already on the device."""
    model = build_model(arch, 5, size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    autocast = autocast_for(device, "auto")
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 5, (batch,), device=device)
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times[2:])


def job_rate(folder: Path, arch: str, size: int, batch: int, steps: int) -> float:
    """(d): the app's loop and fine-tuning task, steady state (after two warm-up steps)."""
    cfg = FinetuneConfig.from_params(
        {
            "arch": arch,
            "img_size": size,
            "batch_size": batch,
            "micro_batch": batch,
            "max_steps": steps + 2,
            "epochs": 1000,
            "eval_every": 10_000,
            "classes": ["MEL", "NEV", "BCC", "ACK", "SEK"],
        }
    )
    task = FinetuneTask(folder, cfg, NullControl())
    clock = StepClock()
    task.control = clock
    task.evaluate = lambda model, device: {"score": 0.0}  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        train(task, cfg.loop, clock, Path(tmp) / "ckpt.pt")
    gaps = np.diff(clock.times[1 : steps + 2])
    return batch / float(np.median(gaps))


def mae_step_rate(
    arch: str,
    size: int,
    batch: int,
    device: torch.device,
    steps: int,
    precision: str,
    compiled: bool,
) -> float:
    """(c) for MAE: forward, backward and AdamW of the MAE model on random tensors."""
    from dermdesk.ml.mae import MaskedAutoencoder

    model: Any = MaskedAutoencoder(build_model(arch, 0, size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = autocast_for(device, precision)
    forward = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, size, size, device=device)
    times = []
    for _ in range(steps + 3):
        noise = torch.rand(batch, model.n_patches, device=device)
        t0 = time.perf_counter()
        with autocast():
            loss = forward(x, noise)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times[3:])


def mae_job_rate(folder: Path, arch: str, size: int, batch: int, steps: int) -> float:
    """(d) for MAE: the pretraining job's loop and task over the cache, steady state."""
    from dermdesk.ml.config import PretrainConfig
    from dermdesk.ml.pretrain import PretrainTask

    cfg = PretrainConfig.from_params(
        {
            "arch": arch,
            "img_size": size,
            "batch_size": batch,
            "micro_batch": batch,
            "max_steps": steps + 2,
            "epochs": 1000,
            "eval_every": 10_000,
        }
    )
    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        task = PretrainTask(folder, cfg, clock, Path(tmp))
        task.evaluate = lambda model, device: {"score": 0.0}  # type: ignore[method-assign]
        train(task, cfg.loop, clock, Path(tmp) / "ckpt.pt")
    gaps = np.diff(clock.times[1 : steps + 2])
    return batch / float(np.median(gaps))


def mae_main(args: argparse.Namespace, device: torch.device) -> None:
    variants = [("fp32 eager", "fp32", False)]
    if device.type == "cuda":
        variants += [("bf16 eager", "bf16", False), ("bf16 + compile", "bf16", True)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_library(Path(tmp) / "library", args.data)
        rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        jobs = []
        for _ in range(args.rounds):
            for name, precision, compiled in variants:
                rates[name].append(
                    mae_step_rate(
                        args.arch, args.size, args.batch, device, args.steps, precision, compiled
                    )
                )
            jobs.append(mae_job_rate(folder, args.arch, args.size, args.batch, args.steps))
    print(
        f"MAE {args.arch} at {args.size} px, batch {args.batch}, on {device} "
        f"({torch.get_num_threads()} threads); medians of {args.rounds} rounds"
    )
    for name, values in rates.items():
        print(f"(c) MAE step, random tensors, {name:<15}: {statistics.median(values):8.1f} img/s")
    job = statistics.median(jobs)
    print(f"(d) pretraining job over the cache (real images): {job:8.1f} img/s  {jobs}")
    best = max(statistics.median(v) for v in rates.values())
    print(f"(d) / best (c) = {job / best:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mae", action="store_true", help="benchmark MAE pretraining")
    args = parser.parse_args()
    device = pick_device(DistEnv())
    if args.mae:
        mae_main(args, device)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_library(Path(tmp) / "library", args.data)
        old = old_decode_rate(folder, args.size, 200)
        loader = cache_loader_rate(folder, args.size, args.batch, device)
        steps, jobs = [], []
        for _ in range(args.rounds):
            steps.append(step_rate(args.arch, args.size, args.batch, device, args.steps))
            jobs.append(job_rate(folder, args.arch, args.size, args.batch, args.steps))
    step, job = statistics.median(steps), statistics.median(jobs)
    print(
        f"{args.arch} at {args.size} px, batch {args.batch}, on {device} "
        f"({torch.get_num_threads()} threads); medians of {args.rounds} rounds"
    )
    print(f"(a) old decode path (decode + numpy augment) : {old:8.1f} img/s")
    print(f"(b) cache loader alone (slices + tensor aug) : {loader:8.1f} img/s")
    print(f"(c) training step alone, random tensors      : {step:8.1f} img/s  {steps}")
    print(f"(d) full job (loop + task over the cache)    : {job:8.1f} img/s  {jobs}")
    goal = 0.9 if device.type == "cpu" else 0.8
    verdict = "met" if job >= goal * step else "NOT met"
    print(f"(d)/(c) = {job / step:.2f} (goal >= {goal:.2f}: {verdict})")


if __name__ == "__main__":
    main()
