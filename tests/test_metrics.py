"""gancli.gan.metrics: FD, KID, IS, class shares and nearest neighbours against direct computations."""
from __future__ import annotations


import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import cdist

from gancli.gan import metrics


def correlated_features(rng: np.random.Generator, n: int, d: int, mixing: np.ndarray) -> np.ndarray:
    return rng.normal(size=(n, d)) @ mixing + 0.5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ----- Fréchet distance -----

def test_frechet_distance_of_identical_sets_is_zero(rng):
    a = correlated_features(rng, 400, 8, rng.normal(size=(8, 8)))
    assert abs(metrics.frechet_distance(a, a)) < 1e-6


def test_frechet_distance_matches_scipy_sqrtm(rng):
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 1.0
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert metrics.frechet_distance(a, b) == pytest.approx(direct, rel=1e-6)


def test_frechet_distance_separates_a_distribution_from_noise(rng):
    mixing = rng.normal(size=(8, 8))
    a, a_again = correlated_features(rng, 500, 8, mixing), correlated_features(rng, 500, 8, mixing)
    noise = rng.uniform(-5, 5, size=(500, 8))
    same, different = metrics.frechet_distance(a, a_again), metrics.frechet_distance(a, noise)
    assert same < 1.0
    assert different > 20 * same


def test_frechet_distance_rejects_mismatched_features(rng):
    with pytest.raises(ValueError, match="same D"):
        metrics.frechet_distance(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))


# ----- KID -----

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
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=1, subset_size=30)
    assert mean == pytest.approx(direct_unbiased_mmd2(x, y), rel=1e-9)
    assert std == 0.0


def test_kid_of_identical_sets_is_near_zero_and_of_noise_is_large(rng):
    a = rng.normal(size=(600, 8))
    same, _ = metrics.kernel_inception_distance(a, a, num_subsets=20, subset_size=300)
    noise, _ = metrics.kernel_inception_distance(a, rng.uniform(-3, 3, size=(600, 8)), num_subsets=20, subset_size=300)
    # not exactly 0: the x-y term of the unbiased estimator keeps the k(x, x) pairs that the subsets share
    assert abs(same) < 0.05
    assert noise > 50 * abs(same)


def test_kid_is_seeded(rng):
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 0.2
    first = metrics.kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=3)
    assert metrics.kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=3) == first
    assert metrics.kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=4) != first


# ----- IS and class shares -----

def test_inception_score_of_confident_uniform_classes_is_the_number_of_classes():
    probs = np.eye(10)[np.arange(1000) % 10]
    mean, std = metrics.inception_score(probs)
    assert mean == pytest.approx(10.0, rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_of_uniform_predictions_is_one():
    mean, _ = metrics.inception_score(np.full((500, 10), 0.1))
    assert mean == pytest.approx(1.0, abs=1e-9)


def test_inception_score_of_one_confident_class_is_one():
    mean, _ = metrics.inception_score(np.eye(10)[np.zeros(500, dtype=int)])
    assert mean == pytest.approx(1.0, abs=1e-6)


def test_class_shares_count_the_most_likely_class(rng):
    probs = rng.dirichlet(np.ones(4), size=200)
    shares = metrics.class_shares(probs)
    assert shares.sum() == pytest.approx(1.0)
    assert shares.tolist() == pytest.approx((np.bincount(probs.argmax(1), minlength=4) / 200).tolist())


# ----- nearest neighbours -----

def test_nearest_neighbour_distances_match_cdist(rng):
    q, r = rng.normal(size=(37, 12)), rng.normal(size=(300, 12))
    dists, index = metrics.nearest_neighbour_distances(q, r, batch_size=8)
    full = cdist(q, r)
    np.testing.assert_array_equal(index, full.argmin(1))
    np.testing.assert_allclose(dists, full.min(1), rtol=1e-4)


def test_nearest_neighbour_distances_skip_the_query_itself(rng):
    r = rng.normal(size=(100, 5))
    picked = np.array([7, 3, 50])
    dists, index = metrics.nearest_neighbour_distances(r[picked], r, skip=picked)
    full = cdist(r[picked], r)
    full[np.arange(3), picked] = np.inf
    np.testing.assert_array_equal(index, full.argmin(1))
    assert (dists > 0).all()
