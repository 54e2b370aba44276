"""Training data from the library: samples, subgroups, a torch Dataset and a sampler.

A :class:`Sample` is one labelled image row reduced to what training and the
metrics need. :class:`ImageDataset` decodes originals with the shared
preprocessing of :mod:`dermdesk.inference.preprocess` (so training and ONNX
inference see the same pixels) and keeps decoded base views in memory while
they fit. :class:`EpochSampler` is seeded per epoch, can be class-balanced,
shards across DDP ranks and can skip what a resumed job already consumed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dermdesk.imaging.decode import ImageRejected
from dermdesk.inference.preprocess import (
    PreprocessSpec,
    base_view,
    center_crop,
    load_rgb,
    normalize,
)
from dermdesk.library import ImageFilter, Library
from dermdesk.ml.augment import AugmentConfig, augment
from dermdesk.ml.groups import device_name, domain_name, fitzpatrick_group, fitzpatrick_of

log = logging.getLogger(__name__)
CACHE_BUDGET_BYTES = 3 << 30  # decoded base views kept in memory up to this size
PAGE = 5000
DEFAULT_AUGMENT = AugmentConfig()


@dataclass(frozen=True)
class Sample:
    """One image as training sees it."""

    image_id: str
    path: str
    diagnosis: str | None
    label: int  # index into the class list; -1 = not one of the model's classes
    fitzpatrick: int | None
    device: str
    modality: str
    dataset: str | None
    source: str
    patient_id: str | None
    lesion_id: str | None
    meta_domain: str | None = None  # estimated visual meta-domain (ml/meta_domains.py)

    @property
    def domain(self) -> str:
        return domain_name(self.modality, self.dataset)


def collect_samples(
    lib: Library, flt: ImageFilter, classes: Sequence[str], tones: str = "rated"
) -> list[Sample]:
    """Labelled images matching ``flt``, ordered by id (stable across runs); skin-type
    groups from ratings unless ``tones`` asks for estimates too (see ``fitzpatrick_of``)."""
    index = {code: i for i, code in enumerate(classes)}
    samples: list[Sample] = []
    offset = 0
    while True:
        rows = lib.images(flt, limit=PAGE, offset=offset, order="id")
        for row in rows:
            samples.append(
                Sample(
                    image_id=row["id"],
                    path=str(lib.original_path(row)),
                    diagnosis=row["diagnosis"],
                    label=index.get(row["diagnosis"], -1),
                    fitzpatrick=fitzpatrick_of(row, tones),
                    device=device_name(row),
                    modality=row["modality"],
                    dataset=row["dataset"],
                    source=row["source"],
                    patient_id=row["patient_id"],
                    lesion_id=row["lesion_id"],
                    meta_domain=row.get("meta_domain"),
                )
            )
        if len(rows) < PAGE:
            return samples
        offset += PAGE


def subgroups(samples: Sequence[Sample]) -> dict[str, list[str]]:
    """Group label of each sample per grouping the metrics report on."""
    return {
        "fitzpatrick": [fitzpatrick_group(s.fitzpatrick) for s in samples],
        "device": [s.device for s in samples],
        "modality": [s.modality for s in samples],
        "domain": [s.domain for s in samples],
        "meta_domain": [s.meta_domain or "unassigned" for s in samples],
    }


def class_counts(samples: Sequence[Sample], n_classes: int) -> np.ndarray:
    labels = np.array([s.label for s in samples if s.label >= 0], dtype=np.int64)
    return np.bincount(labels, minlength=n_classes)


def balanced_weights(samples: Sequence[Sample], n_classes: int) -> np.ndarray:
    """Per-sample sampling weights that give every class the same expected share."""
    counts = class_counts(samples, n_classes).astype(np.float64)
    w = np.array([1.0 / counts[s.label] if s.label >= 0 else 0.0 for s in samples])
    return w / w.sum()


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Decoded, preprocessed images with their class index.

    ``item(i, epoch)`` seeds a training view's augmentation by (seed, epoch, i);
    the loop reaches it through :class:`EpochIndexed`.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        spec: PreprocessSpec,
        *,
        train: bool,
        seed: int = 0,
        augment_cfg: AugmentConfig | None = DEFAULT_AUGMENT,  # None: train on eval views
        cache_budget: int = CACHE_BUDGET_BYTES,
    ) -> None:
        self.samples = list(samples)
        self.spec = spec
        self.train = train
        self.seed = seed
        self.augment_cfg = augment_cfg
        self.cache: dict[int, np.ndarray] = {}
        self.cache_budget = cache_budget
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.samples)

    def base(self, i: int) -> np.ndarray:
        """The image's base view (shorter side = spec.resize_to), decoded once if it fits."""
        hit = self.cache.get(i)
        if hit is not None:
            return hit
        sample = self.samples[i]
        try:
            view = base_view(load_rgb(Path(sample.path), self.spec), self.spec)
        except (ImageRejected, OSError) as exc:
            raise RuntimeError(
                f"image {sample.image_id[:12]}: cannot read its original ({exc})"
            ) from exc
        if self._cached_bytes + view.nbytes <= self.cache_budget:
            self.cache[i] = view
            self._cached_bytes += view.nbytes
        return view

    def pixels(self, i: int, epoch: int = 0) -> np.ndarray:
        """uint8 (size, size, 3): augmented for training, the centre crop otherwise."""
        base = self.base(i)
        if self.train and self.augment_cfg is not None:
            rng = np.random.default_rng((self.seed, epoch, i))
            return augment(base, self.spec.size, rng, self.augment_cfg)
        return center_crop(base, self.spec.size)

    def item(self, i: int, epoch: int) -> tuple[torch.Tensor, int]:
        x = normalize(self.pixels(i, epoch), self.spec)
        return torch.from_numpy(x), self.samples[i].label

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.item(i, 0)


class EpochIndexed(Dataset[Any]):
    """Turns :class:`EpochSampler` indices (``epoch * n + i``) back into (i, epoch).

    Datasets with an ``item(i, epoch)`` method get the epoch (to seed their
    augmentations); any other dataset is simply indexed with ``i``. Passing the
    epoch inside the index keeps it right in DataLoader worker processes.
    """

    def __init__(self, inner: Dataset[Any]) -> None:
        self.inner = inner
        self.n = len(inner)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        epoch, i = divmod(index, self.n)
        item = getattr(self.inner, "item", None)
        return item(i, epoch) if item is not None else self.inner[i]


class EpochSampler(Sampler[int]):
    """Seeded per-epoch order (optionally class-balanced), sharded across ranks.

    Yields ``epoch * n + i`` so the dataset can seed augmentations by epoch
    even inside DataLoader worker processes. ``start`` skips the first items of
    this rank's share (resuming in the middle of an epoch).
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        weights: np.ndarray | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.n = n
        self.seed = seed
        self.weights = weights
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> np.ndarray:
        """This rank's indices for the current epoch (before skipping ``start``)."""
        rng = np.random.default_rng((self.seed, self.epoch, 7919))
        if self.weights is not None:
            idx = rng.choice(self.n, size=self.n, replace=True, p=self.weights)
        else:
            idx = rng.permutation(self.n)
        per_rank = len(idx) // self.world  # equal shares keep DDP ranks in step
        return idx[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return self.n // self.world - self.start

    def __iter__(self) -> Iterator[int]:
        for i in self.order()[self.start :]:
            yield int(self.epoch * self.n + i)
