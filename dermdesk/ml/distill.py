"""Knowledge distillation into a small student: the ``distill`` job kind.

A registered classifier (the teacher, typically a ViT-S/B fine-tuned from an MAE
backbone) teaches a small ViT (the student). The student learns the teacher's classes
on the teacher's own split: it trains on the teacher's training images only and is
tested on the teacher's test images, so the two are compared on the same patients.

Loss: ``(1 - alpha)`` x cross-entropy on the hard labels + ``alpha`` x T^2 x KL between
the temperature-softened teacher and student outputs (Hinton et al.). The teacher's
outputs are computed once, on the inference view of each training image, and kept in the
checkpoint (a resumed job does not recompute them); the student sees augmented views of
the same images against those fixed targets. With ``distill_token`` (a DeiT student,
``deit_tiny_8``) the teacher's term goes through DeiT's distillation token and head and the
labels through the class token (Touvron et al. 2021, soft distillation); at inference the
two heads average, which is what is evaluated and exported.

Everything after training is fine-tuning's: evaluation per group, ONNX export with a
parity check, the int8 copy, registration (parents: the teacher, and the student's own
start weights if any) and the promotion rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dermdesk.inference.preprocess import PreprocessSpec
from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import Library
from dermdesk.library.model_store import get_model, model_dir
from dermdesk.ml import checkpoints, metrics
from dermdesk.ml.cached_data import CachedTrainViews, cache_for, train_inputs
from dermdesk.ml.config import DistillConfig
from dermdesk.ml.finetune import FinetuneTask, cached_log_probs, finalize, predict_torch
from dermdesk.ml.loop import Control, train
from dermdesk.ml.models import build_model
from dermdesk.ml.tensor_augment import PRESETS as AUGMENTS


class IndexedViews(CachedTrainViews):
    """Training items whose label slot carries the item's index (the loss looks up the
    hard label and the teacher's outputs by it)."""

    def item(self, i: int, epoch: int) -> tuple[np.ndarray, int, np.ndarray]:
        pixels, _, params = super().item(i, epoch)
        return pixels, i, params


class DistillTask(FinetuneTask):
    """Distillation as a :class:`dermdesk.ml.loop.TrainTask` (fine-tuning's data and split)."""

    cfg: DistillConfig

    def __init__(self, library_dir: Path, cfg: DistillConfig, control: Control) -> None:
        super().__init__(library_dir, cfg, control)
        self.teacher: dict[str, Any] = {}
        self.teacher_logp: dict[str, np.ndarray] = {}

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        with Library.open(self.library_dir, readonly=True) as lib:
            self.teacher = teacher_record(lib, self.cfg.teacher, self.cfg.classes)
        self.cfg.classes = list(self.teacher["training_set"]["classes"])
        super().prepare(saved_state)
        self.parents = [self.teacher["id"], *[p for p in self.parents if p != self.teacher["id"]]]
        self.split_method = f"the teacher's split ({self.teacher['id']})"
        if not saved_state:
            self.init_note = f"taught by {self.teacher['id']}; student from {self.init_note}"
        empty = [
            c
            for k, c in enumerate(self.classes)
            if not any(s.label == k for s in self.samples["train"])
        ]
        if empty:
            raise ValueError(
                f"teacher {self.teacher['id']} knows {', '.join(self.classes)}, but the "
                f"student's training images hold no {', '.join(empty)}"
            )
        if saved_state and "teacher_logp" in saved_state:
            self.teacher_logp = {k: np.asarray(v) for k, v in saved_state["teacher_logp"].items()}
        else:
            self.teacher_logp = self._teacher_outputs()

    def _new_split(self, rows: dict[str, dict[str, Any]]) -> None:
        split = self.teacher["training_set"]["split"]
        self._stored_split(rows, {i: name for name, ids in split.items() for i in ids})

    def _teacher_outputs(self) -> dict[str, np.ndarray]:
        """Log-probabilities of the teacher on the train and val images, computed once."""
        folder = model_dir(self.library_dir, self.teacher["id"])
        payload = checkpoints.load_file(folder / "model.pt")
        spec = PreprocessSpec.from_json(payload["preprocess"])
        model = build_model(payload["arch"], len(self.classes), spec.size)
        model.load_state_dict(checkpoints.state_dict_of(payload, self.teacher["id"]))
        parts = {name: self.samples[name] for name in ("train", "val")}
        cache = cache_for(
            self.library_dir,
            spec,
            [s for p in parts.values() for s in p],
            log=self.control.log,
            should_stop=self.control.should_stop,
        )
        out = {
            name: cached_log_probs(
                model, cache, samples, spec, len(self.classes), self.control.should_stop
            )
            for name, samples in parts.items()
        }
        y = np.array([s.label for s in parts["val"]])
        bacc = metrics.balanced_accuracy(y, np.exp(out["val"])) or 0.0
        self.control.log(
            f"teacher {self.teacher['id']} ({payload['arch']}): outputs on "
            f"{len(out['train'])} training images cached; validation balanced accuracy {bacc:.3f}"
        )
        return out

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "teacher": self.teacher["id"],
            "teacher_logp": {k: v.tolist() for k, v in self.teacher_logp.items()},
        }

    def train_set(self) -> IndexedViews:
        self._labels = torch.tensor([s.label for s in self.samples["train"]])
        self._targets = torch.from_numpy(self.teacher_logp["train"])
        return IndexedViews(
            self.cache,
            self.samples["train"],
            seed=self.cfg.loop.seed,
            augment=AUGMENTS[self.cfg.augment],
        )

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if self.cfg.distill_token:
            model.set_distilled_training(True)  # type: ignore[operator]
            self.control.log("DeiT student: the distillation token learns the teacher")
        return model

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        x, idx = train_inputs(batch, device, self.cfg.img_size)
        idx = idx.cpu()
        y = self._labels[idx].to(device)
        teacher = self._targets[idx].to(device)
        weight = self._class_weight.to(device) if self._class_weight is not None else None
        out = model(x)
        if isinstance(out, tuple):  # DeiT in training: (class head, distillation head)
            cls_logits, dist_logits = (o.float() for o in out)
            hard = nn.functional.cross_entropy(
                cls_logits, y, weight=weight, label_smoothing=self.cfg.label_smoothing
            )
            soft = kl_to_teacher(dist_logits, teacher, self.cfg.temperature)
            return (1 - self.cfg.alpha) * hard + self.cfg.alpha * soft
        return distillation_loss(
            out.float(),
            y,
            teacher,
            temperature=self.cfg.temperature,
            alpha=self.cfg.alpha,
            label_smoothing=self.cfg.label_smoothing,
            weight=weight,
        )

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        y, probs = predict_torch(
            model, self.eval_set("val"), device, should_stop=self.control.should_stop
        )
        bacc = metrics.balanced_accuracy(y, probs) or 0.0
        logp = np.log(np.clip(probs, 1e-8, 1.0))
        t = self.teacher_logp["val"].astype(np.float64)
        kl = float(np.mean(np.sum(np.exp(t) * (t - logp), axis=1)))
        return {"score": bacc, "val_balanced_accuracy": bacc, "val_kl_to_teacher": kl}

    def default_name(self) -> str:
        return f"{self.cfg.arch} distilled from {self.teacher['name']}"

    def extra_metrics(self) -> dict[str, Any]:
        test = self.teacher.get("metrics", {}).get("test", {}).get("overall", {})
        return {
            "distillation": {
                "teacher": self.teacher["id"],
                "teacher_architecture": self.teacher["architecture"],
                "teacher_test_balanced_accuracy": (test.get("balanced_accuracy") or {}).get(
                    "value"
                ),
                "temperature": self.cfg.temperature,
                "alpha": self.cfg.alpha,
                "distill_token": self.cfg.distill_token,
            }
        }


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logp: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    label_smoothing: float = 0.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1 - alpha) x cross-entropy on the labels + alpha x T^2 KL to the teacher."""
    hard = nn.functional.cross_entropy(
        logits, labels, weight=weight, label_smoothing=label_smoothing
    )
    return (1 - alpha) * hard + alpha * kl_to_teacher(logits, teacher_logp, temperature)


def kl_to_teacher(logits: torch.Tensor, teacher_logp: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 x KL(teacher_T || student_T), averaged over the batch (softmax(log p / T) is the
    teacher's softmax(z / T): its log-probabilities serve as logits)."""
    student = nn.functional.log_softmax(logits / t, dim=1)
    target = nn.functional.log_softmax(teacher_logp / t, dim=1)
    kl = nn.functional.kl_div(student, target, log_target=True, reduction="batchmean")
    return kl * t * t


def teacher_record(lib: Library, ref: str, classes: list[str] | None) -> dict[str, Any]:
    """The teacher's registry row, checked (a classifier with a split; the classes asked
    for, if any, are its own); raises ValueError/LibraryError with one line."""
    teacher = get_model(lib, ref)
    if teacher["kind"] != "classifier":
        raise ValueError(f"teacher {teacher['id']} is a {teacher['kind']}, not a classifier")
    own = list(teacher["training_set"].get("classes") or [])
    if classes and list(classes) != own:
        raise ValueError(
            f"teacher {teacher['id']} knows {', '.join(own)}; the student was asked for "
            f"{', '.join(classes)} (a student learns its teacher's classes)"
        )
    if not teacher["training_set"].get("split"):
        raise ValueError(f"teacher {teacher['id']} has no recorded split to train on")
    return teacher


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Entry point of the ``distill`` job kind (in the worker process)."""
    cfg = DistillConfig.from_params(ctx.params)
    task = DistillTask(ctx.library_dir, cfg, ctx)
    result, model = train(task, cfg.loop, ctx, ctx.checkpoint_path, resume=ctx.resume)
    if ctx.should_stop():
        raise JobCancelled("cancelled before evaluation")
    return finalize(ctx.library_dir, cfg, task, result, model, ctx)
