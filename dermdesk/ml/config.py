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
    "vit_test",
)


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
        known = {f.name for f in fields(cls)} - {"loop"}
        loop_keys = {f.name for f in fields(LoopConfig)}
        unknown = set(raw) - known - loop_keys - {"loop"}
        if unknown:
            raise ValueError(f"unknown fine-tuning option(s): {', '.join(sorted(unknown))}")
        loop = LoopConfig.from_dict(
            {**raw.get("loop", {}), **{k: v for k, v in raw.items() if k in loop_keys}}
        )
        cfg = cls(**{k: v for k, v in raw.items() if k in known}, loop=loop)
        cfg.fractions = tuple(cfg.fractions)  # type: ignore[assignment]
        _validate(cfg)
        return cfg

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return params


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
    if cfg.loop.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {cfg.loop.device!r}")
    if cfg.loop.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {cfg.loop.precision!r}")
    if cfg.augment not in ("full", "light", "none"):
        raise ValueError(f"augment must be full, light or none, not {cfg.augment!r}")
    if cfg.tone_groups not in ("rated", "rated_or_estimated"):
        raise ValueError(
            f"tone_groups must be rated or rated_or_estimated, not {cfg.tone_groups!r}"
        )
    if cfg.balance not in ("sampler", "loss", "none"):
        raise ValueError(f"balance must be sampler, loss or none, not {cfg.balance!r}")
