"""KID (Bińkowski et al., 2018): unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³,
averaged over random subsets, as torch-fidelity computes it (100 subsets of 1000 by default)."""
from __future__ import annotations

import numpy as np

from gancli.gan.metrics.feature_stats import check_feature_sets


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD² between equal-size sets x, y [m, D] with k(a, b) = (a·b / D + coef0)^degree.

    The x-x and y-y terms leave out the diagonal (k(a, a)); the x-y term keeps all m² pairs, as in
    Bińkowski et al.'s reference code and torch-fidelity.
    """
    m, d = x.shape
    k_xx = (x @ x.T / d + coef0) ** degree
    k_yy = (y @ y.T / d + coef0) ** degree
    k_xy = (x @ y.T / d + coef0) ** degree
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and std of the unbiased polynomial MMD² over `num_subsets` random subsets (seeded).

    Each subset draws min(subset_size, N, M) features from each set without replacement.
    """
    check_feature_sets(features_a, features_b)
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    mmds = [polynomial_mmd2(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
            for _ in range(num_subsets)]
    return float(np.mean(mmds)), float(np.std(mmds))
