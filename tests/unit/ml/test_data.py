"""Training data: the same pixels as inference, seeded sampling, balanced classes, shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermdesk.inference.preprocess import PreprocessSpec, load_rgb, prepare
from dermdesk.ml.augment import augment
from dermdesk.ml.data import EpochIndexed, EpochSampler, ImageDataset, Sample, balanced_weights

pytestmark = pytest.mark.ml


def sample(path: Path, label: int = 0, i: int = 0) -> Sample:
    return Sample(
        f"id{i}", str(path), "MEL", label, None, "unknown", "clinical", None, "import", None, None
    )


def real_images(shared_data: Path, n: int) -> list[Path]:
    return sorted((shared_data / "pad_ufes_20").rglob("*.jpg"))[:n]


def test_validation_pixels_equal_what_the_predictor_feeds_onnx(shared_data: Path) -> None:
    spec = PreprocessSpec(size=64)
    paths = real_images(shared_data, 4)
    dataset = ImageDataset([sample(p, i=i) for i, p in enumerate(paths)], spec, train=False)
    for i, path in enumerate(paths):
        x, label = dataset[i]
        assert np.array_equal(x.numpy(), prepare(load_rgb(path, spec), spec))
        assert label == 0


def test_training_views_are_augmented_and_seeded_by_epoch(shared_data: Path) -> None:
    spec = PreprocessSpec(size=48)
    dataset = ImageDataset([sample(real_images(shared_data, 1)[0])], spec, train=True, seed=3)
    a0, _ = dataset.item(0, epoch=0)
    assert a0.shape == (3, 48, 48)
    assert np.array_equal(a0.numpy(), dataset.item(0, epoch=0)[0].numpy())
    assert not np.array_equal(a0.numpy(), dataset.item(0, epoch=1)[0].numpy())
    assert len(dataset.cache) == 1  # decoded once
    assert EpochIndexed(dataset)[1 * len(dataset)][0].shape == a0.shape


def test_augment_keeps_size_and_type() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)
    out = augment(base, 64, np.random.default_rng(1))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out, augment(base, 64, np.random.default_rng(1)))


def test_unreadable_originals_fail_with_the_image_id(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not an image")
    dataset = ImageDataset([sample(bad)], PreprocessSpec(size=32), train=False)
    with pytest.raises(RuntimeError, match="image id0: cannot read its original"):
        dataset[0]


def test_sampler_is_seeded_per_epoch_and_resumes_mid_epoch() -> None:
    s = EpochSampler(10, seed=1)
    s.set_epoch(0)
    first = list(s)
    assert sorted(i % 10 for i in first) == list(range(10))
    s.set_epoch(1)
    second = list(s)
    assert [i // 10 for i in second] == [1] * 10 and second != [i + 10 for i in first]
    s.set_epoch(1, start=4)
    assert list(s) == second[4:]


def test_sampler_shards_ranks_without_overlap() -> None:
    shards = []
    for rank in range(2):
        s = EpochSampler(10, seed=0, rank=rank, world=2)
        s.set_epoch(0)
        shards.append(set(s))
    assert not shards[0] & shards[1] and len(shards[0]) == len(shards[1]) == 5


def test_balanced_sampling_gives_rare_classes_an_equal_share(tmp_path: Path) -> None:
    samples = [sample(tmp_path, label=0, i=i) for i in range(90)]
    samples += [sample(tmp_path, label=1, i=90 + i) for i in range(10)]
    weights = balanced_weights(samples, 2)
    s = EpochSampler(100, seed=0, weights=weights)
    drawn = []
    for epoch in range(20):
        s.set_epoch(epoch)
        drawn += [samples[i % 100].label for i in s]
    assert np.mean(drawn) == pytest.approx(0.5, abs=0.05)
