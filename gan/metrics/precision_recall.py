"""Improved precision and recall (Kynkäänniemi et al., 2019) and density and coverage (Naeem et al., 2020):
how much of the generated set falls inside the real manifold (fidelity) and how much of the real manifold the
generated set covers (diversity), where each manifold is the union of balls around its samples reaching to their
k-th nearest neighbour (k = 3, as both papers recommend for these sizes).

FID folds fidelity and diversity into one number; these four split them, so a truncated generator shows its gain
in precision and its loss in recall. The definitions and the k-th-neighbour convention (the point itself is not
its own neighbour) follow Naeem et al.'s `prdc` package, and tests/gan/metrics/test_precision_recall.py checks
the numbers against it. Distances are Euclidean in float64, computed in row blocks so that 10,000 x 10,000 sets
never hold more than a block of the distance matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gancli.gan.metrics.feature_stats import check_feature_sets

NEAREST_K = 3
BLOCK_ROWS = 1024  # rows of a distance block: 1024 x 10,000 float64 is 80 MB


@dataclass(frozen=True)
class Manifold:
    """Features [N, D] (float64) with their squared norms and each one's distance to its k-th nearest neighbour."""

    features: np.ndarray
    sq_norms: np.ndarray  # [N]
    radii: np.ndarray  # [N]

    @classmethod
    def of(cls, features: np.ndarray, k: int = NEAREST_K) -> Manifold:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) <= k:
            raise ValueError(f"a manifold with k = {k} needs features [N > {k}, D], got {list(x.shape)}")
        sq = np.einsum("ij,ij->i", x, x)
        radii = np.empty(len(x))
        for start in range(0, len(x), BLOCK_ROWS):
            d = _distances(x[start:start + BLOCK_ROWS], sq[start:start + BLOCK_ROWS], x, sq)
            # the k+1 smallest include the point itself (0): the largest of them is the k-th neighbour
            radii[start:start + len(d)] = np.partition(d, k, axis=1)[:, k]
        return cls(x, sq, radii)


def _distances(a: np.ndarray, sq_a: np.ndarray, b: np.ndarray, sq_b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)] through |a|² + |b|² - 2 a·b (as scikit-learn computes them)."""
    d2 = sq_a[:, None] - 2.0 * (a @ b.T) + sq_b[None, :]
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def prdc(real: Manifold, fake: Manifold, k: int = NEAREST_K) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of `fake` against `real` (both built with the same k).

    precision: share of fake samples inside some real ball; recall: share of real samples inside some fake ball;
    density: real balls holding each fake sample, divided by k, averaged (can exceed 1); coverage: share of real
    samples whose ball holds at least one fake sample.
    """
    check_feature_sets(real.features, fake.features)
    in_real_ball = np.zeros(len(fake.features), dtype=np.int64)  # real balls each fake sample falls in
    real_in_fake_ball = np.zeros(len(real.features), dtype=bool)
    real_covered = np.zeros(len(real.features), dtype=bool)
    for start in range(0, len(real.features), BLOCK_ROWS):
        stop = start + BLOCK_ROWS
        d = _distances(real.features[start:stop], real.sq_norms[start:stop], fake.features, fake.sq_norms)
        inside = d < real.radii[start:stop, None]  # [real block, fake]
        in_real_ball += inside.sum(axis=0)
        real_covered[start:stop] = inside.any(axis=1)  # its nearest fake sample lies inside its ball
        real_in_fake_ball[start:stop] = (d < fake.radii[None, :]).any(axis=1)
    return {"precision": float((in_real_ball > 0).mean()), "recall": float(real_in_fake_ball.mean()),
            "density": float(in_real_ball.mean() / k), "coverage": float(real_covered.mean())}


def precision_recall_density_coverage(real_features: np.ndarray, fake_features: np.ndarray,
                                      k: int = NEAREST_K) -> dict[str, float]:
    """prdc of two feature sets [N, D] and [M, D]."""
    return prdc(Manifold.of(real_features, k), Manifold.of(fake_features, k), k)
