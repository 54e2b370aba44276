"""Saving and safely loading weights: training checkpoints and model files.

Everything is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(weights_only=True)``: a file that carries any other
Python object (which could run code when unpickled) is refused, as is a file
that is not a PyTorch or safetensors checkpoint at all. Writes go to a
temporary file first and are renamed into place, so a killed job never
leaves half a checkpoint.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dermdesk.errors import one_line

MODEL_FORMAT = "dermdesk.model/1"
CHECKPOINT_FORMAT = "dermdesk.checkpoint/1"


class ModelFileError(ValueError):
    """A weights file that cannot be used; ``str(exc)`` says why in one line."""


class DiskFull(OSError):
    """A checkpoint or model file did not fit on the disk (the previous one is kept)."""

    def __str__(self) -> str:
        return str(self.strerror)


def save_atomic(obj: Mapping[str, Any], path: Path) -> None:
    """torch.save to ``path`` via a temporary file in the same folder; the file at
    ``path`` is replaced only by a complete one. A full disk is said as such."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        torch.save(dict(obj), tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a short write as RuntimeError
        tmp.unlink(missing_ok=True)
        if getattr(exc, "errno", None) == errno.ENOSPC or shutil.disk_usage(path.parent).free < (
            64 << 20
        ):
            raise DiskFull(
                errno.ENOSPC,
                f"the disk is full: {path.name} could not be written (the last complete "
                "one is kept; free some space and resume the job)",
            ) from None
        raise


def load_file(path: Path) -> dict[str, Any]:
    """Load a checkpoint or model file safely; raises ModelFileError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    # torch.save writes a zip archive; very old files are a bare pickle (protocol 2+).
    if head[:2] != b"PK" and head[:1] != b"\x80":
        raise ModelFileError(f"{path.name}: not a PyTorch checkpoint (unrecognised file content)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path.name}: refused: it holds Python objects other than weights, which could "
            "run code when loaded"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path.name}: damaged or not a PyTorch checkpoint ({one_line(exc, 100)})"
        ) from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path.name}: holds a {type(obj).__name__}, not a dict of weights")
    return obj


def _load_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file as load_st
    except ImportError:  # pragma: no cover - safetensors comes with timm
        raise ModelFileError(f"{path.name}: safetensors is not installed") from None
    try:
        return {"model": load_st(str(path))}
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{path.name}: damaged safetensors file ({exc})") from None


def state_dict_of(obj: Mapping[str, Any], name: str) -> dict[str, torch.Tensor]:
    """The model weights inside a loaded file (ours, timm's, or a bare state dict)."""
    for key in ("model", "state_dict", "model_state_dict"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner:
            obj = inner
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFileError(f"{name}: no model weights found in the file")
    # Weights saved from a DistributedDataParallel wrapper carry a 'module.' prefix.
    return {k.removeprefix("module."): v for k, v in tensors.items()}


def load_into(
    model: nn.Module, weights: Mapping[str, torch.Tensor], name: str, *, skip: tuple[str, ...] = ()
) -> tuple[int, int]:
    """Copy every weight whose name and shape fit; refuse files that do not fit at all.

    Returns (tensors loaded, tensors in the model). Keys in ``skip`` (the
    classifier head when the classes differ) are left as initialised.
    """
    own = model.state_dict()
    fitting = {
        k: v
        for k, v in weights.items()
        if k in own and k not in skip and tuple(v.shape) == tuple(own[k].shape)
    }
    body = [k for k in own if k not in skip]
    if len(fitting) < 0.5 * len(body):
        raise ModelFileError(
            f"{name}: weights do not fit this architecture "
            f"({len(fitting)} of {len(body)} tensors match by name and shape)"
        )
    model.load_state_dict(fitting, strict=False)
    return len(fitting), len(own)


def model_file_payload(
    model: nn.Module, *, arch: str, classes: list[str], preprocess_json: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """What ``models/<id>/model.pt`` holds: weights plus what is needed to rebuild the model."""
    return {
        "format": MODEL_FORMAT,
        "arch": arch,
        "classes": list(classes),
        "preprocess": preprocess_json,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
