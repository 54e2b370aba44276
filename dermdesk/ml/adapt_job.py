"""Dermoscopic -> clinical adaptation as a registered model: the ``adapt`` job kind.

Issue 18, on fine-tuning's task (data, split, evaluation per group and meta-domain, ONNX
export, int8 copy, registration with parents and exact training images), with the
losses of :mod:`dermdesk.ml.adapt`:

- ``stage 1``: multi-transform contrastive training on the filter's images of *both*
  modalities (fine-tuning's patient-grouped split): cross-entropy on an ordinary view
  and on a view moved across the gap, plus the supervised contrastive term between them;
- ``stage 2``: guided tuning of a registered start model (normally stage 1's) on the
  clinical images of the start model's own training split, keeping its outputs on the
  dermoscopic ones (learning without forgetting) and its backbone near its weights
  (L2-SP). Forgetting is measured: the start model's and the tuned model's balanced
  accuracy on the dermoscopic test images go into the model's metrics.

Where adaptation cannot run (one modality; stage 2 without a start model) the job
refuses in one line, unless ``fallback`` asks for plain fine-tuning, which the model's
metrics then say. The two stages are two jobs (``dermdesk train adapt --stage 1``, then
``--stage 2 --from`` the model it registered), so each is resumable on its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import Library
from dermdesk.library.model_store import get_model, model_dir
from dermdesk.ml import adapt, checkpoints, metrics
from dermdesk.ml.cached_data import CachedEvalViews, CachedTrainViews
from dermdesk.ml.config import AdaptConfig
from dermdesk.ml.data import Sample
from dermdesk.ml.finetune import FinetuneTask, cached_log_probs, finalize, predict_torch
from dermdesk.ml.loop import Control, train
from dermdesk.ml.models import build_model
from dermdesk.ml.tensor_augment import PRESETS as AUGMENTS


class AdaptTask(FinetuneTask):
    """Adaptation stage 1 or 2 as a :class:`dermdesk.ml.loop.TrainTask`."""

    cfg: AdaptConfig

    def __init__(
        self, library_dir: Path, cfg: AdaptConfig, control: Control, work_dir: Path | None = None
    ) -> None:
        super().__init__(library_dir, cfg, control)
        self.work_dir = work_dir  # the job's folder: the transform preview goes there
        self.plain = False  # the fallback: plain fine-tuning
        self.start: dict[str, Any] | None = None  # stage 2's start model (registry row)
        self.learn: list[Sample] = []
        self.keep: list[Sample] = []
        self.final_model: nn.Module | None = None
        self._start_dermoscopic: tuple[float | None, int] = (None, 0)

    # -- data ----------------------------------------------------------------------------------

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        if self.cfg.stage == 2 and self.cfg.init != "scratch":
            with Library.open(self.library_dir, readonly=True) as lib:
                self.start = get_model(lib, self.cfg.init)
            if self.start["kind"] != "classifier":
                raise ValueError(
                    f"stage 2 tunes a classifier; {self.start['id']} is a {self.start['kind']}"
                )
            if self.start["training_set"].get("split"):
                self.cfg.classes = list(self.start["training_set"]["classes"])
        super().prepare(saved_state)
        train_part = self.samples["train"]
        derm = [s for s in train_part if s.modality == "dermoscopic"]
        clin = [s for s in train_part if s.modality == "clinical"]
        if self.cfg.stage == 1:
            self._check_stage1(derm, clin)
        else:
            self._prepare_stage2(derm, clin)

    def _check_stage1(self, derm: list[Sample], clin: list[Sample]) -> None:
        if derm and clin:
            self.control.log(
                f"stage 1: {len(derm)} dermoscopic and {len(clin)} clinical training images, "
                "each seen as an ordinary view and a view moved across the gap"
            )
            if self.work_dir is not None:
                preview = self.work_dir / "transforms.png"
                if adapt.save_preview(self.cache, derm + clin, preview, self.cfg.loop.seed):
                    self.control.log(f"gap transforms previewed in {preview}")
            return
        missing = "dermoscopic" if not derm else "clinical"
        if not self.cfg.fallback:
            raise ValueError(
                f"stage 1 needs labelled training images of both modalities; the training "
                f"images hold no {missing} image (give --fallback to fine-tune plainly)"
            )
        self.plain = True
        self.control.log(f"no {missing} training images: plain fine-tuning (--fallback)")

    def _prepare_stage2(self, derm: list[Sample], clin: list[Sample]) -> None:
        if self.start is None:  # --fallback without a start model
            self.plain = True
            self.control.log("stage 2 without a start model: plain fine-tuning (--fallback)")
            return
        if not clin:
            raise ValueError(
                f"stage 2 tunes on clinical images; the training images of {self.start['id']}'s "
                "split hold none"
            )
        if not derm and not self.cfg.fallback:
            raise ValueError(
                "stage 2 keeps the start model's outputs on dermoscopic training images, and "
                "there are none (give --fallback to tune with L2-SP only)"
            )
        self.learn, self.keep = clin, derm
        teacher = self._start_model()
        logp = cached_log_probs(
            teacher, self.cache, self.keep, self.spec, len(self.classes), self.control.should_stop
        )
        pad = np.zeros((len(self.learn), len(self.classes)), dtype=np.float32)
        self._targets = torch.from_numpy(np.concatenate([pad, logp]))
        self._labels = torch.tensor([s.label for s in [*self.learn, *self.keep]])
        self._anchor = adapt.backbone_weights(teacher)
        self._start_dermoscopic = self._dermoscopic_test(teacher)
        self.control.log(
            f"stage 2 from {self.start['id']}: tuning on {len(self.learn)} clinical images, "
            f"keeping its outputs on {len(self.keep)} dermoscopic ones (LwF x"
            f"{self.cfg.lwf_weight}, T={self.cfg.lwf_temperature}), L2-SP x{self.cfg.sp_weight}"
        )

    def _start_model(self) -> nn.Module:
        assert self.start is not None
        payload = checkpoints.load_file(model_dir(self.library_dir, self.start["id"]) / "model.pt")
        size = int(payload.get("img_size") or self.cfg.img_size)
        if size != self.cfg.img_size:
            raise ValueError(f"{self.start['id']} was trained at {size} px; give --img-size {size}")
        model = build_model(str(payload["arch"]), len(self.classes), self.cfg.img_size)
        model.load_state_dict(checkpoints.state_dict_of(payload, self.start["id"]))
        return model.eval()

    def _dermoscopic_test(self, model: nn.Module) -> tuple[float | None, int]:
        """Balanced accuracy on the dermoscopic test images (what forgetting is measured on)."""
        samples = [s for s in self.samples["test"] if s.modality == "dermoscopic"]
        if not samples:
            return None, 0
        y, probs = predict_torch(
            model,
            CachedEvalViews(self.cache, samples, self.spec),
            torch.device("cpu"),
            should_stop=self.control.should_stop,
        )
        return metrics.balanced_accuracy(y, probs), len(samples)

    def _new_split(self, rows: dict[str, dict[str, Any]]) -> None:
        split = (self.start or {}).get("training_set", {}).get("split")
        if not split:
            super()._new_split(rows)
            return
        self._stored_split(rows, {i: name for name, ids in split.items() for i in ids})
        self.split_method = f"the start model's split ({self.start['id']})"  # type: ignore[index]

    def state(self) -> dict[str, Any]:
        return {**super().state(), "stage": self.cfg.stage}

    def train_set(self) -> CachedTrainViews:
        augment = AUGMENTS[self.cfg.augment]
        if self.plain:
            return super().train_set()
        if self.cfg.stage == 1:
            return adapt.GapViews(
                self.cache, self.samples["train"], seed=self.cfg.loop.seed, augment=augment
            )
        return adapt.MixedViews(
            self.cache,
            self.learn,
            self.keep,
            n_classes=len(self.classes),
            seed=self.cfg.loop.seed,
            augment=augment,
        )

    def train_weights(self) -> np.ndarray | None:
        if self.cfg.stage == 2 and not self.plain:
            return None  # the mixed views draw clinical images class-balanced themselves
        return super().train_weights()

    def default_name(self) -> str:
        what = "plain fine-tuning (fallback)" if self.plain else f"stage {self.cfg.stage}"
        return f"{self.cfg.arch} adapted, {what}"

    # -- model and loss ------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if self.cfg.stage == 1 and not self.plain:
            return adapt.ContrastModel(model)
        return model

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        if self.plain:
            return super().loss(model, batch, device)
        if self.cfg.stage == 1:
            weight = self._class_weight.to(device) if self._class_weight is not None else None
            return adapt.stage1_loss(
                model,
                batch,
                device,
                self.cfg.img_size,
                label_smoothing=self.cfg.label_smoothing,
                contrast_weight=self.cfg.contrast_weight,
                contrast_temperature=self.cfg.contrast_temperature,
                class_weight=weight,
            )
        return adapt.stage2_loss(
            model,
            batch,
            device,
            self.cfg.img_size,
            labels=self._labels,
            targets=self._targets,
            n_learn=len(self.learn),
            anchor=self._anchor,
            lwf_weight=self.cfg.lwf_weight,
            lwf_temperature=self.cfg.lwf_temperature,
            sp_weight=self.cfg.sp_weight,
            label_smoothing=self.cfg.label_smoothing,
        )

    def extra_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage": self.cfg.stage,
            "plain_fallback": self.plain,
            "contrast_weight": self.cfg.contrast_weight,
            "lwf_weight": self.cfg.lwf_weight,
            "sp_weight": self.cfg.sp_weight,
        }
        if self.cfg.stage == 2 and self.start is not None and self.final_model is not None:
            before, n = self._start_dermoscopic
            after, _ = self._dermoscopic_test(self.final_model)
            out["start"] = self.start["id"]
            out["dermoscopic_test"] = {
                "n": n,
                "start_balanced_accuracy": before,
                "balanced_accuracy": after,
                "forgetting": before - after if before is not None and after is not None else None,
            }
        return {"adaptation": out}


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Entry point of the ``adapt`` job kind (in the worker process)."""
    cfg = AdaptConfig.from_params(ctx.params)
    task = AdaptTask(ctx.library_dir, cfg, ctx, ctx.work_dir)
    result, model = train(task, cfg.loop, ctx, ctx.checkpoint_path, resume=ctx.resume)
    if ctx.should_stop():
        raise JobCancelled("cancelled before evaluation")
    if isinstance(model, adapt.ContrastModel):  # register the classifier, not the projection
        model = model.cpu()
        if result.best_state:
            model.load_state_dict(result.best_state)
        model = model.classifier
        result = replace(result, best_state=None)
    task.final_model = model
    return finalize(ctx.library_dir, cfg, task, result, model, ctx)
