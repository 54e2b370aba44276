"""The checks' fast percentile must equal numpy's exactly: every calibrated limit and every
validated figure was measured with ``np.percentile``."""

from __future__ import annotations

import numpy as np
import pytest

from dermdesk.imaging.working import Decoded, WorkImage, linear_percentile, masked_rows

QS = (
    0,
    2,
    50,
    97,
    99.5,
    100,
    33.3,
    (2, 98),
    (25, 50, 75),
    (0, 100),
    np.float64(40),
    np.float32(50),
)


def same(a: object, b: object) -> bool:
    """Equal values, dtype and type (a float32 result must stay float32)."""
    same_type = type(a) is type(b) and np.asarray(a).dtype == np.asarray(b).dtype
    return same_type and np.array_equal(a, b)


@pytest.mark.parametrize("q", QS, ids=str)
def test_matches_numpy_on_a_real_image(typical: dict[str, Decoded], q: object) -> None:
    work = WorkImage(typical["ham10000"])
    samples = (
        work.chan_max.ravel(),  # uint8
        work.lab[:, :, 0].ravel(),  # float32
        work.lab[work.fov],  # (N, 3) float32, per channel
        work.lab[:, :, 2].ravel().astype(np.float64)[:7],  # a handful of values
        work.gray_small.ravel().astype(np.int16)[:1],  # one value
    )
    for sample in samples:
        assert same(linear_percentile(sample, q), np.percentile(sample, q, axis=0))


def test_matches_numpy_on_random_values_of_every_dtype() -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.int16, np.int64, np.float32, np.float64):
        for n in (2, 3, 100, 1001):
            sample = (rng.random((n, 3)) * 250).astype(dtype)
            for q in QS:
                assert same(linear_percentile(sample, q), np.percentile(sample, q, axis=0))
                assert same(linear_percentile(sample[:, 0], q), np.percentile(sample[:, 0], q))


def test_nan_follows_numpy() -> None:
    sample = np.array([1.0, np.nan, 3.0], np.float32)
    assert np.isnan(linear_percentile(sample, 50))
    assert np.isnan(linear_percentile(sample, (10, 90))).all()


def test_an_empty_sample_raises_like_numpy() -> None:
    empty = np.zeros((0, 3), np.float32)
    with pytest.raises(IndexError):
        np.percentile(empty, 50, axis=0)
    with pytest.raises(IndexError):
        linear_percentile(empty, 50)


def test_ties_of_signed_zeros_keep_numpys_sign() -> None:
    sample = np.array([-0.0, -0.0, -0.0, 0.0, -0.0])
    for q in (3, 50, 97, (3, 97)):
        assert same(linear_percentile(sample, q), np.percentile(sample, q))
        assert np.array_equal(
            np.signbit(linear_percentile(sample, q)), np.signbit(np.percentile(sample, q))
        )


@pytest.mark.parametrize("q", (-5, 150, float("nan"), (10, 101)), ids=str)
def test_a_percentile_out_of_range_is_refused_like_numpy(q: object) -> None:
    sample = np.array([1.0, 2.0, 10.0])
    with pytest.raises(ValueError):
        np.percentile(sample, q)
    with pytest.raises(ValueError):
        linear_percentile(sample, q)  # type: ignore[arg-type]


def test_masked_rows_equals_boolean_indexing_on_a_real_image(typical: dict[str, Decoded]) -> None:
    work = WorkImage(typical["pad_ufes_20"])
    for mask in (work.fov, work.lesion, ~work.lesion, np.zeros_like(work.fov)):
        rows = masked_rows(work.lab, mask)
        assert rows.dtype == work.lab.dtype and np.array_equal(rows, work.lab[mask])
    rows = work.lab[work.fov]
    pick = rows[:, 0] > np.median(rows[:, 0])
    assert np.array_equal(masked_rows(rows, pick), rows[pick])
    with pytest.raises(IndexError):
        masked_rows(work.lab, work.fov[1:])  # a mask of another image
    with pytest.raises(IndexError):
        masked_rows(work.lab, work.fov.astype(np.uint8))  # not a boolean mask
