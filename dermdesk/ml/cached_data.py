"""Datasets over the training-image cache: every job kind trains and evaluates from it.

:class:`CachedTrainViews` yields (cached uint8 pixels, label, augmentation parameters
drawn from a generator seeded by (seed, epoch, index)); its ``collate_fn`` pads a batch
and the task augments it with :func:`dermdesk.ml.tensor_augment.augment_batch` on the
training device. :class:`CachedEvalViews` yields the exact centre crop inference makes
(pixel for pixel: the cache holds ``base_view`` of the same decode), normalised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dermdesk.inference.preprocess import PreprocessSpec, center_crop, normalize
from dermdesk.ml.data import Sample
from dermdesk.ml.image_cache import CacheReport, TrainCache
from dermdesk.ml.tensor_augment import TensorAugment, augment_batch, collate, draw_params


def cache_for(
    library_dir: Path,
    spec: PreprocessSpec,
    samples: Sequence[Sample],
    *,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainCache:
    """The cache at ``spec.resize_to`` holding every sample (decoding the missing ones);
    an image whose original cannot be read stops the job with its id."""
    cache = TrainCache(library_dir, spec.resize_to)
    report: CacheReport = cache.ensure(
        [(s.image_id, Path(s.path)) for s in samples], progress=progress, should_stop=should_stop
    )
    if report.failed:
        image_id, why = report.failed[0]
        raise RuntimeError(f"image {image_id[:12]}: {why} ({len(report.failed)} such images)")
    if log is not None and report.cached:
        log(
            f"cached {report.cached} images at {cache.size} px ({report.present} were cached "
            "already): decoded once, read from the cache from now on"
        )
    return cache


class CachedTrainViews(Dataset[tuple[np.ndarray, int, np.ndarray]]):
    """Training items: (pixels, label, augmentation parameters) of cached images."""

    def __init__(
        self,
        cache: TrainCache,
        samples: Sequence[Sample],
        *,
        seed: int,
        augment: TensorAugment | None,
    ) -> None:
        self.cache = cache
        self.samples = list(samples)
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def item(self, i: int, epoch: int) -> tuple[np.ndarray, int, np.ndarray]:
        sample = self.samples[i]
        pixels = self.cache.get(sample.image_id)
        rng = np.random.default_rng((self.seed, epoch, i))
        params = draw_params(rng, self.augment, pixels.shape[0], pixels.shape[1])
        return pixels, sample.label, params

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, np.ndarray]:
        return self.item(i, 0)

    collate_fn = staticmethod(collate)


class CachedEvalViews(Dataset[tuple[torch.Tensor, int]]):
    """Evaluation items: the inference centre crop, normalised, and the label."""

    def __init__(self, cache: TrainCache, samples: Sequence[Sample], spec: PreprocessSpec) -> None:
        self.cache = cache
        self.samples = list(samples)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.samples)

    def pixels(self, i: int) -> np.ndarray:
        return center_crop(self.cache.get(self.samples[i].image_id), self.spec.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = normalize(self.pixels(i), self.spec)
        return torch.from_numpy(x), self.samples[i].label


def train_inputs(batch: Any, device: torch.device, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch from :class:`CachedTrainViews` -> (augmented inputs, labels) on
    ``device``: the uint8 pixels travel, the augmentation runs where the model does."""
    pixels, sizes, labels, params = batch
    pixels = pixels.to(device, non_blocking=True)
    x = augment_batch(pixels, sizes, params, out)
    return x, labels.to(device, non_blocking=True)
