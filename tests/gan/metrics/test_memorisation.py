"""gancli.gan.metrics.memorisation: copies of training images are flagged, real images that were never trained on are not."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from gancli.gan.metrics.memorisation import memorisation_check, nearest_neighbour_distances
from gancli.gan.metrics.references import load_mnist_nhwc


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def mnist(data_root) -> dict[str, np.ndarray]:
    return {split: load_mnist_nhwc(data_root, train=split == "train", download=False)[0] for split in ("train", "test")}


def test_memorisation_flags_copies_of_training_images_and_not_real_test_images(mnist):
    train = mnist["train"][:20000]
    copied = np.array([5, 1234, 19999])
    generated = np.concatenate([mnist["test"][:300], train[copied]])
    result = memorisation_check(generated, train, held_out=mnist["test"][300:], sample_size=len(generated))
    flagged = sorted(f["generated_index"] for f in result["flagged"])
    assert flagged == [300, 301, 302]
    assert sorted(f["training_index"] for f in result["flagged"]) == copied.tolist()
    assert result["num_flagged"] == 3 and result["min_ratio"] < 0.01
    assert 0.8 < result["median_ratio"] < 1.3  # real test images sit about one typical distance away
    assert result["real"]["share_flagged"] == 0.0
    json.dumps(result)


def test_memorisation_without_held_out_images_uses_leave_one_out(mnist):
    train = mnist["train"][:5000]
    result = memorisation_check(mnist["test"][:100], train, sample_size=100)
    assert result["real"]["median_ratio"] == pytest.approx(1.0, abs=0.02)
    assert result["num_flagged"] == 0


def test_nearest_neighbour_distances_match_cdist(rng):
    q, r = rng.normal(size=(37, 12)), rng.normal(size=(300, 12))
    dists, index = nearest_neighbour_distances(q, r, batch_size=8)
    full = cdist(q, r)
    np.testing.assert_array_equal(index, full.argmin(1))
    np.testing.assert_allclose(dists, full.min(1), rtol=1e-4)


def test_nearest_neighbour_distances_skip_the_query_itself(rng):
    r = rng.normal(size=(100, 5))
    picked = np.array([7, 3, 50])
    dists, index = nearest_neighbour_distances(r[picked], r, skip=picked)
    full = cdist(r[picked], r)
    full[np.arange(3), picked] = np.inf
    np.testing.assert_array_equal(index, full.argmin(1))
    assert (dists > 0).all()
