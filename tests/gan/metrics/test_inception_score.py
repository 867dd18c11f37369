"""gan/metrics/inception_score.py: IS and class shares on known predictions."""
from __future__ import annotations

import numpy as np
import pytest

from gancli.gan.metrics.inception_score import class_shares, inception_score


def correlated_features(rng: np.random.Generator, n: int, d: int, mixing: np.ndarray) -> np.ndarray:
    return rng.normal(size=(n, d)) @ mixing + 0.5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_inception_score_of_confident_uniform_classes_is_the_number_of_classes():
    probs = np.eye(10)[np.arange(1000) % 10]
    mean, std = inception_score(probs)
    assert mean == pytest.approx(10.0, rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_of_uniform_predictions_is_one():
    mean, _ = inception_score(np.full((500, 10), 0.1))
    assert mean == pytest.approx(1.0, abs=1e-9)


def test_inception_score_of_one_confident_class_is_one():
    mean, _ = inception_score(np.eye(10)[np.zeros(500, dtype=int)])
    assert mean == pytest.approx(1.0, abs=1e-6)


def test_class_shares_count_the_most_likely_class(rng):
    probs = rng.dirichlet(np.ones(4), size=200)
    shares = class_shares(probs)
    assert shares.sum() == pytest.approx(1.0)
    assert shares.tolist() == pytest.approx((np.bincount(probs.argmax(1), minlength=4) / 200).tolist())
