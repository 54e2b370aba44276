"""Training configuration: plain dataclasses, no torch (the CLI and GUI validate with them).

:class:`LoopConfig` holds what the one training loop uses; a job kind adds its
own options on top (:class:`FinetuneConfig` for fine-tuning). A job's
``params`` JSON is exactly ``FinetuneConfig.to_params()``; unknown options are
refused with a one-line error before any worker starts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ARCH_NAMES = (
    "vit_tiny",
    "vit_small",
    "vit_base",
    "resnet10t",
    "resnet18",
    "vit_tiny_8",
    "vit_small_8",
    "vit_mini_8",
    "vit_test",
    "deit_tiny_8",
    "deit_test",
)
# Students with DeiT's distillation token (distill --distill-token)
DEIT_ARCHS = ("deit_tiny_8", "deit_test")


@dataclass
class LoopConfig:
    """Hyper-parameters the loop itself uses (a task has its own on top)."""

    epochs: int = 30
    max_steps: int | None = None  # optimiser steps; stops earlier than ``epochs`` if reached
    batch_size: int = 32  # images per optimiser step, over all ranks
    micro_batch: int = 16  # images per forward pass per rank; accumulation makes up the rest
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.02
    grad_clip: float = 1.0
    eval_every: int = 0  # optimiser steps between evaluations; 0 = once per epoch
    patience: int = 5  # evaluations without improvement before early stopping
    device: str = "auto"  # auto (CUDA when present), cpu, cuda
    precision: str = "auto"  # auto (bf16 on CUDA, else fp32), bf16, fp32
    seed: int = 0
    num_workers: int = -1  # DataLoader workers; -1 = 0 on the CPU, a few on a GPU
    threads: int = 0  # CPU threads per process; 0 = all cores (split between local ranks)
    checkpoint_every_s: float = 120.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LoopConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**raw)


@dataclass
class FinetuneConfig:
    """A fine-tuning job's parameters (the job's ``params`` JSON)."""

    filter: dict[str, Any] = field(default_factory=dict)  # ImageFilter fields
    classes: list[str] | None = None  # default: every diagnosis with enough images
    min_class_images: int = 10
    arch: str = "vit_tiny"
    img_size: int = 224
    init: str = "scratch"  # scratch | a registered model id/name/'active' | a weights file path
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    split_seed: int = 0
    # A stored split's name (``curate split``): its train / val / test are used as they are,
    # so the model is tested on exactly the images an export of that split calls test.
    split: str | None = None
    balance: str = "sampler"  # sampler | loss | none
    label_smoothing: float = 0.1
    augment: str = "full"  # full (device and lighting variation), light, none
    quantize: bool = True
    name: str | None = None
    devices: int = 1
    max_images: int | None = None  # a seeded subset, for quick runs
    n_boot: int = 500
    malignant: str = "MEL"
    # Skin-type groups of the report: ratings only (default), or rated_or_estimated.
    tone_groups: str = "rated"
    loop: LoopConfig = field(default_factory=LoopConfig)

    @classmethod
    def from_params(cls, raw: dict[str, Any]) -> FinetuneConfig:
        cfg: FinetuneConfig = _from_params(cls, raw, "fine-tuning", LoopConfig())
        cfg.fractions = tuple(cfg.fractions)  # type: ignore[assignment]
        _validate(cfg)
        return cfg

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return params


def _from_params(cls: Any, raw: dict[str, Any], what: str, loop_defaults: LoopConfig) -> Any:
    """A job config from its params JSON: loop options flat or under ``loop``, over the
    kind's own loop defaults; unknown keys refused in one line."""
    known = {f.name for f in fields(cls)} - {"loop"}
    loop_keys = {f.name for f in fields(LoopConfig)}
    unknown = set(raw) - known - loop_keys - {"loop"}
    if unknown:
        raise ValueError(f"unknown {what} option(s): {', '.join(sorted(unknown))}")
    loop = LoopConfig.from_dict(
        {
            **asdict(loop_defaults),
            **raw.get("loop", {}),
            **{k: v for k, v in raw.items() if k in loop_keys},
        }
    )
    return cls(**{k: v for k, v in raw.items() if k in known}, loop=loop)


VIT_ARCHS = tuple(a for a in ARCH_NAMES if a.startswith("vit_"))


def _pretrain_loop() -> LoopConfig:
    # MAE's schedule (AdamW, 0.05 weight decay, warm-up then cosine, no clipping) with a
    # larger peak rate than its linear rule (1.5e-4 per 256 images) gives at batch 128:
    # that rule was set for batch 4,096 and 800 epochs, far more steps than a library has.
    # No early stopping: the probe measures progress, it is not a stopping rule.
    return LoopConfig(
        epochs=100,
        batch_size=128,
        micro_batch=64,
        lr=1e-3,
        warmup_frac=0.05,
        weight_decay=0.05,
        patience=10**6,
        grad_clip=0.0,
    )


@dataclass
class PretrainConfig:
    """An MAE pretraining job's parameters (kind ``pretrain``)."""

    filter: dict[str, Any] = field(default_factory=dict)  # ImageFilter fields
    arch: str = "vit_tiny"
    img_size: int = 224
    mask_ratio: float = 0.75
    decoder_dim: int = 256
    decoder_depth: int = 4
    decoder_heads: int = 8
    norm_pix: bool = True
    augment: str = "light"  # MAE wants little more than crops and flips
    max_images: int | None = None  # a seeded subset, for quick runs
    probe_min_class_images: int = 10
    preview_images: int = 8
    name: str | None = None
    loop: LoopConfig = field(default_factory=_pretrain_loop)

    @classmethod
    def from_params(cls, raw: dict[str, Any]) -> PretrainConfig:
        cfg: PretrainConfig = _from_params(cls, raw, "pretraining", _pretrain_loop())
        if cfg.arch not in VIT_ARCHS:
            raise ValueError(f"MAE pretrains a ViT: arch must be one of {', '.join(VIT_ARCHS)}")
        if not 0.0 < cfg.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be between 0 and 1, not {cfg.mask_ratio}")
        if cfg.augment not in ("full", "light", "none"):
            raise ValueError(f"augment must be full, light or none, not {cfg.augment!r}")
        if cfg.decoder_dim % 4 or cfg.decoder_dim % cfg.decoder_heads:
            raise ValueError("decoder_dim must be divisible by 4 and by decoder_heads")
        _validate_loop(cfg.loop)
        return cfg

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return params


@dataclass
class DistillConfig(FinetuneConfig):
    """A distillation job's parameters (kind ``distill``): a fine-tuning job whose loss adds
    the teacher's softened outputs; the teacher's classes and split are used as they are."""

    teacher: str = ""  # a registered classifier's id, id prefix or name
    arch: str = "vit_tiny"
    temperature: float = 4.0
    alpha: float = 0.5  # weight of the KL term; 1 - alpha on the hard labels
    # DeiT: the teacher's term is learnt through a distillation token of its own (a DeiT
    # student); the class token learns the labels; at inference the two heads average.
    distill_token: bool = False

    @classmethod
    def from_params(cls, raw: dict[str, Any]) -> DistillConfig:
        cfg: DistillConfig = _from_params(cls, raw, "distillation", LoopConfig())
        cfg.fractions = tuple(cfg.fractions)  # type: ignore[assignment]
        if not cfg.teacher:
            raise ValueError("distillation needs a teacher: a registered classifier's id or name")
        if cfg.temperature <= 0 or not 0.0 <= cfg.alpha <= 1.0:
            raise ValueError("temperature must be > 0 and alpha between 0 and 1")
        if cfg.split:
            raise ValueError("a student trains on its teacher's split: leave out --split")
        if cfg.distill_token and cfg.arch not in DEIT_ARCHS:
            raise ValueError(
                f"the distillation token needs a DeiT student (--arch {DEIT_ARCHS[0]}), "
                f"not {cfg.arch}"
            )
        _validate(cfg)
        return cfg


@dataclass
class CrossvalConfig(FinetuneConfig):
    """A cross-validation job's parameters (kind ``crossval``, issue 16's label review):
    ``folds`` patient-grouped folds; each is predicted by a model trained on the others."""

    folds: int = 5

    @classmethod
    def from_params(cls, raw: dict[str, Any]) -> CrossvalConfig:
        cfg: CrossvalConfig = _from_params(cls, raw, "cross-validation", LoopConfig())
        cfg.fractions = tuple(cfg.fractions)  # type: ignore[assignment]
        if not 2 <= cfg.folds <= 20:
            raise ValueError(f"folds must be between 2 and 20, not {cfg.folds}")
        if cfg.split:
            raise ValueError("cross-validation makes its own folds: leave out --split")
        _validate(cfg)
        return cfg


@dataclass
class AdaptConfig(FinetuneConfig):
    """A dermoscopic -> clinical adaptation job's parameters (kind ``adapt``, issue 18).

    Stage 1: multi-transform contrastive training on the filter's images of both
    modalities (fine-tuning's split). Stage 2: guided tuning of a start model (``init``)
    on the clinical training images of its own split, keeping its outputs on the
    dermoscopic ones (learning without forgetting) and its weights near it (L2-SP).
    ``fallback``: where adaptation cannot run (one modality only; stage 2 without a
    start model), fine-tune plainly instead of refusing; only when asked for."""

    stage: int = 1
    contrast_weight: float = 1.0
    contrast_temperature: float = 0.1
    lwf_weight: float = 1.0
    lwf_temperature: float = 2.0
    sp_weight: float = 0.01
    fallback: bool = False

    @classmethod
    def from_params(cls, raw: dict[str, Any]) -> AdaptConfig:
        cfg: AdaptConfig = _from_params(cls, raw, "adaptation", LoopConfig())
        cfg.fractions = tuple(cfg.fractions)  # type: ignore[assignment]
        if cfg.stage not in (1, 2):
            raise ValueError(f"stage must be 1 (contrastive) or 2 (guided tuning), not {cfg.stage}")
        if cfg.stage == 2 and cfg.init == "scratch" and not cfg.fallback:
            raise ValueError(
                "stage 2 tunes a stage-1 model: give --from M-... (or --fallback to fine-tune "
                "plainly from scratch)"
            )
        if cfg.stage == 2 and cfg.split:
            raise ValueError("stage 2 tunes on its start model's split: leave out --split")
        if min(cfg.contrast_weight, cfg.lwf_weight, cfg.sp_weight) < 0:
            raise ValueError("the adaptation's weights must be >= 0")
        if cfg.contrast_temperature <= 0 or cfg.lwf_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        _validate(cfg)
        return cfg


def _validate(cfg: FinetuneConfig) -> None:
    """One-line errors for option values no job could use."""
    if cfg.arch not in ARCH_NAMES:
        raise ValueError(f"unknown architecture {cfg.arch!r}; known: {', '.join(ARCH_NAMES)}")
    if cfg.devices < 1:
        raise ValueError("devices must be at least 1")
    if cfg.classes is not None:
        from dermdesk import taxonomy

        bad = [c for c in cfg.classes if c not in taxonomy.diagnoses()]
        if bad or len(cfg.classes) < 2:
            codes = ", ".join(taxonomy.diagnoses())
            raise ValueError(
                f"classes must be at least 2 diagnosis codes ({codes})"
                + (f"; unknown: {', '.join(bad)}" if bad else "")
            )
    _validate_loop(cfg.loop)
    if cfg.augment not in ("full", "light", "none"):
        raise ValueError(f"augment must be full, light or none, not {cfg.augment!r}")
    if cfg.tone_groups not in ("rated", "rated_or_estimated"):
        raise ValueError(
            f"tone_groups must be rated or rated_or_estimated, not {cfg.tone_groups!r}"
        )
    if cfg.balance not in ("sampler", "loss", "none"):
        raise ValueError(f"balance must be sampler, loss or none, not {cfg.balance!r}")


def _validate_loop(loop: LoopConfig) -> None:
    if loop.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {loop.device!r}")
    if loop.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {loop.precision!r}")
