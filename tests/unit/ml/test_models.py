"""Every architecture the app offers builds from scratch and exports to a matching ONNX file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermdesk.inference.predictor import OnnxClassifier
from dermdesk.inference.preprocess import PreprocessSpec
from dermdesk.ml.export import PARITY_TOLERANCE, export_checked, metadata
from dermdesk.ml.models import ARCHS, build_model, count_parameters

pytestmark = pytest.mark.ml


@pytest.mark.parametrize("arch", ["vit_test", "resnet10t"])
def test_an_architecture_exports_to_onnx_with_matching_logits(arch: str, tmp_path: Path) -> None:
    spec = PreprocessSpec(size=64)
    model = build_model(arch, 3, spec.size)
    batch = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    report = export_checked(
        model, spec, tmp_path / "m.onnx", metadata(["A", "B", "C"], spec, arch, "m"), batch
    )
    assert report.max_abs_diff < PARITY_TOLERANCE
    probs = OnnxClassifier(tmp_path / "m.onnx").predict(batch)
    assert probs.shape == (4, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_the_cnn_takes_any_input_size_and_is_small() -> None:
    import torch

    model = build_model("resnet10t", 6).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 112, 96)).shape == (1, 6)
    assert count_parameters(model) < 6_000_000
    assert not ARCHS["resnet10t"].sized and ARCHS["vit_tiny"].sized
