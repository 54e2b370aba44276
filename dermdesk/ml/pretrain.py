"""MAE pretraining of a ViT on the library's own images: the ``pretrain`` job kind.

No pretrained weights exist offline, so a ViT gets its features from the library:
masked-autoencoder pretraining (:mod:`dermdesk.ml.mae`) on every image a filter picks
(labels unused; synthetic images included when the filter lets them in), through the
one training loop (checkpoints, cancel and resume, bf16 on a GPU).

At each evaluation the job

- saves a reconstruction preview (original / masked / reconstruction of a fixed set of
  images with a fixed mask) as ``previews/eval_NNN.png`` in the job folder (the jobs
  dock shows the latest);
- scores a *linear probe*: ridge regression from the encoder's mean-pooled patch tokens
  to the diagnosis, on a patient-grouped 80/20 split of the labelled images among them,
  class-balanced, its balanced accuracy the job's progress measure (a falling
  reconstruction loss alone does not say the features are useful).

The encoder's final weights are registered as model kind ``backbone`` (a timm ViT state
dict without a head), with the exact image ids it saw; fine-tuning, distillation and
the experiments start from it with ``--from M-...``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from dermdesk.inference.preprocess import PreprocessSpec
from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import ImageFilter, Library
from dermdesk.library.model_store import ModelRecord, model_dir, new_model_id
from dermdesk.ml import checkpoints, metrics
from dermdesk.ml.cached_data import CachedEvalViews, CachedTrainViews, cache_for, train_inputs
from dermdesk.ml.config import PretrainConfig
from dermdesk.ml.data import Sample, collect_samples
from dermdesk.ml.finetune import thin_history
from dermdesk.ml.loop import Control, TrainResult, train
from dermdesk.ml.mae import MaskedAutoencoder, preview_grid
from dermdesk.ml.models import build_model, count_parameters
from dermdesk.ml.splits import grouped_split, item_from_row
from dermdesk.ml.tensor_augment import N_PARAMS
from dermdesk.ml.tensor_augment import PRESETS as AUGMENTS

PREVIEW_DIR = "previews"
PROBE_FRACTIONS = (0.8, 0.2, 0.0)


class MaskedViews(CachedTrainViews):
    """Training items whose parameters carry the mask noise after the augmentation's:
    drawn from (seed, epoch, index), so a resumed job masks exactly as it would have."""

    def __init__(self, *args: Any, n_patches: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n_patches = n_patches

    def item(self, i: int, epoch: int) -> tuple[np.ndarray, int, np.ndarray]:
        pixels, label, params = super().item(i, epoch)
        noise = np.random.default_rng((self.seed, epoch, i, 0x4D4145)).random(self.n_patches)
        return pixels, label, np.concatenate([params, noise.astype(params.dtype)])


class PretrainTask:
    """MAE pretraining as a :class:`dermdesk.ml.loop.TrainTask`."""

    def __init__(
        self, library_dir: Path, cfg: PretrainConfig, control: Control, work_dir: Path
    ) -> None:
        self.library_dir = library_dir
        self.cfg = cfg
        self.control = control
        self.spec = PreprocessSpec(size=cfg.img_size)
        self.preview_dir = work_dir / PREVIEW_DIR
        self.probe_classes: list[str] = []
        self.probe_split: dict[str, list[str]] = {"train": [], "val": []}

    # -- data ----------------------------------------------------------------------------------

    def prepare(self, saved_state: dict[str, Any] | None) -> None:
        with Library.open(self.library_dir, readonly=True) as lib:
            flt = ImageFilter(**{**self.cfg.filter, "excluded": False})
            rows = {r["id"]: r for r in lib.images(flt, order="id")}
            if saved_state:
                ids = [i for i in saved_state["image_ids"] if i in rows]
                self.probe_classes = list(saved_state["probe_classes"])
                self.probe_split = saved_state["probe_split"]
            else:
                ids = self._choose(sorted(rows))
                self.probe_classes = self._probe_classes([rows[i] for i in ids])
                self.probe_split = self._split_probe([rows[i] for i in ids])
            every = collect_samples(lib, flt, self.probe_classes)
        keep = set(ids)
        self.samples: list[Sample] = [s for s in every if s.image_id in keep]
        if not self.samples:
            raise ValueError("the pretraining filter matches no images")
        by_id = {s.image_id: s for s in self.samples}
        self.probe = {n: [by_id[i] for i in v if i in by_id] for n, v in self.probe_split.items()}
        self.cache = cache_for(
            self.library_dir,
            self.spec,
            self.samples,
            log=self.control.log,
            should_stop=self.control.should_stop,
        )
        if self.control.should_stop():
            raise JobCancelled("cancelled while caching the training images")
        rng = np.random.default_rng(0)
        order = rng.permutation(len(self.samples))[: self.cfg.preview_images]
        self.previews = CachedEvalViews(
            self.cache, [self.samples[i] for i in sorted(order)], self.spec
        )
        probe_note = (
            f"linear probe on {', '.join(self.probe_classes)}: "
            f"{len(self.probe['train'])} / {len(self.probe['val'])} images"
            if self.probe_classes
            else "no linear probe (fewer than 2 diagnoses with "
            f"{self.cfg.probe_min_class_images}+ labelled images)"
        )
        self.control.log(f"pretraining on {len(self.samples)} images; {probe_note}")

    def _choose(self, ids: list[str]) -> list[str]:
        if self.cfg.max_images and len(ids) > self.cfg.max_images:
            rng = np.random.default_rng(self.cfg.loop.seed)
            return [ids[i] for i in sorted(rng.choice(len(ids), self.cfg.max_images, False))]
        return ids

    def _probe_classes(self, rows: list[dict[str, Any]]) -> list[str]:
        from dermdesk import taxonomy

        counts: dict[str, int] = {}
        for r in rows:
            if r["diagnosis"] and r["source"] != "synthetic":
                counts[r["diagnosis"]] = counts.get(r["diagnosis"], 0) + 1
        order = [c for c in taxonomy.diagnoses() if c != taxonomy.OTHER]
        classes = [c for c in order if counts.get(c, 0) >= self.cfg.probe_min_class_images]
        return classes if len(classes) >= 2 else []

    def _split_probe(self, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        labelled = [
            r for r in rows if r["diagnosis"] in self.probe_classes and r["source"] != "synthetic"
        ]
        split = grouped_split([item_from_row(r) for r in labelled], PROBE_FRACTIONS, seed=0)
        return {n: sorted(i for i, s in split.items() if s == n) for n in ("train", "val")}

    def state(self) -> dict[str, Any]:
        return {
            "image_ids": [s.image_id for s in self.samples],
            "probe_classes": self.probe_classes,
            "probe_split": self.probe_split,
        }

    def train_set(self) -> MaskedViews:
        return MaskedViews(
            self.cache,
            self.samples,
            seed=self.cfg.loop.seed,
            augment=AUGMENTS[self.cfg.augment],
            n_patches=self.n_patches,
        )

    def train_weights(self) -> np.ndarray | None:
        return None  # self-supervised: every image once per epoch

    # -- model and loss ------------------------------------------------------------------------

    def build_model(self) -> MaskedAutoencoder:
        encoder = build_model(self.cfg.arch, 0, self.cfg.img_size)
        model = MaskedAutoencoder(
            encoder,
            decoder_dim=self.cfg.decoder_dim,
            decoder_depth=self.cfg.decoder_depth,
            decoder_heads=self.cfg.decoder_heads,
            mask_ratio=self.cfg.mask_ratio,
            norm_pix=self.cfg.norm_pix,
        )
        self.n_patches = model.n_patches
        self.control.log(
            f"MAE {self.cfg.arch} at {self.cfg.img_size} px ({model.n_patches} patches of "
            f"{model.patch} px, {self.cfg.mask_ratio:.0%} masked); encoder "
            f"{count_parameters(encoder) / 1e6:.2f}M, decoder "
            f"{(count_parameters(model) - count_parameters(encoder)) / 1e6:.2f}M parameters"
        )
        return model

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        return mae_loss(model, batch, device, self.spec.size)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        mae: Any = getattr(model, "module", model)
        was_training = mae.training
        mae.eval()
        try:
            recon_loss = self._preview(mae, device)
            probe = self._probe(mae.encoder, device)
        finally:
            mae.train(was_training)
        out = {"val_recon_loss": recon_loss}
        if probe is not None:
            out["probe_balanced_accuracy"] = probe
        # The probe is the progress measure; without one, a lower reconstruction loss.
        out["score"] = probe if probe is not None else -recon_loss
        return out  # the loop logs these

    def _preview(self, mae: MaskedAutoencoder, device: torch.device) -> float:
        """Save original / masked / reconstruction of the fixed images; their masked loss."""
        x = torch.stack([self.previews[i][0] for i in range(len(self.previews))]).to(device)
        generator = torch.Generator().manual_seed(1234)
        noise = torch.rand(len(x), mae.n_patches, generator=generator).to(device)
        with torch.no_grad():
            loss = float(mae(x, noise)[0])
            masked, recon = mae.reconstruct(x, noise)
        self.preview_dir.mkdir(parents=True, exist_ok=True)
        n = len(list(self.preview_dir.glob("eval_*.png")))
        grid = preview_grid(x, masked, recon, columns=len(x))
        path = self.preview_dir / f"eval_{n:03d}.png"
        Image.fromarray(grid).save(path)
        shutil.copyfile(path, self.preview_dir / "latest.png")
        return loss

    def _probe(self, encoder: nn.Module, device: torch.device) -> float | None:
        if not self.probe_classes or not self.probe["train"] or not self.probe["val"]:
            return None
        feats = {
            name: pooled_features(
                encoder, CachedEvalViews(self.cache, samples, self.spec), device, self.control
            )
            for name, samples in self.probe.items()
        }
        ys = {name: np.array([s.label for s in samples]) for name, samples in self.probe.items()}
        probs = ridge_probe(feats["train"], ys["train"], feats["val"], len(self.probe_classes))
        return metrics.balanced_accuracy(ys["val"], probs)


def mae_loss(model: nn.Module, batch: Any, device: torch.device, size: int) -> torch.Tensor:
    """The MAE loss of a :class:`MaskedViews` batch: the augmentation runs on ``device``,
    the mask noise rides after the augmentation's parameters."""
    pixels, sizes, labels, params = batch
    x, _ = train_inputs((pixels, sizes, labels, params[:, :N_PARAMS]), device, size)
    loss: torch.Tensor = model(x, params[:, N_PARAMS:].to(device, non_blocking=True))[0]
    return loss


def pooled_features(
    encoder: nn.Module, views: CachedEvalViews, device: torch.device, control: Control
) -> np.ndarray:
    """Mean of the encoder's patch tokens (after its final norm) per image."""
    enc: Any = encoder
    out = []
    with torch.no_grad():
        for start in range(0, len(views), 64):
            if control.should_stop():
                raise JobCancelled("cancelled during evaluation")
            x = torch.stack([views[i][0] for i in range(start, min(start + 64, len(views)))])
            tokens = enc.forward_features(x.to(device)).float()
            out.append(tokens[:, enc.num_prefix_tokens :].mean(dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def ridge_probe(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, n_classes: int, lam: float = 1.0
) -> np.ndarray:
    """Class-balanced ridge regression onto one-hot labels; softmax of the val scores.

    Features are standardised on the training part; ``lam`` is fixed (nothing is tuned
    on the validation part, which only measures)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a = np.hstack([(train_x - mean) / std, np.ones((len(train_x), 1))])
    b = np.hstack([(val_x - mean) / std, np.ones((len(val_x), 1))])
    counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
    w = (len(train_y) / (n_classes * np.maximum(counts, 1)))[train_y]
    target = np.eye(n_classes)[train_y]
    reg = lam * len(train_x) * np.eye(a.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    beta = np.linalg.solve(a.T @ (a * w[:, None]) + reg, a.T @ (target * w[:, None]))
    scores = b @ beta
    scores = np.exp(5 * (scores - scores.max(1, keepdims=True)))
    probs: np.ndarray = scores / scores.sum(1, keepdims=True)
    return probs


# -- the job ---------------------------------------------------------------------------------


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Entry point of the ``pretrain`` job kind (in the worker process)."""
    cfg = PretrainConfig.from_params(ctx.params)
    task = PretrainTask(ctx.library_dir, cfg, ctx, ctx.work_dir)
    result, model = train(task, cfg.loop, ctx, ctx.checkpoint_path, resume=ctx.resume)
    return finalize(ctx.library_dir, cfg, task, result, model, ctx)


def finalize(
    library_dir: Path,
    cfg: PretrainConfig,
    task: PretrainTask,
    result: TrainResult,
    model: nn.Module,
    control: Control,
) -> dict[str, Any]:
    """The encoder's final weights -> ``models/<id>/model.pt`` and a backbone record."""
    mae: Any = getattr(model, "module", model)
    encoder = mae.encoder.to("cpu").eval()
    if control.should_stop():
        raise JobCancelled("cancelled before registering")
    model_id = new_model_id()
    folder = model_dir(library_dir, model_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        checkpoints.save_atomic(
            checkpoints.model_file_payload(
                encoder,
                arch=cfg.arch,
                classes=[],
                preprocess_json=task.spec.to_json(),
                extra={"img_size": cfg.img_size, "model_id": model_id, "kind": "backbone"},
            ),
            folder / "model.pt",
        )
        latest = task.preview_dir / "latest.png"
        if latest.is_file():
            shutil.copyfile(latest, folder / "reconstruction.png")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    record = _record(cfg, task, result, encoder, model_id, folder, library_dir)
    (folder / "card.json").write_text(json.dumps(record.to_json()["metrics"], indent=2))
    evals = [h for h in result.history if "score" in h]
    probe = evals[-1].get("probe_balanced_accuracy") if evals else None
    return {
        "message": f"backbone {model_id}: "
        + (f"linear probe {probe:.3f}" if probe is not None else "no linear probe")
        + f", reconstruction loss {evals[-1]['val_recon_loss']:.4f}"
        if evals
        else f"backbone {model_id}",
        "model": record.to_json(),
        "steps": result.steps,
    }


def _record(
    cfg: PretrainConfig,
    task: PretrainTask,
    result: TrainResult,
    encoder: nn.Module,
    model_id: str,
    folder: Path,
    library_dir: Path,
) -> ModelRecord:
    path = folder / "model.pt"
    evals = [h for h in result.history if "score" in h]
    seen = result.images_seen
    return ModelRecord(
        id=model_id,
        name=cfg.name or f"{cfg.arch} MAE backbone {time.strftime('%Y-%m-%d %H:%M')}",
        kind="backbone",
        architecture=cfg.arch,
        file=path.relative_to(library_dir).as_posix(),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        parents=[],
        training_set={
            "filter": cfg.filter,
            "method": "self-supervised (MAE): every image the filter picks, labels unused",
            "image_ids": [s.image_id for s in task.samples],
            "synthetic_in_training": sum(1 for s in task.samples if s.source == "synthetic"),
            "probe": {"classes": task.probe_classes, "split": task.probe_split},
        },
        params={
            **cfg.to_params(),
            "parameters": count_parameters(encoder),
            "preprocess": json.loads(task.spec.to_json()),
        },
        metrics={
            "training": {
                "steps": result.steps,
                "epochs": round(result.epochs_done, 2),
                "seconds": round(result.seconds, 1),
                "images_seen": seen,
                "images_per_second": round(seen / result.seconds, 1) if result.seconds else None,
                "evaluations": evals,
                "loss_curve": thin_history([h for h in result.history if "train_loss" in h], 200),
            },
            "probe_balanced_accuracy": evals[-1].get("probe_balanced_accuracy") if evals else None,
        },
    )
