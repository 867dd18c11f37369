"""Improved precision/recall and density/coverage (gan/metrics/precision_recall.py) against Naeem et al.'s own
`prdc` package on the same features: random ones and the MNIST classifier's features of real and generated digits."""
from __future__ import annotations

import numpy as np
import pytest

from gancli.gan.metrics.precision_recall import BLOCK_ROWS, precision_recall_density_coverage

prdc = pytest.importorskip("prdc")


def reference(real, fake, k=3):
    return {name: float(value) for name, value in prdc.compute_prdc(real, fake, nearest_k=k).items()}


def assert_close(ours, theirs):
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert abs(ours[name] - theirs[name]) <= 1e-6, (name, ours[name], theirs[name])


@pytest.mark.parametrize("n_real, n_fake, dim, shift", [(300, 200, 16, 0.0), (1500, 1200, 64, 0.3),
                                                        (BLOCK_ROWS + 7, 900, 8, 1.0)])
def test_matches_the_prdc_package_on_random_features(n_real, n_fake, dim, shift):
    rng = np.random.default_rng(n_real)
    real = rng.standard_normal((n_real, dim)).astype(np.float32)
    fake = (rng.standard_normal((n_fake, dim)) * 0.9 + shift).astype(np.float32)
    assert_close(precision_recall_density_coverage(real, fake), reference(real, fake))


def test_matches_the_prdc_package_on_classifier_features_of_real_and_generated_digits(data_root):
    import gancli
    from gancli.gan.metrics.detectors import mnist_classifier_network
    from gancli.gan.metrics.references import load_mnist_nhwc

    network = mnist_classifier_network()
    real, _ = network.extract(load_mnist_nhwc(data_root, train=False, download=False)[0][:1000])
    fake, _ = network.extract(gancli.generate_array("mnist-dcgan", 800, seed=1, device="cpu"))
    ours = precision_recall_density_coverage(real, fake)
    assert_close(ours, reference(real, fake))
    assert 0.3 < ours["precision"] <= 1 and 0.3 < ours["recall"] <= 1


def test_a_set_against_itself_is_all_inside():
    x = np.random.default_rng(0).standard_normal((200, 5))
    scores = precision_recall_density_coverage(x, x)
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0


def test_too_few_features_are_refused():
    with pytest.raises(ValueError, match="k = 3"):
        precision_recall_density_coverage(np.zeros((3, 4)), np.zeros((10, 4)))
