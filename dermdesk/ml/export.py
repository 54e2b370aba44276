"""Export a trained classifier to ONNX, check it against torch, optionally quantise it.

The exported file carries what the predictor needs in its metadata (class
codes, preprocessing, architecture), so an ONNX file alone is enough to
predict. Export is followed by a parity check: the same real images through
torch and through ONNX Runtime must give logits within ``PARITY_TOLERANCE``.
Dynamic int8 quantisation (weights int8, activations quantised on the fly) is
optional; its effect on accuracy is measured on the validation split.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dermdesk.inference.predictor import OnnxClassifier
from dermdesk.inference.preprocess import PreprocessSpec

PARITY_TOLERANCE = 1e-4
OPSET = 18
log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """Export or its parity check failed; the model is not registered."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_diff: float
    images: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "parity_max_abs_logit_diff": self.max_abs_diff,
            "parity_images": self.images,
            "parity_tolerance": PARITY_TOLERANCE,
            "export_seconds": round(self.seconds, 2),
        }


def metadata(classes: list[str], spec: PreprocessSpec, arch: str, model_id: str) -> dict[str, str]:
    return {
        "dermdesk.classes": json.dumps(list(classes)),
        "dermdesk.preprocess": spec.to_json(),
        "dermdesk.arch": arch,
        "dermdesk.model_id": model_id,
    }


def export_onnx(model: nn.Module, spec: PreprocessSpec, path: Path, meta: dict[str, str]) -> None:
    """Write a classifier (on the CPU, eval mode) as ONNX with a dynamic batch axis: input
    ``image`` NCHW, output ``logits``, ``meta`` in the file's metadata."""
    example = torch.zeros(1, 3, spec.size, spec.size)
    write_onnx(model, example, path, output="logits", meta=meta)


def write_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    output: str,
    meta: dict[str, str] | None = None,
) -> None:
    """Any of our networks as ONNX (dynamo exporter, opset ``OPSET``): input ``image`` shaped
    like ``example`` with a dynamic batch axis, one output named ``output``, optional
    metadata; written to a part file first, so a failed export leaves no broken file."""
    import onnx

    model = model.to("cpu").eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    tmp = path.with_name(path.name + ".part")
    program = torch.onnx.export(
        model,
        (example,),
        None,
        dynamo=True,
        input_names=["image"],
        output_names=[output],
        dynamic_shapes={"x": {0: batch}},
        opset_version=OPSET,
        optimize=True,
        verbose=False,
    )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ExportError("ONNX export produced nothing")
    program.save(str(tmp))
    if meta:
        proto = onnx.load(str(tmp))
        set_metadata(proto, meta)
        onnx.save(proto, str(tmp))
    os.replace(tmp, path)


def set_metadata(proto: Any, meta: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in meta.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value


def torch_logits(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = model.to("cpu").eval()(torch.from_numpy(batch)).numpy()
    return out


def parity(model: nn.Module, path: Path, batch: np.ndarray) -> float:
    """Max absolute logit difference between torch and ONNX Runtime on ``batch``."""
    onnx_logits = OnnxClassifier(path).logits(batch)
    return float(np.abs(onnx_logits - torch_logits(model, batch)).max())


def export_checked(
    model: nn.Module,
    spec: PreprocessSpec,
    path: Path,
    meta: dict[str, str],
    parity_batch: np.ndarray,
) -> ExportReport:
    """Export, then refuse the result unless its logits match torch's within tolerance."""
    import time

    t = time.perf_counter()
    export_onnx(model, spec, path, meta)
    diff = parity(model, path, parity_batch)
    seconds = time.perf_counter() - t
    if not diff < PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX parity check failed: max |logit difference| {diff:.2e} "
            f"on {len(parity_batch)} images (tolerance {PARITY_TOLERANCE:.0e})"
        )
    return ExportReport(path, diff, len(parity_batch), seconds)


def quantize_int8(src: Path, dst: Path, meta: dict[str, str]) -> None:
    """Dynamic int8 quantisation of the MatMul/Gemm weights (where a ViT spends its time)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_name(dst.name + ".part")
    # The quantiser logs a suggestion to pre-process through the root logger; keep quiet.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(src),
            str(tmp),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
        )
    finally:
        root.setLevel(level)
    proto = onnx.load(str(tmp))
    set_metadata(proto, {**meta, "dermdesk.quantization": "dynamic int8 (MatMul, Gemm)"})
    onnx.save(proto, str(tmp))
    os.replace(tmp, dst)
