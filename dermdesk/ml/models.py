"""Model factory: every network the app trains is built here, never downloaded.

Architectures are timm models created with ``pretrained=False``; weights come
from the library's own models, a checkpoint file the user names, or random
initialisation. ``vit_test`` is a tiny ViT for tests and quick checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from dermdesk.ml.config import ARCH_NAMES


@dataclass(frozen=True)
class Arch:
    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    default_size: int = 224
    description: str = ""
    sized: bool = True  # built for one input size (ViTs); a CNN takes any size


ARCHS: dict[str, Arch] = {
    "vit_tiny": Arch("vit_tiny_patch16_224", description="ViT-Ti/16, 5.7M parameters (student)"),
    "vit_small": Arch("vit_small_patch16_224", description="ViT-S/16, 22M parameters"),
    "vit_base": Arch("vit_base_patch16_224", description="ViT-B/16, 86M parameters (teacher)"),
    # A small CNN: trains ~1.4x faster than ViT-Tiny on a CPU at 112 px. From scratch on
    # PAD-UFES-20 neither learns much (both ~0.3 balanced accuracy; scripts/train_reference.py).
    "resnet10t": Arch("resnet10t", sized=False, description="ResNet-10-T, 4.9M parameters"),
    # The gap study's reference CNN (issue 15): from scratch, the baseline to beat.
    "resnet18": Arch("resnet18", sized=False, description="ResNet-18, 11.2M parameters"),
    "vit_tiny_8": Arch(
        "vit_tiny_patch16_224",
        {"patch_size": 8},
        default_size=112,
        description="ViT-Ti/8 at 112 px (the MAE recipe's small student)",
    ),
    "vit_small_8": Arch(
        "vit_small_patch16_224",
        {"patch_size": 8},
        default_size=112,
        description="ViT-S/8 at 112 px (the MAE recipe's teacher)",
    ),
    "vit_mini_8": Arch(
        "vit_tiny_patch16_224",
        {"patch_size": 8, "embed_dim": 96, "depth": 6, "num_heads": 3},
        default_size=64,
        description="6-layer ViT-Mini/8, 0.7M parameters (a CPU-sized student)",
    ),
    "vit_test": Arch(
        "vit_tiny_patch16_224",
        {"patch_size": 8, "embed_dim": 48, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0},
        default_size=32,
        description="2-layer ViT for tests (0.05M parameters)",
    ),
    # DeiT students: a ViT with a distillation token and head (distill --distill-token).
    "deit_tiny_8": Arch(
        "deit_tiny_distilled_patch16_224",
        {"patch_size": 8},
        default_size=112,
        description="DeiT-Ti/8 at 112 px with a distillation token (a distillation student)",
    ),
    "deit_test": Arch(
        "deit_tiny_distilled_patch16_224",
        {"patch_size": 8, "embed_dim": 48, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0},
        default_size=32,
        description="2-layer DeiT with a distillation token, for tests",
    ),
}


assert tuple(ARCHS) == ARCH_NAMES, "keep dermdesk.ml.config.ARCH_NAMES in step"


def build_model(arch: str, num_classes: int, img_size: int | None = None) -> nn.Module:
    """A freshly initialised classifier of architecture ``arch``."""
    try:
        spec = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}") from None
    kwargs: dict[str, Any] = dict(spec.kwargs)
    if spec.sized:
        kwargs["img_size"] = img_size or spec.default_size
    model: nn.Module = timm.create_model(
        spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs
    )
    return model


def classifier_head(model: nn.Module) -> tuple[str, str]:
    """State-dict keys of the final layer's weight and bias (what changes with the classes)."""
    get = getattr(model, "get_classifier", None)
    head = get() if get else None
    if isinstance(head, tuple):  # DeiT: (class head, distillation head); the class head
        head = head[0]
    for name, module in model.named_modules():
        if module is head:
            return f"{name}.weight", f"{name}.bias"
    raise ValueError("model has no classifier head")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def remap_head(
    state: dict[str, torch.Tensor],
    model: nn.Module,
    old_classes: list[str],
    new_classes: list[str],
) -> dict[str, torch.Tensor]:
    """Adapt a parent's classifier rows to new classes: shared classes keep their rows."""
    w_key, b_key = classifier_head(model)
    if w_key not in state:
        return state
    fresh = model.state_dict()
    weight, bias = fresh[w_key].clone(), fresh[b_key].clone()
    for i, code in enumerate(new_classes):
        if code in old_classes:
            j = old_classes.index(code)
            weight[i] = state[w_key][j]
            bias[i] = state[b_key][j]
    return {**state, w_key: weight, b_key: bias}


def fit_pos_embed(
    weights: dict[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], str | None]:
    """Resample a ViT's position embeddings to ``model``'s patch grid when the input sizes
    differ (a backbone pretrained at 112 px fine-tuned at 224 px); returns the weights and
    a note saying what was resampled, or None."""
    own = model.state_dict().get("pos_embed")
    got = weights.get("pos_embed")
    if own is None or got is None or got.shape == own.shape or got.shape[-1] != own.shape[-1]:
        return weights, None
    from timm.layers import resample_abs_pos_embed

    prefix = int(getattr(model, "num_prefix_tokens", 1))
    old_side = math.isqrt(got.shape[1] - prefix)
    new_side = math.isqrt(own.shape[1] - prefix)
    if old_side * old_side != got.shape[1] - prefix:
        return weights, None  # not a square grid: left to load_into's shape check
    resampled = resample_abs_pos_embed(
        got, [new_side, new_side], [old_side, old_side], num_prefix_tokens=prefix
    )
    note = f"position embeddings resampled from a {old_side}x{old_side} to a "
    return {**weights, "pos_embed": resampled}, note + f"{new_side}x{new_side} patch grid"
