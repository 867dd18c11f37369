"""IS (Salimans et al., 2016) and class shares, from a network's class probabilities (Inception's 1008-way
layer, or the MNIST classifier's softmax for the classifier IS)."""
from __future__ import annotations

import numpy as np


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
