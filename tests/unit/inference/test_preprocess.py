"""The preprocessing shared by training and inference: shapes, values, and no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dermdesk.inference.preprocess import (
    MEAN,
    STD,
    PreprocessSpec,
    base_view,
    eval_view,
    load_rgb,
    normalize,
    prepare,
)
from tests.helpers import skin_like

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("w", "h"), [(640, 480), (300, 900), (224, 224), (100, 60)])
def test_eval_view_is_a_square_centre_crop_of_the_requested_size(w: int, h: int) -> None:
    spec = PreprocessSpec(size=64)
    view = eval_view(skin_like(w, h), spec)
    assert view.shape == (64, 64, 3) and view.dtype == np.uint8
    assert min(base_view(skin_like(w, h), spec).shape[:2]) == spec.resize_to == 73


def test_normalize_uses_the_channel_statistics_channels_first() -> None:
    spec = PreprocessSpec(size=4)
    pixels = np.full((4, 4, 3), 255, dtype=np.uint8)
    x = normalize(pixels, spec)
    assert x.shape == (3, 4, 4) and x.dtype == np.float32
    expected = (1 - np.array(MEAN)) / np.array(STD)
    assert x[:, 0, 0] == pytest.approx(expected, rel=1e-6)
    batch = normalize(np.stack([pixels, pixels]), spec)
    assert batch.shape == (2, 3, 4, 4)


def test_spec_round_trips_through_json() -> None:
    spec = PreprocessSpec(size=160, crop_fraction=0.9)
    assert PreprocessSpec.from_json(spec.to_json()) == spec


def test_prepare_a_real_phone_photo(shared_data: Path) -> None:
    path = next((shared_data / "pad_ufes_20").rglob("*.jpg"))
    spec = PreprocessSpec(size=96)
    x = prepare(load_rgb(path, spec), spec)
    assert x.shape == (3, 96, 96) and np.isfinite(x).all()
    assert -2.5 < x.mean() < 2.5 and x.std() > 0.05


def test_inference_and_job_modules_do_not_import_torch_or_qt() -> None:
    code = (
        "import sys\n"
        "import dermdesk.inference.predictor, dermdesk.inference.predict_job\n"
        "import dermdesk.jobs.runner, dermdesk.library.model_store, dermdesk.library.job_store\n"
        "import dermdesk.ml.metrics, dermdesk.ml.splits, dermdesk.ml.promotion, dermdesk.cli\n"
        "bad = [m for m in ('torch', 'timm', 'PySide6') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
