"""Sample-quality statistics on features and class probabilities: FD, KID, IS, class shares, nearest neighbours.

Plain numpy on arrays, whatever network produced them; gan/scoring.py feeds them Inception or MNIST
classifier features. Numbers from different feature networks are never comparable.

- FD (Heusel et al., 2017): Fréchet distance between Gaussians fitted to two feature sets, computed by
  pytorch-fid's `calculate_frechet_distance` (FID on Inception pool3 features, FCD on classifier features).
- KID (Bińkowski et al., 2018): unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³,
  averaged over random subsets, as torch-fidelity computes it (100 subsets of 1000 by default).
- IS (Salimans et al., 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over 10 splits.
"""
from __future__ import annotations

import warnings

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy import linalg


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of features [N, D], in float64 as pytorch-fid fits them."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features [N, D] and [M, D] (FID/FCD)."""
    _check_features(features_a, features_b)
    mu_a, sigma_a = feature_statistics(features_a)
    mu_b, sigma_b = feature_statistics(features_b)
    with warnings.catch_warnings():
        # pytorch-fid 0.3.0 passes scipy's `disp`, deprecated since SciPy 1.16; the result is unchanged
        warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated.*", category=DeprecationWarning)
        # a collapsed or untrained generator has constant features, hence a singular covariance; sqrtm still gives
        # the trace to ~1e-9 (checked against the symmetric form tr sqrt(S1^1/2 S2 S1^1/2) on such sets), and
        # pytorch-fid itself falls back to an eps offset when the root is not finite
        warnings.filterwarnings("ignore", message="Matrix is singular", category=linalg.LinAlgWarning)
        return float(calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b))


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
    _check_features(features_a, features_b)
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    mmds = [polynomial_mmd2(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
            for _ in range(num_subsets)]
    return float(np.mean(mmds)), float(np.std(mmds))


def inception_score(probs: np.ndarray, num_splits: int = 10, eps: float = 1e-12) -> tuple[float, float]:
    """IS of class probabilities [N, K]: mean and std of exp(mean KL(p(y|x) || p(y))) over `num_splits` parts.

    Ranges from 1 (every image gets the same prediction) to K (confident predictions, classes used equally).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < num_splits:
        raise ValueError(f"IS needs probabilities [N, K] with N >= {num_splits} splits, got shape {list(probs.shape)}")
    scores = []
    for part in np.array_split(probs, num_splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + eps) - np.log(marginal + eps))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def class_shares(probs: np.ndarray) -> np.ndarray:
    """Share of images whose most likely class is k, for each k: [K], summing to 1."""
    probs = np.asarray(probs)
    return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / len(probs)


def nearest_neighbour_distances(queries: np.ndarray, references: np.ndarray, skip: np.ndarray | None = None,
                                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query [N, D] to its nearest reference [M, D], and that reference's index.

    `skip` [N] names, for each query, one reference index to leave out: the query itself when it is a reference.
    """
    q = np.asarray(queries, dtype=np.float32)
    r = np.asarray(references, dtype=np.float32)
    r_sq = (r * r).sum(axis=1)
    dists, index = np.empty(len(q)), np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), batch_size):
        block = q[start:start + batch_size]
        # ||a - b||² = ||a||² + ||b||² - 2 a·b: one matrix product per block instead of N x M differences
        d2 = (block * block).sum(axis=1, keepdims=True) + r_sq[None, :] - 2.0 * block @ r.T
        if skip is not None:
            d2[np.arange(len(block)), skip[start:start + len(block)]] = np.inf
        nearest = d2.argmin(axis=1)
        index[start:start + len(block)] = nearest
        dists[start:start + len(block)] = np.sqrt(np.maximum(d2[np.arange(len(block)), nearest], 0.0))
    return dists, index


def _check_features(features_a: np.ndarray, features_b: np.ndarray) -> None:
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature sets must be [N, D] with the same D, got {list(features_a.shape)} "
                         f"and {list(features_b.shape)}")
    if min(len(features_a), len(features_b)) < 2:
        raise ValueError("each feature set needs at least 2 rows to fit a covariance")
