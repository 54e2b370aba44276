"""Predictions with ONNX Runtime: one model file, batches of images, probabilities.

No torch here: this is what the app runs. A model file is an ONNX export of
``dermdesk.ml.export`` whose metadata names its classes and preprocessing;
anything else is refused with a one-line reason. :func:`iter_predictions`
decodes images on a thread pool (Pillow releases the GIL) while ONNX Runtime
runs the previous batch; :func:`predict_library` stores the results.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from dermdesk.imaging.decode import ImageRejected
from dermdesk.inference.preprocess import PreprocessSpec, load_rgb, prepare
from dermdesk.library import ImageFilter, Library
from dermdesk.library.store import sha256_file

DEFAULT_BATCH = 32


class ModelLoadError(ValueError):
    """A model file the predictor cannot use; ``str(exc)`` says why in one line."""


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _classes(name: str, text: str) -> list[str]:
    """The class list in a model's metadata: unique short codes, at least two."""
    try:
        classes = json.loads(text)
    except ValueError:
        raise ModelLoadError(f"{name}: its class list is not valid JSON") from None
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and 0 < len(c) <= 32 for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ModelLoadError(f"{name}: its class list is not a list of distinct class codes")
    return classes


def _spec(name: str, text: str) -> PreprocessSpec:
    """The preprocessing in a model's metadata, within sane bounds."""
    try:
        spec = PreprocessSpec.from_json(text)
    except (ValueError, KeyError, TypeError):
        raise ModelLoadError(f"{name}: its preprocessing metadata is malformed") from None
    ok = (
        8 <= spec.size <= 2048
        and 0.1 <= spec.crop_fraction <= 1.0
        and len(spec.mean) == 3
        and len(spec.std) == 3
        and all(0 < v < 10 for v in spec.std)
        and all(-10 < v < 10 for v in spec.mean)
    )
    if not ok:
        raise ModelLoadError(
            f"{name}: its preprocessing is out of range (size {spec.size}, crop "
            f"{spec.crop_fraction}): not a model dermdesk made"
        )
    return spec


def _check_shapes(name: str, session: Any, n_classes: int, size: int) -> None:
    """Input (N, 3, size, size) and output (N, classes), where the graph fixes them."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise ModelLoadError(f"{name}: expects {len(inputs)} inputs, not one image batch")
    shape = list(inputs[0].shape)
    fixed = [d for d in shape[1:] if isinstance(d, int)]
    if len(shape) != 4 or (fixed and fixed != [3, size, size][-len(fixed) :]):
        raise ModelLoadError(f"{name}: its input {shape} does not take 3 x {size} x {size} images")
    out = list(outputs[0].shape)
    if out and isinstance(out[-1], int) and out[-1] != n_classes:
        raise ModelLoadError(f"{name}: it outputs {out[-1]} scores for {n_classes} classes")


class OnnxClassifier:
    """An exported dermdesk classifier loaded into ONNX Runtime (CPU)."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: no such model file")
        ort.disable_telemetry_events()  # besides ORT_DISABLE_TELEMETRY (dermdesk/__init__)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT's warnings are not for users
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types for bad files
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ModelLoadError(f"{self.path.name}: not a usable ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "dermdesk.classes" not in meta or "dermdesk.preprocess" not in meta:
            raise ModelLoadError(
                f"{self.path.name}: not a dermdesk model (no class list or preprocessing "
                "in its metadata)"
            )
        self.classes: list[str] = _classes(self.path.name, meta["dermdesk.classes"])
        self.spec = _spec(self.path.name, meta["dermdesk.preprocess"])
        self.metadata = dict(meta)
        _check_shapes(self.path.name, self.session, len(self.classes), self.spec.size)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, size, size) float32 -> (N, classes) logits."""
        out: np.ndarray = self.session.run(None, {self.input_name: batch.astype(np.float32)})[0]
        return out

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a preprocessed batch."""
        return softmax(self.logits(batch))

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return prepare(rgb, self.spec)

    def load(self, path: Path) -> np.ndarray:
        """Decode and preprocess one original."""
        return prepare(load_rgb(path, self.spec), self.spec)


@dataclass
class PredictReport:
    predicted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    cancelled: bool = False


Progress = Callable[[int, int], None]


def iter_predictions(
    model: OnnxClassifier,
    items: Sequence[tuple[str, Path]],
    *,
    batch_size: int = DEFAULT_BATCH,
    report: PredictReport | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield (image ids, probabilities) per batch; unreadable images are reported, skipped."""
    report = report if report is not None else PredictReport()

    def load(item: tuple[str, Path]) -> tuple[str, np.ndarray | None, str | None]:
        try:
            return item[0], model.load(item[1]), None
        except (ImageRejected, OSError) as exc:
            return item[0], None, str(exc)

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        pending = pool.map(load, chunks[0]) if chunks else iter(())
        for k in range(len(chunks)):
            loaded = list(pending)
            if k + 1 < len(chunks):  # decode the next batch while this one runs
                pending = pool.map(load, chunks[k + 1])
            if should_stop and should_stop():
                report.cancelled = True
                return
            ids = [i for i, x, _ in loaded if x is not None]
            report.failed += [(i, str(err)) for i, x, err in loaded if x is None]
            if ids:
                batch = np.stack([x for _, x, _ in loaded if x is not None])
                report.predicted += len(ids)
                yield ids, model.predict(batch)


def as_rows(
    classes: Sequence[str], ids: Sequence[str], probs: np.ndarray
) -> list[tuple[str, dict[str, float]]]:
    """Prediction rows as stored: image id -> {class code: probability}."""
    return [
        (image_id, {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)})
        for image_id, row in zip(ids, probs, strict=True)
    ]


def model_items(lib: Library, flt: ImageFilter | None) -> list[tuple[str, Path]]:
    return [(row["id"], lib.original_path(row)) for row in lib.images(flt, order="id")]


def load_registered(lib: Library, model_id: str, *, int8: bool = False) -> tuple[Any, Path]:
    """A registered model's row and the path of its ONNX (or int8 ONNX) file."""
    from dermdesk.library.model_store import get_model

    model = get_model(lib, model_id)
    if not model.get("file"):
        raise ModelLoadError(f"model {model['id']} has no ONNX file")
    path = lib.root / model["file"]
    expected = model.get("sha256")
    if int8:
        path = path.with_name("model.int8.onnx")
        if not path.is_file():
            raise ModelLoadError(f"model {model['id']} has no int8 file (train with quantize)")
        from dermdesk.library.model_store import model_file_hashes

        expected = model_file_hashes(model).get(path.name)
    check_model_file(model["id"], path, expected)
    return model, path


def check_model_file(model_id: str, path: Path, expected: str | None) -> None:
    """Refuse a registered model's file that is missing or changed since registration."""
    if not path.is_file():
        raise ModelLoadError(f"model {model_id}: its file {path.name} is missing")
    if expected and sha256_file(path) != expected:
        raise ModelLoadError(
            f"model {model_id}: {path.name} changed since it was registered (its SHA-256 "
            "differs): not used"
        )


def predict_library(
    lib: Library,
    model_id: str,
    flt: ImageFilter | None = None,
    *,
    batch_size: int = DEFAULT_BATCH,
    int8: bool = False,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictReport:
    """Predict every image matching ``flt`` with a registered model; store probabilities."""
    from dermdesk.library.model_store import store_predictions

    model_row, path = load_registered(lib, model_id, int8=int8)
    model = OnnxClassifier(path)
    items = model_items(lib, flt)
    report = PredictReport()
    done = 0
    for ids, probs in iter_predictions(
        model, items, batch_size=batch_size, report=report, should_stop=should_stop
    ):
        store_predictions(lib, model_row["id"], as_rows(model.classes, ids, probs))
        done += len(ids)
        if progress:
            progress(done + len(report.failed), len(items))
    return report
