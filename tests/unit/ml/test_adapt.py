"""The adaptation's gap transforms and losses (issue 18), on real photos: each transform
changes what the quality checker and the modality features measure the way it claims."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermdesk.imaging import checks
from dermdesk.imaging.working import Decoded, WorkImage
from dermdesk.ml import adapt

pytestmark = pytest.mark.ml


def _photos(shared_data: Path, dataset: str, n: int) -> list[np.ndarray]:
    with open(shared_data / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == dataset][:n]
    return [
        np.asarray(Image.open(shared_data / r["file"]).convert("RGB").resize((256, 256)))
        for r in rows
    ]


@pytest.fixture(scope="module")
def dermoscopic(shared_data: Path) -> list[np.ndarray]:
    return _photos(shared_data, "ham10000", 4)


@pytest.fixture(scope="module")
def clinical(shared_data: Path) -> list[np.ndarray]:
    return _photos(shared_data, "pad_ufes_20", 4)


def tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float()[None] / 255


def work(x: torch.Tensor) -> WorkImage:
    rgb = (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    return WorkImage(Decoded.from_array(rgb))


def sharpness(x: torch.Tensor) -> float:
    return float(checks.measure_focus(work(x).focus_bands)[0])


def test_blur_lowers_the_checkers_sharpness(dermoscopic: list[np.ndarray]) -> None:
    for rgb in dermoscopic:
        x = tensor(rgb)
        assert sharpness(adapt.defocus(x, 2.0)) < 0.6 * sharpness(x)
        assert sharpness(adapt.motion_blur(x, 0.06, 0.4)) < 0.8 * sharpness(x)


def test_a_white_balance_shift_moves_the_colour_cast_vector(clinical: list[np.ndarray]) -> None:
    for rgb in clinical:
        x = tensor(rgb)
        before = checks.cast_vector(work(x))
        warm = checks.cast_vector(work(adapt.white_balance(x, torch.tensor([[1.2, 1.0, 0.8]]))))
        # log(R/G) up and log(B/G) down, for the median and the brightest pixels alike
        assert warm[0] > before[0] + 0.1 and warm[1] < before[1] - 0.1
        assert warm[2] > before[2] + 0.1 and warm[3] < before[3] - 0.1


def test_the_circular_field_of_view_is_detected_as_a_dermoscopes(
    clinical: list[np.ndarray],
) -> None:
    for rgb in clinical:
        x = tensor(rgb)
        assert work(x).frame[1] is None  # a phone photo: no round field of view
        assert work(adapt.circular_fov(x, 0.9)).frame[1] is not None


def test_clinical_looking_views_lose_the_dermoscopes_dark_edge(
    dermoscopic: list[np.ndarray],
) -> None:
    x = torch.cat([tensor(rgb) for rgb in dermoscopic])
    corners = [(slice(0, 24), slice(0, 24)), (slice(-24, None), slice(-24, None))]

    def corner_light(y: torch.Tensor) -> float:
        return float(torch.stack([y[:, :, r, c].mean() for r, c in corners]).mean())

    filled = adapt.fill_vignette(x)
    assert corner_light(filled) >= corner_light(x)
    # a zoom-out puts the photo on skin of its own colour: the border is that colour
    small = adapt.zoom_out(filled, 0.6)
    border = small[:, :, :10, :].mean(dim=(2, 3))
    assert torch.allclose(border, adapt.skin_colour(filled).view(-1, 3), atol=0.08)
    # a shadow darkens one side more than the other
    shaded = adapt.shadow(x, 0.5, 0.0)  # angle 0: darkest at the right
    assert shaded[..., -20:].mean() < 0.7 * x[..., -20:].mean()
    assert shaded[..., :20].mean() > 0.95 * x[..., :20].mean()


def _field(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(x.mean(1, keepdim=True), size=(4, 4), mode="area")


def test_even_lighting_flattens_the_illumination(clinical: list[np.ndarray]) -> None:
    for rgb in clinical:
        x = adapt.shadow(tensor(rgb), 0.5, 1.0)  # uneven on purpose
        before = _field(x).std() / _field(x).mean()
        y = adapt.even_lighting(x)
        after = _field(y).std() / _field(y).mean()
        assert after < 0.6 * before


def test_gap_parameters_are_seeded_and_a_direction_of_zero_changes_nothing(
    dermoscopic: list[np.ndarray], clinical: list[np.ndarray]
) -> None:
    x = torch.cat([tensor(dermoscopic[0]), tensor(clinical[0])])
    draw = [
        adapt.draw_gap_params(np.random.default_rng((0, 0, i)), d, adapt.GapConfig(p=1.0))
        for i, d in enumerate((adapt.TO_CLINICAL, adapt.TO_DERMOSCOPIC))
    ]
    again = [
        adapt.draw_gap_params(np.random.default_rng((0, 0, i)), d, adapt.GapConfig(p=1.0))
        for i, d in enumerate((adapt.TO_CLINICAL, adapt.TO_DERMOSCOPIC))
    ]
    assert all(np.array_equal(a, b) for a, b in zip(draw, again, strict=True))
    moved = adapt.apply_gap(x, torch.from_numpy(np.stack(draw)))
    assert not torch.allclose(moved, x, atol=0.02)
    none = np.stack([adapt.draw_gap_params(np.random.default_rng(1), 0.0)] * 2)
    assert torch.equal(adapt.apply_gap(x, torch.from_numpy(none)), x)
    assert adapt.direction_of("dermoscopic") == adapt.TO_CLINICAL
    assert adapt.direction_of("other") == 0.0


def test_the_preview_grid_shows_every_transform(
    dermoscopic: list[np.ndarray], clinical: list[np.ndarray], tmp_path: Path
) -> None:
    grid = adapt.preview_grid(
        [(dermoscopic[0], adapt.TO_CLINICAL), (clinical[0], adapt.TO_DERMOSCOPIC)], size=64
    )
    # the photo, seven dermoscopic -> clinical transforms, three random draws
    assert grid.size == (64 * 11, 128)
    grid.save(tmp_path / "gap.png")


def test_supervised_contrast_rewards_views_that_agree() -> None:
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 3])
    z = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    agree = adapt.supcon_loss(torch.cat([z, z]), torch.cat([labels, labels]))
    other = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    disagree = adapt.supcon_loss(torch.cat([z, other]), torch.cat([labels, labels]))
    assert agree < disagree
    # unlabelled rows (-1) still count their own other view as the positive
    unlabelled = adapt.supcon_loss(torch.cat([z, z]), torch.full((8,), -1))
    assert torch.isfinite(unlabelled)


def test_guided_tuning_costs_nothing_where_the_model_has_not_moved() -> None:
    from dermdesk.ml.models import build_model

    model = build_model("vit_test", 5, 32)
    anchor = adapt.backbone_weights(model)
    assert float(adapt.l2_sp(model, anchor).detach()) == 0.0
    with torch.no_grad():  # the anchor is a copy: moving the model moves the cost
        for p in model.parameters():
            p.add_(0.01)
    assert float(adapt.l2_sp(model, anchor).detach()) > 0.0
    logits = torch.randn(6, 5)
    labels = torch.tensor([0, 1, 2, 0, 0, 0])
    keep = torch.tensor([False, False, False, True, True, True])
    same = adapt.guided_loss(
        logits, labels, keep, torch.log_softmax(logits, 1), temperature=2.0, lwf_weight=1.0
    )
    ce_only = torch.nn.functional.cross_entropy(logits[:3], labels[:3])
    assert torch.isclose(same, ce_only, atol=1e-5)
    drifted = adapt.guided_loss(
        logits, labels, keep, torch.randn(6, 5) * 3, temperature=2.0, lwf_weight=1.0
    )
    assert drifted > same
