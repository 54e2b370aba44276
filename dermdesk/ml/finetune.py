"""On-site fine-tuning: the ``finetune`` job kind.

Trains a classifier on the library's labelled images: a patient-grouped,
stratified, seeded split (synthetic images in training only), class-balanced
sampling, augmentations that mimic device and lighting variation, early
stopping on validation balanced accuracy. The start is scratch, a registered
model, or a checkpoint file the user names. At the end the best weights are
evaluated on validation and test (overall and per skin type, device,
modality and meta-domain, with bootstrap intervals), exported to ONNX with a
parity check, optionally quantised to int8 (accuracy change measured on the
validation split), written to ``models/<id>/`` and handed to the runner for
registration with their parent, exact image ids and split.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dermdesk.inference.preprocess import PreprocessSpec
from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import ImageFilter, Library
from dermdesk.library.model_store import ModelRecord, get_model, model_dir, new_model_id
from dermdesk.library.store import sha256_file
from dermdesk.ml import checkpoints, metrics
from dermdesk.ml.cached_data import CachedEvalViews, CachedTrainViews, cache_for, train_inputs
from dermdesk.ml.config import FinetuneConfig
from dermdesk.ml.data import (
    Sample,
    balanced_weights,
    class_counts,
    collect_samples,
    subgroups,
)
from dermdesk.ml.loop import Control, DistEnv, TrainResult, train
from dermdesk.ml.models import (
    build_model,
    classifier_head,
    count_parameters,
    fit_pos_embed,
    remap_head,
)
from dermdesk.ml.splits import grouped_split, item_from_row, summarize
from dermdesk.ml.tensor_augment import PRESETS as AUGMENTS

SPLIT_NAMES = ("train", "val", "test")
SPLIT_METHOD = "patient-grouped (else lesion), stratified by diagnosis x Fitzpatrick group"


class FinetuneTask:
    """The fine-tuning job as a :class:`dermdesk.ml.loop.TrainTask`."""

    def __init__(self, library_dir: Path, cfg: FinetuneConfig, control: Control) -> None:
        self.library_dir = library_dir
        self.cfg = cfg
        self.control = control
        self.spec = PreprocessSpec(size=cfg.img_size)
        self.parents: list[str] = []
        self.init_note = "random initialisation"
        self._eval_sets: dict[str, CachedEvalViews] = {}
        self._init_weights: dict[str, Any] | None = None
        self.split_method: str | None = None  # how the split was made, when not the usual way

    # -- data ----------------------------------------------------------------------------------

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        with Library.open(self.library_dir, readonly=True) as lib:
            # Images a curator excluded never train or test a model.
            flt = ImageFilter(**{**self.cfg.filter, "labelled": True, "excluded": False})
            rows = {r["id"]: r for r in lib.images(flt, order="id")}
            if saved_state:
                self._restore_split(saved_state, rows)
            elif self.cfg.split:
                from dermdesk.library.split_store import assignment

                self._stored_split(rows, assignment(lib, self.cfg.split))
            else:
                self._new_split(rows)
            every = collect_samples(lib, flt, self.classes, self.cfg.tone_groups)
            members = {name: set(ids) for name, ids in self.split_ids.items()}
            self.samples = {
                name: [s for s in every if s.image_id in ids] for name, ids in members.items()
            }
            # A resumed job gets its weights from the checkpoint, not from where it started.
            self._init_weights = None if saved_state else self._resolve_init(lib)
        self.cache = cache_for(
            self.library_dir,
            self.spec,
            [s for part in self.samples.values() for s in part],
            log=self.control.log,
            should_stop=self.control.should_stop,
        )
        if self.control.should_stop():
            raise JobCancelled("cancelled while caching the training images")
        counts = {k: len(v) for k, v in self.samples.items()}
        self.control.log(f"classes {', '.join(self.classes)}; images {counts}")
        if not self.samples["val"]:
            raise ValueError("no validation images: label more images (or more patients)")

    def _new_split(self, rows: dict[str, dict[str, Any]]) -> None:
        self.classes = self.cfg.classes or self._default_classes(rows)
        keep = [r for r in rows.values() if r["diagnosis"] in self.classes]
        if self.cfg.max_images and len(keep) > self.cfg.max_images:
            rng = np.random.default_rng(self.cfg.split_seed)
            keep = [keep[i] for i in sorted(rng.choice(len(keep), self.cfg.max_images, False))]
        items = [item_from_row(r) for r in keep]
        split = grouped_split(items, self.cfg.fractions, self.cfg.split_seed)
        self.split_ids = {n: sorted(i for i, s in split.items() if s == n) for n in SPLIT_NAMES}
        self.split_summary = summarize(split, items)

    def _stored_split(self, rows: dict[str, dict[str, Any]], parts: dict[str, str]) -> None:
        """The parts of a stored split, restricted to labelled images of the classes."""
        self.classes = self.cfg.classes or self._default_classes(
            {i: r for i, r in rows.items() if i in parts}
        )
        keep = [r for i, r in rows.items() if i in parts and r["diagnosis"] in self.classes]
        if not keep:
            raise ValueError(f"split {self.cfg.split!r} holds no labelled image of the classes")
        split = {r["id"]: parts[r["id"]] for r in keep}
        self.split_ids = {n: sorted(i for i, s in split.items() if s == n) for n in SPLIT_NAMES}
        self.split_summary = summarize(split, [item_from_row(r) for r in keep])

    def _restore_split(self, saved: dict[str, Any], rows: dict[str, dict[str, Any]]) -> None:
        """A resumed job trains on exactly the images and split it started with."""
        self.classes = list(saved["classes"])
        self.split_ids = {n: [i for i in saved["split"][n] if i in rows] for n in SPLIT_NAMES}
        self.split_summary = saved["split_summary"]
        self.parents = list(saved.get("parents", []))
        self.init_note = str(saved.get("init_note", self.init_note))
        lost = sum(len(saved["split"][n]) - len(self.split_ids[n]) for n in SPLIT_NAMES)
        if lost:
            self.control.log(f"{lost} images of the split lost their label since the start")

    def _default_classes(self, rows: dict[str, dict[str, Any]]) -> list[str]:
        from dermdesk import taxonomy

        counts: dict[str, int] = {}
        for r in rows.values():
            if r["source"] != "synthetic":
                counts[r["diagnosis"]] = counts.get(r["diagnosis"], 0) + 1
        # OTHER lumps unrelated conditions together; it is a class only when asked for.
        order = [c for c in taxonomy.diagnoses() if c != taxonomy.OTHER]
        classes = [c for c in order if counts.get(c, 0) >= self.cfg.min_class_images]
        if len(classes) < 2:
            raise ValueError(
                f"need at least 2 diagnoses with {self.cfg.min_class_images}+ labelled images; "
                f"have {dict(sorted(counts.items()))}"
            )
        return classes

    def state(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "split": self.split_ids,
            "split_summary": self.split_summary,
            "parents": self.parents,
            "init_note": self.init_note,
        }

    def train_set(self) -> CachedTrainViews:
        return CachedTrainViews(
            self.cache,
            self.samples["train"],
            seed=self.cfg.loop.seed,
            augment=AUGMENTS[self.cfg.augment],
        )

    def eval_set(self, name: str) -> CachedEvalViews:
        """Validation/test views: the inference centre crop of the cached images."""
        if name not in self._eval_sets:
            self._eval_sets[name] = CachedEvalViews(self.cache, self.samples[name], self.spec)
        return self._eval_sets[name]

    def train_weights(self) -> np.ndarray | None:
        if self.cfg.balance != "sampler":
            return None
        return balanced_weights(self.samples["train"], len(self.classes))

    def default_name(self) -> str:
        return f"{self.cfg.arch} fine-tuned {time.strftime('%Y-%m-%d %H:%M')}"

    def extra_metrics(self) -> dict[str, Any]:
        """What a job kind built on fine-tuning adds to the model's metrics."""
        return {}

    # -- model and loss ------------------------------------------------------------------------

    def _resolve_init(self, lib: Library) -> dict[str, Any] | None:
        init = self.cfg.init
        if init == "scratch":
            return None
        path = Path(init).expanduser()
        if path.suffix in (".pt", ".pth", ".bin", ".ckpt", ".safetensors") or path.is_file():
            self.init_note = f"weights file {path.name}"
            return checkpoints.load_file(path)
        parent = get_model(lib, init)
        if parent["architecture"] != self.cfg.arch:
            raise ValueError(
                f"model {parent['id']} is a {parent['architecture']} {parent['kind']}; this job "
                f"trains {self.cfg.arch} (give --arch {parent['architecture']})"
            )
        self.parents = [parent["id"]]
        self.init_note = f"registered model {parent['id']} ({parent['name']})"
        return checkpoints.load_file(model_dir(lib.root, parent["id"]) / "model.pt")

    def build_model(self) -> nn.Module:
        model = build_model(self.cfg.arch, len(self.classes), self.cfg.img_size)
        if self._init_weights is not None:
            weights = checkpoints.state_dict_of(self._init_weights, self.init_note)
            head = classifier_head(model)
            old = self._init_weights.get("classes")
            if isinstance(old, list) and old != self.classes:
                weights = remap_head(weights, model, old, self.classes)
            weights, resampled = fit_pos_embed(weights, model)
            if resampled:
                self.control.log(resampled)
            loaded, total = checkpoints.load_into(model, weights, self.init_note)
            fitted = head[0] in weights and weights[head[0]].shape[0] == len(self.classes)
            self.control.log(
                f"started from {self.init_note}: {loaded}/{total} tensors loaded"
                + ("" if fitted else "; new classifier head")
            )
        elif self.init_note == "random initialisation":
            self.control.log(f"started from scratch ({self.cfg.arch})")
        self._init_weights = None  # free the memory
        self._class_weight = self._loss_weights()
        return model

    def _loss_weights(self) -> torch.Tensor | None:
        if self.cfg.balance != "loss":
            return None
        counts = class_counts(self.samples["train"], len(self.classes)).astype(np.float64)
        w = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(w, dtype=torch.float32)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        x, y = train_inputs(batch, device, self.cfg.img_size)
        logits = model(x).float()
        weight = self._class_weight.to(device) if self._class_weight is not None else None
        return nn.functional.cross_entropy(
            logits, y, weight=weight, label_smoothing=self.cfg.label_smoothing
        )

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        y, probs = predict_torch(
            model, self.eval_set("val"), device, should_stop=self.control.should_stop
        )
        bacc = metrics.balanced_accuracy(y, probs) or 0.0
        loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1))))
        return {"score": bacc, "val_balanced_accuracy": bacc, "val_loss": loss}


def predict_torch(
    model: nn.Module,
    dataset: Any,
    device: torch.device,
    batch_size: int = 64,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities of a dataset (eval views); cancellable per batch."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    ys, ps = [], []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            if should_stop is not None and should_stop():
                model.train(was_training)
                raise JobCancelled("cancelled during evaluation")
            ps.append(torch.softmax(model(x.to(device)).float(), dim=1).cpu().numpy())
            ys.append(y.numpy())
    model.train(was_training)
    if not ys:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.float64)
    return np.concatenate(ys), np.concatenate(ps)


def cached_log_probs(
    model: nn.Module,
    cache: Any,
    samples: Sequence[Any],
    spec: PreprocessSpec,
    n_classes: int,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """A model's log-probabilities (float32, ``(len(samples), n_classes)``) on the inference
    view of cached samples, on the CPU: the fixed targets distillation and learning without
    forgetting train toward, computed once."""
    if not samples:
        return np.zeros((0, n_classes), dtype=np.float32)
    views = CachedEvalViews(cache, list(samples), spec)
    _, probs = predict_torch(model, views, torch.device("cpu"), should_stop=should_stop)
    return np.log(np.clip(probs, 1e-8, 1.0)).astype(np.float32)


# -- the job ---------------------------------------------------------------------------------


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Entry point of the ``finetune`` job kind (runs in the worker process)."""
    cfg = FinetuneConfig.from_params(ctx.params)
    if cfg.devices > 1:
        from dermdesk.ml.distributed import run_under_torchrun

        return run_under_torchrun(ctx, cfg)
    return finetune(ctx.library_dir, cfg, ctx, ctx.checkpoint_path, resume=ctx.resume)


def finetune(
    library_dir: Path,
    cfg: FinetuneConfig,
    control: Control,
    checkpoint_path: Path,
    *,
    resume: bool = False,
    dist: DistEnv | None = None,
) -> dict[str, Any]:
    """Train, evaluate, export and write a model folder; returns the job result."""
    task = FinetuneTask(library_dir, cfg, control)
    result, model = train(task, cfg.loop, control, checkpoint_path, resume=resume, dist=dist)
    if dist is not None and not dist.is_main:
        return {}
    return finalize(library_dir, cfg, task, result, model, control)


def finalize(
    library_dir: Path,
    cfg: FinetuneConfig,
    task: FinetuneTask,
    result: TrainResult,
    model: nn.Module,
    control: Control,
) -> dict[str, Any]:
    """Best weights -> metrics, model files and the registration record."""
    model = model.to("cpu").eval()
    if result.best_state:
        model.load_state_dict(result.best_state)
    control.progress(1.0, "evaluating on validation and test", force=True)
    device = torch.device("cpu")
    # Cancelling now keeps the training checkpoint: a resume redoes only this last part.
    evals = {
        name: _evaluate_split(task, name, model, device, cfg, control) for name in ("val", "test")
    }
    if control.should_stop():
        raise JobCancelled("cancelled before export")
    model_id = new_model_id()
    folder = model_dir(library_dir, model_id)
    try:
        onnx_info = _write_model_files(task, cfg, model, model_id, folder, control)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-written model folder stays behind
        raise
    record = _record(cfg, task, result, model, model_id, folder, evals, onnx_info, library_dir)
    (folder / "card.json").write_text(json.dumps(_card(record), indent=2, sort_keys=True))
    test = evals["test"]["overall"]
    return {
        "message": f"model {model_id}: test {metrics.headline(test)}"
        if test["n"]
        else f"model {model_id}: val {metrics.headline(evals['val']['overall'])}",
        "model": record.to_json(),
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "best_val_balanced_accuracy": result.best_score,
    }


def _write_model_files(
    task: FinetuneTask,
    cfg: FinetuneConfig,
    model: nn.Module,
    model_id: str,
    folder: Path,
    control: Control,
) -> dict[str, Any]:
    """model.pt, model.onnx (parity-checked) and optionally model.int8.onnx; ONNX figures."""
    from dermdesk.ml import export

    folder.mkdir(parents=True, exist_ok=True)
    meta = export.metadata(task.classes, task.spec, cfg.arch, model_id)
    checkpoints.save_atomic(
        checkpoints.model_file_payload(
            model,
            arch=cfg.arch,
            classes=task.classes,
            preprocess_json=task.spec.to_json(),
            extra={"img_size": cfg.img_size, "model_id": model_id},
        ),
        folder / "model.pt",
    )
    control.progress(1.0, "exporting to ONNX", force=True)
    val = task.eval_set("val")
    parity_batch = np.stack([val[i][0].numpy() for i in range(min(16, len(val)))])
    report = export.export_checked(model, task.spec, folder / "model.onnx", meta, parity_batch)
    control.log(f"ONNX export: max |logit diff| vs torch {report.max_abs_diff:.2e}")
    onnx_info: dict[str, Any] = report.to_json()
    if cfg.quantize:
        onnx_info["int8"] = _quantize_and_measure(task, folder, meta, control)
    return onnx_info


def _evaluate_split(
    task: FinetuneTask,
    name: str,
    model: nn.Module,
    device: torch.device,
    cfg: FinetuneConfig,
    control: Control,
) -> dict[str, Any]:
    samples: list[Sample] = task.samples[name]
    y, probs = predict_torch(model, task.eval_set(name), device, should_stop=control.should_stop)
    if not len(y):
        return {"overall": {"n": 0}}
    return metrics.evaluate_groups(
        y,
        probs,
        task.classes,
        subgroups(samples),
        malignant=cfg.malignant,
        n_boot=cfg.n_boot,
        seed=cfg.split_seed,
    )


def _quantize_and_measure(
    task: FinetuneTask, folder: Path, meta: dict[str, str], control: Control
) -> dict[str, Any]:
    """int8 copy of the model and its accuracy change on the validation split."""
    from dermdesk.inference.predictor import OnnxClassifier
    from dermdesk.ml.export import quantize_int8

    quantize_int8(folder / "model.onnx", folder / "model.int8.onnx", meta)
    val = task.eval_set("val")
    y = np.array([s.label for s in task.samples["val"]])
    sessions = [OnnxClassifier(folder / name) for name in ("model.onnx", "model.int8.onnx")]
    fp32_parts, int8_parts = [], []
    for start in range(0, len(val), 64):
        x = np.stack([val[i][0].numpy() for i in range(start, min(start + 64, len(val)))])
        fp32_parts.append(sessions[0].predict(x))
        int8_parts.append(sessions[1].predict(x))
    fp32, int8 = np.concatenate(fp32_parts), np.concatenate(int8_parts)
    bacc32 = metrics.balanced_accuracy(y, fp32) or 0.0
    bacc8 = metrics.balanced_accuracy(y, int8) or 0.0
    out: dict[str, Any] = {
        "file": "model.int8.onnx",
        "sha256": sha256_file(folder / "model.int8.onnx"),  # checked before every use
        "val_images": len(y),
        "val_balanced_accuracy_fp32": bacc32,
        "val_balanced_accuracy_int8": bacc8,
        "val_accuracy_fp32": metrics.accuracy(y, fp32),
        "val_accuracy_int8": metrics.accuracy(y, int8),
        "top1_agreement": float(np.mean(fp32.argmax(1) == int8.argmax(1))),
        "max_abs_prob_diff": float(np.abs(fp32 - int8).max()),
        "balanced_accuracy_change_points": 100 * (bacc8 - bacc32),
    }
    control.log(
        f"int8: validation balanced accuracy {bacc32:.3f} -> {bacc8:.3f} "
        f"({out['balanced_accuracy_change_points']:+.1f} points), "
        f"top-1 agreement {out['top1_agreement']:.3f}"
    )
    return out


def _record(
    cfg: FinetuneConfig,
    task: FinetuneTask,
    result: TrainResult,
    model: nn.Module,
    model_id: str,
    folder: Path,
    evals: dict[str, Any],
    onnx_info: dict[str, Any],
    library_dir: Path,
) -> ModelRecord:
    onnx_path = folder / "model.onnx"
    evals_only = [h for h in result.history if "score" in h]
    return ModelRecord(
        id=model_id,
        name=cfg.name or task.default_name(),
        kind="classifier",
        architecture=cfg.arch,
        file=onnx_path.relative_to(library_dir).as_posix(),
        sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        parents=task.parents,
        training_set={
            "classes": task.classes,
            "filter": cfg.filter,
            "method": task.split_method
            or (f"stored split {cfg.split!r}" if cfg.split else SPLIT_METHOD),
            "stored_split": cfg.split,
            "fractions": list(cfg.fractions),
            "seed": cfg.split_seed,
            "split": task.split_ids,
            "summary": task.split_summary,
            "synthetic_in_training": sum(
                1 for s in task.samples["train"] if s.source == "synthetic"
            ),
        },
        params={
            **cfg.to_params(),
            "init_from": task.init_note,
            "parameters": count_parameters(model),
            "preprocess": json.loads(task.spec.to_json()),
        },
        metrics={
            "val": evals["val"],
            "test": evals["test"],
            "onnx": onnx_info,
            **task.extra_metrics(),
            "training": {
                "steps": result.steps,
                "epochs": round(result.epochs_done, 2),
                "best_step": result.best_step,
                "best_val_balanced_accuracy": result.best_score,
                "stop_reason": result.stop_reason,
                "seconds": round(result.seconds, 1),
                "images_seen": result.images_seen,
                "evaluations": evals_only,
                "loss_curve": thin_history([h for h in result.history if "train_loss" in h], 200),
            },
        },
    )


def thin_history(rows: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    if len(rows) <= keep:
        return rows
    idx = np.linspace(0, len(rows) - 1, keep).round().astype(int)
    return [rows[i] for i in idx]


def _card(record: ModelRecord) -> dict[str, Any]:
    """The human-readable summary kept next to the model files."""
    test = record.metrics["test"].get("overall", {})
    return {
        "id": record.id,
        "name": record.name,
        "architecture": record.architecture,
        "parents": record.parents,
        "classes": record.training_set["classes"],
        "split": record.training_set["summary"],
        "test_balanced_accuracy": test.get("balanced_accuracy"),
        "onnx": record.metrics["onnx"],
        "training": {k: v for k, v in record.metrics["training"].items() if k != "loss_curve"},
    }
