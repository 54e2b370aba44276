"""The one training loop, shared by every training job.

A job kind supplies a :class:`TrainTask` (model, data, loss, evaluation); the
loop owns everything else: device and precision (bf16 autocast on a CUDA GPU,
fp32 on the CPU with all cores), the optimiser and learning-rate schedule,
gradient accumulation, evaluation and early stopping, checkpoints, progress,
cancel and resume, and the DistributedDataParallel path under torchrun.

A checkpoint is a plain dict (model, optimizer, step, config, best metric,
...) written atomically at every evaluation, every ``checkpoint_every_s`` and
when the job is cancelled, always at an optimiser-step boundary: resuming
replays nothing and skips nothing.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dermdesk.jobs.context import JobCancelled
from dermdesk.ml.checkpoints import CHECKPOINT_FORMAT, load_file, save_atomic
from dermdesk.ml.config import LoopConfig
from dermdesk.ml.data import EpochIndexed, EpochSampler


class Control(Protocol):
    """How the loop reports and learns it must stop (a JobContext satisfies it)."""

    def progress(
        self, fraction: float, message: str | None = None, *, force: bool = False
    ) -> None: ...

    def log(self, line: str) -> None: ...

    def should_stop(self) -> bool: ...


class TrainTask(Protocol):
    """What a job kind gives the loop."""

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        """Collect data; on resume ``saved_state`` is what :meth:`state` returned then."""

    def state(self) -> dict[str, Any]:
        """Plain data saved in checkpoints (e.g. classes and the split)."""
        ...

    def build_model(self) -> nn.Module: ...

    def train_set(self) -> Dataset[Any]: ...

    def train_weights(self) -> np.ndarray | None:
        """Per-sample sampling weights (class balancing), or None for uniform."""
        ...

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Validation metrics; ``score`` (higher is better) drives early stopping."""
        ...


@dataclass
class DistEnv:
    """This process's place in a torchrun launch."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor] | None
    best_score: float | None
    best_step: int
    steps: int
    epochs_done: float
    stop_reason: str
    seconds: float
    images_seen: int
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    micro_done: int = 0  # micro-batches of ``epoch`` already consumed on this rank
    best_score: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    images_seen: int = 0
    seconds: float = 0.0
    pending_eval: bool = False  # cancelled during an evaluation: redo it first on resume
    history: list[dict[str, Any]] = field(default_factory=list)


class NullControl:
    """A Control for scripts: prints log lines, never stops."""

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        pass

    def log(self, line: str) -> None:
        print(line, flush=True)

    def should_stop(self) -> bool:
        return False


def pick_device(dist: DistEnv, choice: str = "auto") -> torch.device:
    """A CUDA GPU when present (one per local rank), else the CPU."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but no CUDA GPU is available")
    if choice != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str) -> Callable[[], AbstractContextManager[Any]]:
    """bf16 autocast on CUDA (when supported and not disabled); fp32 elsewhere."""
    use_bf16 = (
        device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported()
    )
    if use_bf16:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext


def set_threads(cfg: LoopConfig, dist: DistEnv) -> None:
    """Use every core on the CPU (split between ranks when several share the machine)."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    elif not torch.cuda.is_available() or cfg.device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world))


def lr_at(step: int, total: int, cfg: LoopConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_frac`` of the peak."""
    warmup = max(1, int(cfg.warmup_frac * total))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = cfg.lr * cfg.min_lr_frac
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * t))


class Trainer:
    """One run of the loop; :func:`train` is the entry point."""

    def __init__(
        self,
        task: TrainTask,
        cfg: LoopConfig,
        control: Control,
        checkpoint_path: Path,
        dist: DistEnv,
    ) -> None:
        self.task, self.cfg, self.control, self.dist = task, cfg, control, dist
        self.checkpoint_path = checkpoint_path
        self.device = pick_device(dist, cfg.device)
        self.autocast = autocast_for(self.device, cfg.precision)
        self.state = _State()
        self.best_model: dict[str, torch.Tensor] | None = None
        self.last_checkpoint = time.monotonic()
        self.last_eval_step: int | None = None  # the same on every rank (best_score is not)

    # -- set-up --------------------------------------------------------------------------------

    def setup(self, resume: bool) -> None:
        saved = load_file(self.checkpoint_path) if resume else None
        if saved is not None and saved.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.checkpoint_path}: not a training checkpoint of this app")
        self.task.prepare(saved["task"] if saved else None)
        torch.manual_seed(self.cfg.seed)
        self.model = self.task.build_model().to(self.device)
        self.optimizer = torch.optim.AdamW(
            self._param_groups(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        if saved is not None:
            self._restore(saved)
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.ddp_model = DDP(self.model, device_ids=ids)
        self._make_loader()

    def _param_groups(self) -> list[dict[str, Any]]:
        # No weight decay on biases, norms and embeddings (1-d tensors), as usual for ViTs.
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.model.named_parameters():
            flat = p.ndim <= 1 or "pos_embed" in name or "token" in name
            if p.requires_grad:
                (no_decay if flat else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        s = saved["loop"]
        self.state = _State(**s)
        self.best_model = saved.get("best_model") or None
        self.control.log(
            f"resumed at step {self.state.step} (epoch {self.state.epoch + 1}, "
            f"best score {self.state.best_score})"
        )

    def _make_loader(self) -> None:
        self.train_set = self.task.train_set()
        n = len(self.train_set)  # type: ignore[arg-type]
        if n < self.dist.world:
            raise ValueError(f"only {n} training images: too few to train on")
        self.sampler = EpochSampler(
            n,
            seed=self.cfg.seed,
            weights=self.task.train_weights(),
            rank=self.dist.rank,
            world=self.dist.world,
        )
        per_rank = n // self.dist.world
        # A last micro-batch of one image breaks BatchNorm in training mode (a CNN): drop it;
        # the sampler shuffles every epoch, so a different image waits each time.
        drop_last = per_rank % self.micro_batch == 1 and per_rank > 1
        workers = self.cfg.num_workers
        if workers < 0:
            workers = min(4, (os.cpu_count() or 1) - 1) if self.device.type == "cuda" else 0
        self.loader = DataLoader(
            EpochIndexed(self.train_set),
            batch_size=self.micro_batch,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            # a dataset may batch its own way (the cache's padded uint8 batches)
            collate_fn=getattr(self.train_set, "collate_fn", None),
        )
        full = per_rank // self.micro_batch if drop_last else math.ceil(per_rank / self.micro_batch)
        self.micro_per_epoch = max(1, full)
        self.steps_per_epoch = max(1, math.ceil(self.micro_per_epoch / self.accum))
        total = self.steps_per_epoch * self.cfg.epochs
        self.total_steps = min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    @property
    def micro_batch(self) -> int:
        return max(1, min(self.cfg.micro_batch, self.cfg.batch_size // self.dist.world))

    @property
    def accum(self) -> int:
        """Micro-batches per optimiser step on each rank."""
        return max(1, round(self.cfg.batch_size / (self.micro_batch * self.dist.world)))

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        self.control.log(
            f"training on {self.device} ({'bf16' if self.autocast is not nullcontext else 'fp32'})"
            f", {self.dist.world} process(es), {len(self.train_set)} images"  # type: ignore[arg-type]
            f", micro-batch {self.micro_batch} x {self.accum} accumulation x {self.dist.world}"
            f", {self.steps_per_epoch} steps/epoch, up to {self.total_steps} steps"
        )
        started = time.monotonic() - self.state.seconds
        self.model.train()
        stopped = self.state.pending_eval and self._evaluate() == "early_stop"
        while not stopped and self.state.step < self.total_steps:
            stopped = self._epoch(started) == "early_stop"
        outcome = "early_stop" if stopped else "finished"
        if self.last_eval_step != self.state.step:  # e.g. resumed after the last step
            self._evaluate()
        self.state.seconds = time.monotonic() - started
        self._save_checkpoint()
        if self.dist.enabled:
            self._check_replicas()
        return self._result(outcome)

    def _check_replicas(self) -> None:
        """Log whether every rank ended with the same weights (DDP kept them in step)."""
        import torch.distributed as dist

        with torch.no_grad():
            total = sum(p.double().sum() for p in self.model.parameters())
        mine = torch.tensor([float(total)], dtype=torch.float64, device=self._comm_device())
        every = [torch.zeros_like(mine) for _ in range(self.dist.world)]
        dist.all_gather(every, mine)
        spread = float(max(abs(t.item() - mine.item()) for t in every))
        self.control.log(
            f"DDP replicas: weight checksums of {self.dist.world} ranks differ by at most "
            f"{spread:.1e}"
        )

    def _epoch(self, started: float) -> str:
        """Train to the end of the epoch (or of training); returns continue or early_stop."""
        self.sampler.set_epoch(self.state.epoch, self.state.micro_done * self.micro_batch)
        batches = iter(self.loader)
        while self.state.micro_done < self.micro_per_epoch and self.state.step < self.total_steps:
            n_micro = min(self.accum, self.micro_per_epoch - self.state.micro_done)
            loss = self._step(batches, n_micro)
            self.state.seconds = time.monotonic() - started
            self._report(loss)
            if self._eval_due(end_of_epoch=self.state.micro_done >= self.micro_per_epoch):
                if self._evaluate() == "early_stop":
                    return "early_stop"
            elif time.monotonic() - self.last_checkpoint > self.cfg.checkpoint_every_s:
                self._save_checkpoint()
        if self.state.micro_done >= self.micro_per_epoch:
            self.state.epoch += 1
            self.state.micro_done = 0
        return "continue"

    def _step(self, batches: Iterator[Any], n_micro: int) -> float:
        """One optimiser step over ``n_micro`` micro-batches; returns the mean loss."""
        lr = lr_at(self.state.step, self.total_steps, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        images = 0
        for k in range(n_micro):
            if self._stop_requested():
                self._cancel()
            batch = next(batches)
            # Gradients are all-reduced only on the last micro-batch of the step.
            sync = k == n_micro - 1 or not self.dist.enabled
            ctx = nullcontext() if sync else self.ddp_model.no_sync()  # type: ignore[operator]
            with ctx:
                with self.autocast():
                    loss = self.task.loss(self.ddp_model, batch, self.device) / n_micro
                loss.backward()
            total += loss.detach()
            images += len(batch[0]) * self.dist.world
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.micro_done += n_micro
        self.state.images_seen += images
        # .item() waits for the GPU; once per optimiser step is cheap enough.
        return float(total.item())

    def _stop_requested(self) -> bool:
        stop = self.dist.is_main and self.control.should_stop()
        if not self.dist.enabled:
            return stop
        import torch.distributed as dist

        flag = torch.tensor([1.0 if stop else 0.0], device=self._comm_device())
        dist.broadcast(flag, 0)  # rank 0 decides, so every rank stops at the same micro-batch
        return bool(flag.item())

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _cancel(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)  # drop the unfinished step's gradients
        self._save_checkpoint()
        self.control.log(f"cancelled at step {self.state.step}; checkpoint saved")
        raise JobCancelled(f"cancelled at step {self.state.step} of {self.total_steps}")

    def _report(self, loss: float) -> None:
        self.state.history.append({"step": self.state.step, "train_loss": loss})
        epoch = self.state.epoch + self.state.micro_done / self.micro_per_epoch
        best = self.state.best_score
        self.control.progress(
            self.state.step / self.total_steps,
            f"step {self.state.step}/{self.total_steps}, epoch {epoch:.1f}, loss {loss:.3f}"
            + (f", best val {best:.3f}" if best is not None else ""),
        )

    def _eval_due(self, end_of_epoch: bool) -> bool:
        if self.state.step >= self.total_steps:
            return True
        if self.cfg.eval_every > 0:
            return self.state.step % self.cfg.eval_every == 0
        return end_of_epoch

    def _evaluate(self) -> str:
        """Evaluate on rank 0, share the verdict, checkpoint; returns ok or early_stop.

        A task may raise JobCancelled while it evaluates (a long validation set
        must not delay a cancel); the verdict carries that to every rank.
        """
        self.last_eval_step = self.state.step
        verdict = torch.zeros(1, device=self._comm_device())  # 0 ok, 1 early stop, 2 cancel
        if self.dist.is_main:
            self.model.eval()
            try:
                with torch.no_grad(), self.autocast():
                    metrics = self.task.evaluate(self.model, self.device)
                verdict[0] = 1.0 if self._record_eval(metrics) else 0.0
            except JobCancelled:
                verdict[0] = 2.0
            self.model.train()
        if self.dist.enabled:
            import torch.distributed as dist

            dist.broadcast(verdict, 0)
        self.state.pending_eval = verdict.item() == 2.0
        if self.state.pending_eval:
            self.last_eval_step = None
            self._cancel()
        self._save_checkpoint()
        return "early_stop" if verdict.item() > 0 else "ok"

    def _record_eval(self, metrics: dict[str, float]) -> bool:
        """Track the best score; True when patience has run out."""
        score = float(metrics["score"])
        self.state.history.append({"step": self.state.step, **metrics})
        if self.state.best_score is None or score > self.state.best_score:
            self.state.best_score, self.state.best_step, self.state.bad_evals = (
                score,
                self.state.step,
                0,
            )
            self.best_model = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }
        else:
            self.state.bad_evals += 1
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k != "score")
        if shown:  # a task trained for fixed epochs reports nothing here
            self.control.log(f"step {self.state.step}: validation {shown}")
        if self.state.bad_evals >= self.cfg.patience:
            self.control.log(
                f"early stop: no improvement for {self.cfg.patience} evaluations "
                f"(best {self.state.best_score:.3f} at step {self.state.best_step})"
            )
            return True
        return False

    def _save_checkpoint(self) -> None:
        self.last_checkpoint = time.monotonic()
        if not self.dist.is_main:
            return
        save_atomic(
            {
                "format": CHECKPOINT_FORMAT,
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "step": self.state.step,
                "config": asdict(self.cfg),
                "best_metric": self.state.best_score,
                "loop": asdict(self.state),
                "task": self.task.state(),
                "best_model": self.best_model or {},
            },
            self.checkpoint_path,
        )

    def _result(self, reason: str) -> TrainResult:
        s = self.state
        return TrainResult(
            best_state=self.best_model,
            best_score=s.best_score,
            best_step=s.best_step,
            steps=s.step,
            epochs_done=s.epoch + s.micro_done / self.micro_per_epoch,
            stop_reason=reason,
            seconds=s.seconds,
            images_seen=s.images_seen,
            history=s.history,
        )


def train(
    task: TrainTask,
    cfg: LoopConfig,
    control: Control,
    checkpoint_path: Path,
    *,
    resume: bool = False,
    dist: DistEnv | None = None,
) -> tuple[TrainResult, nn.Module]:
    """Run the loop (resuming from ``checkpoint_path`` if asked); returns the result and model."""
    dist = dist or DistEnv()
    set_threads(cfg, dist)
    trainer = Trainer(task, cfg, control, checkpoint_path, dist)
    trainer.setup(resume)
    return trainer.run(), trainer.model
