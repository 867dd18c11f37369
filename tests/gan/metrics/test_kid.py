"""gan/metrics/kid.py: KID against a pair-by-pair computation."""
from __future__ import annotations

import numpy as np
import pytest

from gancli.gan.metrics.kid import kernel_inception_distance


def correlated_features(rng: np.random.Generator, n: int, d: int, mixing: np.ndarray) -> np.ndarray:
    return rng.normal(size=(n, d)) @ mixing + 0.5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def direct_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Bińkowski et al.'s unbiased estimator written out pair by pair."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / m ** 2


def test_kid_matches_direct_computation(rng):
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 0.3
    # one subset as large as the sets: a permutation of each, which MMD does not see
    mean, std = kernel_inception_distance(x, y, num_subsets=1, subset_size=30)
    assert mean == pytest.approx(direct_unbiased_mmd2(x, y), rel=1e-9)
    assert std == 0.0


def test_kid_of_identical_sets_is_near_zero_and_of_noise_is_large(rng):
    a = rng.normal(size=(600, 8))
    same, _ = kernel_inception_distance(a, a, num_subsets=20, subset_size=300)
    noise, _ = kernel_inception_distance(a, rng.uniform(-3, 3, size=(600, 8)), num_subsets=20, subset_size=300)
    # not exactly 0: the x-y term of the unbiased estimator keeps the k(x, x) pairs that the subsets share
    assert abs(same) < 0.05
    assert noise > 50 * abs(same)


def test_kid_is_seeded(rng):
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 0.2
    first = kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=3)
    assert kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=3) == first
    assert kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=4) != first
