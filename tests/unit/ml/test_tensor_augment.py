"""Batched tensor augmentation: seeded per image, inside each image, doing what it says."""

from __future__ import annotations

import numpy as np
import torch

from dermdesk.inference.preprocess import MEAN, STD
from dermdesk.ml.tensor_augment import (
    TensorAugment,
    augment_batch,
    collate,
    draw_params,
    jpeg_like,
)


def pixels(x: torch.Tensor) -> np.ndarray:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return ((x * std + mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def batch_of(images: list[np.ndarray], cfg: TensorAugment | None, seed: int = 0) -> tuple:
    items = [
        (im, 0, draw_params(np.random.default_rng((seed, 0, i)), cfg, *im.shape[:2]))
        for i, im in enumerate(images)
    ]
    return collate(items)


def test_the_same_seed_gives_the_same_views_and_another_seed_others() -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (90 + 10 * k, 120, 3), dtype=np.uint8) for k in range(4)]
    cfg = TensorAugment(noise_p=0.0)  # noise is drawn on the device, not from the seed
    a = augment_batch(*_args(batch_of(images, cfg, seed=3)), 64)
    b = augment_batch(*_args(batch_of(images, cfg, seed=3)), 64)
    c = augment_batch(*_args(batch_of(images, cfg, seed=4)), 64)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def _args(batch: tuple) -> tuple:
    x, sizes, _, params = batch
    return x, sizes, params


def test_crops_never_reach_the_padding_of_smaller_images() -> None:
    """Images of different sizes share a padded batch: a white image must stay white."""
    images = [np.full((60, 200, 3), 255, np.uint8), np.full((200, 200, 3), 255, np.uint8)]
    cfg = TensorAugment(
        brightness=0, contrast=0, saturation=0, white_balance=0, gamma=(1, 1),
        blur_p=0, noise_p=0, jpeg_p=0, lowres_p=0,
    )  # fmt: skip
    for seed in range(10):
        out = pixels(augment_batch(*_args(batch_of(images, cfg, seed)), 48))
        assert out.min() >= 250, seed


def test_no_augmentation_is_the_centre_square() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    out = pixels(augment_batch(*_args(batch_of([image], None)), 96))[0]
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1


def test_jpeg_like_blocking_and_blur_do_what_they_claim() -> None:
    rng = np.random.default_rng(5)
    smooth = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).clone()
    noisy = (smooth + torch.from_numpy(rng.normal(0, 0.05, (1, 3, 64, 64))).float()).clamp(0, 1)
    blocky = jpeg_like(noisy, torch.tensor([10.0]))

    # JPEG's 8 x 8 blocks: jumps across block borders grow relative to jumps inside blocks
    def border_ratio(x: torch.Tensor) -> float:
        d = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(0, 1, 2))
        at_border = d[7::8].mean()
        inside = torch.cat([d[k::8] for k in range(7)]).mean()
        return float(at_border / inside)

    assert border_ratio(blocky) > 1.3 * border_ratio(noisy)
    assert float((jpeg_like(noisy, torch.tensor([95.0])) - noisy).abs().mean()) < 0.02
    images = [rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)]
    sharp = TensorAugment(blur_p=0.0, noise_p=0, jpeg_p=0, lowres_p=0)
    blurred = TensorAugment(blur_p=1.0, blur_sigma=(1.5, 1.5), noise_p=0, jpeg_p=0, lowres_p=0)
    a = augment_batch(*_args(batch_of(images, sharp)), 64)
    b = augment_batch(*_args(batch_of(images, blurred)), 64)
    assert float((b[..., 1:] - b[..., :-1]).abs().mean()) < 0.6 * float(
        (a[..., 1:] - a[..., :-1]).abs().mean()
    )
