"""The one training loop on a tiny synthetic task: accumulation, exact resume, early stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import TensorDataset

from dermdesk.jobs.context import JobCancelled
from dermdesk.ml.checkpoints import load_file
from dermdesk.ml.config import LoopConfig
from dermdesk.ml.loop import NullControl, train
from dermdesk.ml.models import build_model

pytestmark = pytest.mark.ml


class ToyTask:
    """Two classes of 32 px noise with a bright or dark square: learnable in a few steps."""

    def __init__(self, scores: list[float] | None = None) -> None:
        self.scores = scores
        self.evals = 0
        self.prepared_with: Any = "not yet"

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        self.prepared_with = saved_state
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 3, 32, 32, generator=g) * 0.3
        y = torch.arange(64) % 2
        x[y == 1, :, 8:24, 8:24] += 1.5
        self.data = TensorDataset(x, y)

    def state(self) -> dict[str, Any]:
        return {"classes": ["A", "B"]}

    def build_model(self) -> nn.Module:
        return build_model("vit_test", 2, 32)

    def train_set(self) -> TensorDataset:
        return self.data

    def train_weights(self) -> np.ndarray | None:
        return None

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x.to(device)), y.to(device))

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        self.evals += 1
        if self.scores is not None:
            return {"score": self.scores[min(self.evals - 1, len(self.scores) - 1)]}
        x, y = self.data.tensors
        acc = float((model(x.to(device)).argmax(1).cpu() == y).float().mean())
        return {"score": acc}


class StopAfter(NullControl):
    """Asks the loop to stop once it has reported ``n`` progress updates."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        self.seen += 1

    def log(self, line: str) -> None:
        pass

    def should_stop(self) -> bool:
        return self.seen >= self.n


def config(**kw: Any) -> LoopConfig:
    base = {"epochs": 3, "batch_size": 16, "micro_batch": 8, "lr": 3e-3, "threads": 1}
    return LoopConfig(**{**base, **kw})


def quiet() -> NullControl:
    c = NullControl()
    c.log = lambda line: None  # type: ignore[method-assign]
    return c


def test_loss_goes_down_and_the_best_weights_are_kept(tmp_path: Path) -> None:
    result, _ = train(ToyTask(), config(epochs=6), quiet(), tmp_path / "ck.pt")
    losses = [h["train_loss"] for h in result.history if "train_loss" in h]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert result.stop_reason == "finished" and result.steps == 6 * 4
    assert result.best_state is not None and result.best_score is not None
    saved = load_file(tmp_path / "ck.pt")
    assert saved["step"] == result.steps and saved["best_metric"] == result.best_score
    assert set(saved) >= {"model", "optimizer", "step", "config", "best_metric"}


def first_step_gradients(cfg: LoopConfig, path: Path) -> list[torch.Tensor]:
    """Gradients the optimiser sees at its first step (captured by a global step hook)."""
    grads: list[torch.Tensor] = []

    def capture(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not grads:
            grads.extend(p.grad.clone() for g in optimizer.param_groups for p in g["params"])

    handle = register_optimizer_step_pre_hook(capture)
    try:
        train(ToyTask(), cfg, quiet(), path)
    finally:
        handle.remove()
    return grads


def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    one = config(epochs=1, max_steps=1, micro_batch=16, grad_clip=0)
    two = config(epochs=1, max_steps=1, micro_batch=8, grad_clip=0)  # 2 micro-batches of 8
    big = first_step_gradients(one, tmp_path / "a.pt")
    accumulated = first_step_gradients(two, tmp_path / "b.pt")
    assert len(big) == len(accumulated) > 10
    for ga, gb in zip(big, accumulated, strict=True):
        assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-7)


def test_cancel_then_resume_gives_the_same_model_as_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = config(epochs=3)
    full, full_model = train(ToyTask(), cfg, quiet(), tmp_path / "full.pt")
    with pytest.raises(JobCancelled, match="cancelled at step 5"):
        train(ToyTask(), cfg, StopAfter(5), tmp_path / "part.pt")
    assert load_file(tmp_path / "part.pt")["step"] == 5
    task = ToyTask()
    resumed, resumed_model = train(task, cfg, quiet(), tmp_path / "part.pt", resume=True)
    assert task.prepared_with == {"classes": ["A", "B"]}  # the task got its saved state back
    assert resumed.steps == full.steps and resumed.images_seen == full.images_seen
    for (name, pa), pb in zip(
        full_model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name


def test_early_stopping_after_patience_evaluations_without_improvement(tmp_path: Path) -> None:
    task = ToyTask(scores=[0.5, 0.6, 0.55, 0.58, 0.59, 0.7])
    result, _ = train(task, config(epochs=20, eval_every=1, patience=3), quiet(), tmp_path / "c.pt")
    assert result.stop_reason == "early_stop"
    assert result.steps == 5 and result.best_step == 2 and result.best_score == 0.6


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown training option"):
        LoopConfig.from_dict({"epochz": 3})


def test_device_and_precision_choices() -> None:
    from contextlib import nullcontext

    from dermdesk.ml.loop import DistEnv, autocast_for, pick_device

    cpu = torch.device("cpu")
    assert autocast_for(cpu, "bf16") is nullcontext  # bf16 autocast is for CUDA GPUs only
    assert pick_device(DistEnv(), "cpu") == cpu
    if torch.cuda.is_available():  # pragma: no cover - exercised where a GPU is lent
        assert pick_device(DistEnv(), "auto").type == "cuda"
        assert autocast_for(torch.device("cuda"), "fp32") is nullcontext
    else:
        assert pick_device(DistEnv(), "auto") == cpu
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device(DistEnv(), "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_training_on_a_gpu(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    result, model = train(ToyTask(), config(epochs=2, precision="bf16"), quiet(), tmp_path / "g.pt")
    assert next(model.parameters()).device.type == "cuda"
    assert result.steps == 8 and result.best_score is not None


class CancelInEval(ToyTask):
    """A validation pass long enough that the user cancels in the middle of it."""

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if self.evals == 1:
            self.evals += 1
            raise JobCancelled("cancelled during evaluation")
        return super().evaluate(model, device)


def test_a_cancel_during_evaluation_checkpoints_and_the_resume_redoes_it(tmp_path: Path) -> None:
    cfg = config(epochs=3)
    with pytest.raises(JobCancelled):
        train(CancelInEval(), cfg, quiet(), tmp_path / "c.pt")
    saved = load_file(tmp_path / "c.pt")
    assert saved["step"] == 8 and saved["loop"]["history"][-1] == {
        "step": 8,
        "train_loss": pytest.approx(saved["loop"]["history"][-1]["train_loss"]),
    }
    result, _ = train(ToyTask(), cfg, quiet(), tmp_path / "c.pt", resume=True)
    evaluated = [h["step"] for h in result.history if "score" in h]
    assert evaluated == [4, 8, 12]
