"""One run of an experiment as a job (kind ``experiment.run``): train, evaluate, report.

The run's row (written when the experiment was planned) names its scheme, seed, recipe,
start weights (another run of the same experiment and seed) and the exact image ids it
trains on and is evaluated on. The one training loop trains it from the image cache for
a fixed number of epochs (nothing is selected on an evaluation set); then every
evaluation set is predicted once and reported by ``ml.metrics`` (overall and per
Fitzpatrick group, device, modality and domain, each with a bootstrap interval). The
final weights go to ``experiments/<experiment>/<run>/weights.pt`` for runs that start
from them; the metrics reach the library through the job runner, in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dermdesk.inference.preprocess import PreprocessSpec
from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.db import id_chunks
from dermdesk.library.experiment_store import experiment, run_of, runs
from dermdesk.ml import checkpoints, metrics
from dermdesk.ml.cached_data import CachedEvalViews, CachedTrainViews, cache_for, train_inputs
from dermdesk.ml.config import LoopConfig
from dermdesk.ml.data import Sample, balanced_weights, collect_samples, subgroups
from dermdesk.ml.finetune import cached_log_probs, predict_torch
from dermdesk.ml.imbalance_study import LEGACY_MAE_IMAGES
from dermdesk.ml.loop import Control, train
from dermdesk.ml.models import build_model
from dermdesk.ml.tensor_augment import PRESETS

EXPERIMENTS_DIR = "experiments"
# Split parts a run trains on (every other part is an evaluation set).
NOT_EVALUATED = ("train", "keep")


def run_dir(library_dir: Path, exp_id: int, run_id: int) -> Path:
    return library_dir / EXPERIMENTS_DIR / str(exp_id) / str(run_id)


class RunTask:
    """A run as a :class:`dermdesk.ml.loop.TrainTask`."""

    LABELLED = True  # its images must carry one of the study's classes

    def __init__(
        self, library_dir: Path, run: dict[str, Any], exp: dict[str, Any], control: Control
    ):
        self.library_dir = library_dir
        self.run = run
        self.exp = exp
        self.control = control
        self.recipe = exp["params"]["recipe"]
        self.classes = list(exp["params"]["classes"])
        self.spec = PreprocessSpec(size=int(self.recipe["size"]))
        self.arch = str(run["params"].get("arch") or self.recipe["arch"])
        self._init: dict[str, torch.Tensor] | None = None

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        with Library.open(self.library_dir, readonly=True) as lib:
            self.samples = {
                name: samples_for(lib, ids, self.classes, labelled=self.LABELLED)
                for name, ids in self.run["split"].items()
            }
            if saved_state is None and self.run["params"].get("init_from"):
                self._init = self._start_weights(lib)
            elif saved_state is None and self.run["params"].get("init_backbone"):
                self._init = self._backbone_weights(lib, self.run["params"]["init_backbone"])
        lost = {k: len(self.run["split"][k]) - len(v) for k, v in self.samples.items()}
        if any(lost.values()):
            self.control.log(
                f"images gone from the library or no longer labelled with a shared class: {lost}"
            )
        if not self.samples["train"]:
            raise ValueError(f"{self.run['name']}: no training images left")
        every = [s for part in self.samples.values() for s in part]
        self.cache = cache_for(
            self.library_dir,
            self.spec,
            every,
            log=self.control.log,
            should_stop=self.control.should_stop,
        )
        if self.control.should_stop():
            raise JobCancelled("cancelled while caching the training images")

    def _start_weights(self, lib: Library) -> dict[str, torch.Tensor]:
        parent = self.run["params"]["init_from"]
        path, sibling = self._sibling_weights(lib, parent, "starts from")
        self.control.log(f"started from {parent} seed {self.run['seed']} (run {sibling['id']})")
        return checkpoints.state_dict_of(checkpoints.load_file(path), parent)

    def _backbone_weights(self, lib: Library, ref: str) -> dict[str, torch.Tensor]:
        from dermdesk.library.model_store import get_model, model_dir

        backbone = get_model(lib, ref)
        payload = checkpoints.load_file(model_dir(self.library_dir, backbone["id"]) / "model.pt")
        self.control.log(f"started from backbone {backbone['id']} ({backbone['name']})")
        self._init_name = f"backbone {backbone['id']}"
        return checkpoints.state_dict_of(payload, backbone["id"])

    def _sibling_weights(self, lib: Library, name: str, role: str) -> tuple[Path, dict[str, Any]]:
        """The final weights of the run ``name`` of this experiment and seed."""
        sibling = [
            r
            for r in runs(lib, self.exp["id"])
            if r["name"] == name and r["seed"] == self.run["seed"]
        ]
        path = (
            run_dir(self.library_dir, self.exp["id"], sibling[0]["id"]) / "weights.pt"
            if sibling
            else None
        )
        if path is None or not path.is_file():
            raise ValueError(
                f"{self.run['name']} seed {self.run['seed']} {role} {name}, which has no "
                "weights yet (it failed, or has not run): resume that run first"
            )
        return path, sibling[0]

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run["id"]}

    def build_model(self) -> nn.Module:
        model = build_model(self.arch, len(self.classes), self.spec.size)
        if self._init is not None:
            from dermdesk.ml.models import fit_pos_embed

            weights, resampled = fit_pos_embed(dict(self._init), model)
            if resampled:
                self.control.log(resampled)
            name = self.run["params"].get("init_from") or getattr(self, "_init_name", "start")
            checkpoints.load_into(model, weights, str(name))
            self._init = None
        return model

    def train_set(self) -> CachedTrainViews:
        return CachedTrainViews(
            self.cache,
            self.samples["train"],
            seed=int(self.run["seed"]),
            augment=PRESETS[self.recipe["augment"]],
        )

    def train_weights(self) -> np.ndarray:
        return balanced_weights(self.samples["train"], len(self.classes))

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        x, y = train_inputs(batch, device, self.spec.size)
        return nn.functional.cross_entropy(
            model(x).float(), y, label_smoothing=float(self.recipe["label_smoothing"])
        )

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        # Fixed epochs, no model selection: the loop's "best" is simply the latest.
        return {"score": float(time.monotonic())}

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What later runs start from (``weights.pt``)."""
        return model.state_dict()

    def report(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Every evaluation set predicted once, with intervals, overall and per group."""
        out = {}
        for name, samples in self.samples.items():
            if name in NOT_EVALUATED or not samples:
                continue
            views = CachedEvalViews(self.cache, samples, self.spec)
            y, probs = predict_torch(model, views, device, should_stop=self.control.should_stop)
            out[name] = metrics.evaluate_groups(
                y,
                probs,
                self.classes,
                subgroups(samples),
                min_n=5,
                n_boot=int(self.recipe["n_boot"]),
                seed=int(self.run["seed"]),
            )
        return out


class MaeRunTask(RunTask):
    """An MAE pretraining run: its images (labelled or not) without labels; its weights are
    the encoder's (what the classifier runs start from)."""

    LABELLED = False

    def build_model(self) -> nn.Module:
        from dermdesk.ml.mae import MaskedAutoencoder

        model = MaskedAutoencoder(
            build_model(self.arch, 0, self.spec.size),
            decoder_dim=int(self.recipe["decoder_dim"]),
            decoder_depth=int(self.recipe["decoder_depth"]),
            decoder_heads=int(self.recipe["decoder_heads"]),
            mask_ratio=float(self.recipe["mask_ratio"]),
        )
        self.n_patches = model.n_patches
        return model

    def train_set(self) -> CachedTrainViews:
        from dermdesk.ml.pretrain import MaskedViews

        return MaskedViews(
            self.cache,
            self.samples["train"],
            seed=int(self.run["seed"]),
            augment=PRESETS["light"],
            n_patches=self.n_patches,
        )

    def train_weights(self) -> None:  # type: ignore[override]
        return None  # self-supervised: every image once per epoch

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        from dermdesk.ml.pretrain import mae_loss

        return mae_loss(model, batch, device, self.spec.size)

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        encoder: nn.Module = model.encoder  # type: ignore[assignment]
        return encoder.state_dict()

    def report(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        return {}


class DistillRunTask(RunTask):
    """A distillation run: the student learns the labels and the outputs of the teacher
    run of the same seed, computed once on the inference view of each training image."""

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        super().prepare(saved_state)
        name = self.run["params"]["teacher"]
        with Library.open(self.library_dir, readonly=True) as lib:
            path, teacher = self._sibling_weights(lib, name, "is taught by")
        arch = str(teacher["params"].get("arch") or self.recipe["arch"])
        model = build_model(arch, len(self.classes), self.spec.size)
        model.load_state_dict(checkpoints.state_dict_of(checkpoints.load_file(path), name))
        logp = cached_log_probs(
            model,
            self.cache,
            self.samples["train"],
            self.spec,
            len(self.classes),
            self.control.should_stop,
        )
        self._targets = torch.from_numpy(logp)
        self._labels = torch.tensor([s.label for s in self.samples["train"]])
        self.control.log(f"taught by {name} ({arch}, run {teacher['id']}): outputs cached")

    def train_set(self) -> CachedTrainViews:
        from dermdesk.ml.distill import IndexedViews

        return IndexedViews(
            self.cache,
            self.samples["train"],
            seed=int(self.run["seed"]),
            augment=PRESETS[self.recipe["augment"]],
        )

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        from dermdesk.ml.distill import distillation_loss

        x, idx = train_inputs(batch, device, self.spec.size)
        idx = idx.cpu()
        return distillation_loss(
            model(x).float(),
            self._labels[idx].to(device),
            self._targets[idx].to(device),
            temperature=float(self.recipe["temperature"]),
            alpha=float(self.recipe["alpha"]),
            label_smoothing=float(self.recipe["label_smoothing"]),
        )


class ContrastRunTask(RunTask):
    """Adaptation stage 1: cross-entropy on two views of each training image plus a
    supervised contrastive term pulling an ordinary view and a view moved across the
    dermoscopic/clinical gap together (:mod:`dermdesk.ml.adapt`)."""

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        super().prepare(saved_state)
        from dermdesk.ml.adapt import save_preview

        folder = run_dir(self.library_dir, self.exp["id"], self.run["id"])
        folder.mkdir(parents=True, exist_ok=True)
        if save_preview(self.cache, self.samples["train"], folder / "transforms.png"):
            self.control.log(f"gap transforms previewed in {folder / 'transforms.png'}")

    def build_model(self) -> nn.Module:
        from dermdesk.ml.adapt import ContrastModel

        return ContrastModel(super().build_model())

    def train_set(self) -> CachedTrainViews:
        from dermdesk.ml.adapt import GapViews

        return GapViews(
            self.cache,
            self.samples["train"],
            seed=int(self.run["seed"]),
            augment=PRESETS[self.recipe["augment"]],
        )

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        from dermdesk.ml.adapt import stage1_loss

        return stage1_loss(
            model,
            batch,
            device,
            self.spec.size,
            label_smoothing=float(self.recipe["label_smoothing"]),
            contrast_weight=float(self.recipe.get("contrast_weight", 1.0)),
            contrast_temperature=float(self.recipe.get("contrast_temperature", 0.1)),
        )

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        classifier: nn.Module = model.classifier  # type: ignore[assignment]
        return classifier.state_dict()


class GuidedRunTask(RunTask):
    """Adaptation stage 2: tuning on the clinical training images (``train``) while
    keeping the start model's outputs on the dermoscopic training images (``keep``,
    learning without forgetting) and its backbone weights near the start (L2-SP)."""

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        super().prepare(saved_state)
        if not self.run["params"].get("init_from"):
            raise ValueError(f"{self.run['name']}: guided tuning needs a start model")
        with Library.open(self.library_dir, readonly=True) as lib:
            path, start = self._sibling_weights(lib, self.run["params"]["init_from"], "tunes")
        state = checkpoints.state_dict_of(checkpoints.load_file(path), start["name"])
        teacher = build_model(self.arch, len(self.classes), self.spec.size)
        teacher.load_state_dict(state)
        keep = self.samples.get("keep", [])
        logp = cached_log_probs(
            teacher, self.cache, keep, self.spec, len(self.classes), self.control.should_stop
        )
        learn = self.samples["train"]
        pad = np.zeros((len(learn), len(self.classes)), dtype=np.float32)
        self._targets = torch.from_numpy(np.concatenate([pad, logp]))
        self._labels = torch.tensor([s.label for s in [*learn, *keep]])
        self._n_learn = len(learn)
        from dermdesk.ml.adapt import backbone_weights

        self._anchor = backbone_weights(teacher)
        self.control.log(
            f"guided by {start['name']} (run {start['id']}): its outputs on {len(keep)} "
            f"dermoscopic training images kept (LwF x{self._lwf}), L2-SP x{self._sp}"
        )

    @property
    def _lwf(self) -> float:
        # A swept strength is the run's own; else the recipe's.
        return float(self.run["params"].get("lwf_weight", self.recipe.get("lwf_weight", 1.0)))

    @property
    def _sp(self) -> float:
        return float(self.recipe.get("sp_weight", 0.01))

    def train_set(self) -> CachedTrainViews:
        from dermdesk.ml.adapt import MixedViews

        return MixedViews(
            self.cache,
            self.samples["train"],
            self.samples.get("keep", []),
            n_classes=len(self.classes),
            seed=int(self.run["seed"]),
            augment=PRESETS[self.recipe["augment"]],
        )

    def train_weights(self) -> None:  # type: ignore[override]
        return None  # the views draw clinical images class-balanced themselves

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        from dermdesk.ml.adapt import stage2_loss

        return stage2_loss(
            model,
            batch,
            device,
            self.spec.size,
            labels=self._labels,
            targets=self._targets,
            n_learn=self._n_learn,
            anchor=self._anchor,
            lwf_weight=self._lwf,
            lwf_temperature=float(self.recipe.get("lwf_temperature", 2.0)),
            sp_weight=self._sp,
            label_smoothing=float(self.recipe["label_smoothing"]),
        )


TASKS: dict[str, type[RunTask]] = {
    "classify": RunTask,
    "mae": MaeRunTask,
    "distill": DistillRunTask,
    "contrast": ContrastRunTask,
    "guided": GuidedRunTask,
}


def samples_for(
    lib: Library, ids: Sequence[str], classes: Sequence[str], *, labelled: bool = True
) -> list[Sample]:
    """The samples of exactly these image ids (in the given order): those labelled with one
    of ``classes``, or with ``labelled=False`` every one (label -1 where it is none)."""
    found: dict[str, Sample] = {}
    for chunk in id_chunks(ids):
        flt = ImageFilter(ids=chunk, labelled=True if labelled else None)
        for s in collect_samples(lib, flt, classes):
            if s.label >= 0 or not labelled:
                found[s.image_id] = s
    return [found[i] for i in ids if i in found]


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Entry point of the ``experiment.run`` job kind (in the worker process)."""
    run_id = int(ctx.params["run_id"])
    with Library.open(ctx.library_dir, readonly=True) as lib:
        run = run_of(lib, run_id)
        exp = experiment(lib, int(run["experiment_id"]))
    if run["status"] == "done":
        raise LibraryError(f"run {run_id} ({run['name']} seed {run['seed']}) is done already")
    task = TASKS[str(run["params"].get("kind") or "classify")](ctx.library_dir, run, exp, ctx)
    recipe = exp["params"]["recipe"]
    cfg = LoopConfig(
        epochs=int(run["params"]["epochs"]),
        max_steps=int(run["params"]["max_steps"]) if run["params"].get("max_steps") else None,
        batch_size=int(recipe["batch"]),
        micro_batch=int(recipe["batch"]),
        lr=float(run["params"]["lr"]),
        weight_decay=float(recipe["weight_decay"]),
        warmup_frac=float(recipe["warmup_frac"]),
        patience=10**9,
        eval_every=10**9,  # no evaluation before the end: nothing is selected on a test set
        seed=int(run["seed"]),
        threads=int(recipe.get("threads", 0)),
    )
    result, model = train(task, cfg, ctx, ctx.checkpoint_path, resume=ctx.resume)
    model = model.cpu().eval()
    ctx.progress(1.0, "evaluating", force=True)
    evaluating = time.monotonic()
    report = task.report(model, torch.device("cpu"))
    folder = run_dir(ctx.library_dir, exp["id"], run_id)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints.save_atomic(
        {"model": task.weights(model), "arch": task.arch, "classes": task.classes},
        folder / "weights.pt",
    )
    if isinstance(task, MaeRunTask):  # the run's own record: how far pretraining went
        losses = [h["train_loss"] for h in result.history if "train_loss" in h]
        tail = losses[-max(1, len(losses) // 10) :]
        report = {
            "pretraining": {
                "first_loss": losses[0] if losses else None,
                "final_loss": float(np.mean(tail)) if tail else None,
                "images_per_second": result.images_seen / result.seconds
                if result.seconds
                else None,
                "images": len(task.samples["train"]),  # what it could draw from
                "images_seen": result.images_seen,
                "mae_images": run["params"].get("mae_images", LEGACY_MAE_IMAGES),
            }
        }
    seconds = result.seconds + (time.monotonic() - evaluating)  # training (all sessions) + eval
    ctx.request_write(
        "experiment_result", {"run_id": run_id, "metrics": report, "seconds": seconds}
    )
    return {
        "message": f"{run['name']} seed {run['seed']}: " + headline(report),
        "steps": result.steps,
    }


def headline(report: dict[str, Any]) -> str:
    parts = []
    for name, section in report.items():
        if name == "pretraining":
            parts.append(f"MAE loss {section['first_loss']:.3f} -> {section['final_loss']:.3f}")
            continue
        ba = section["overall"]["balanced_accuracy"]
        if ba["value"] is not None:
            parts.append(f"{name} balanced accuracy {ba['value']:.3f}")
    return ", ".join(parts)
