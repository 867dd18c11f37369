"""Memorisation check, in pixel space (Euclidean distance between images scaled to [0, 1], no feature network,
so it works for every data set).

For a seeded sample of generated images: the distance to the nearest training image, divided by the typical
distance between training images (the median, over a seeded sample of training images, of the distance to their
nearest other training image). A ratio below NEAR_COPY_RATIO flags a near-copy. On MNIST the lowest ratio of any
of the 10,000 real test images is about 0.2 and the median about 1.0; exact copies score 0.
"""
from __future__ import annotations

import numpy as np


NEAR_COPY_RATIO = 0.1  # half the lowest ratio of any real MNIST test image: only (near-)copies fall below


def memorisation_check(generated: np.ndarray, training: np.ndarray, held_out: np.ndarray | None = None,
                       sample_size: int = 1000, threshold: float = NEAR_COPY_RATIO, seed: int = 0) -> dict:
    """Nearest-training-image distance of a seeded sample of generated images, over the typical distance between
    training images (pixel space, [0, 1]); ratios below `threshold` are flagged as near-copies.

    The same ratio for real images is reported beside it: `held_out` images (disjoint from `training`) when given,
    otherwise the training sample itself, leave-one-out (its median is then 1 by construction).
    """
    rng = np.random.default_rng(seed)
    train_flat = _flat_unit(training)
    sample = np.sort(rng.choice(len(generated), min(sample_size, len(generated)), replace=False))
    train_sample = rng.choice(len(training), min(sample_size, len(training)), replace=False)
    # leave-one-out: each sampled training image against all the others
    typical_d, _ = nearest_neighbour_distances(train_flat[train_sample], train_flat, skip=train_sample)
    typical = float(np.median(typical_d))
    gen_d, gen_nn = nearest_neighbour_distances(_flat_unit(generated[sample]), train_flat)
    ratios = gen_d / typical
    if held_out is not None:
        held = held_out[np.sort(rng.choice(len(held_out), min(sample_size, len(held_out)), replace=False))]
        real_ratios = nearest_neighbour_distances(_flat_unit(held), train_flat)[0] / typical
        real_source = "held-out real images against the training images"
    else:
        real_ratios = typical_d / typical
        real_source = "sampled training images against the other training images (leave-one-out)"
    flagged = np.flatnonzero(ratios < threshold)
    return {
        "space": "pixels scaled to [0, 1], Euclidean distance",
        "num_checked": int(len(sample)),
        "num_training_images": int(len(training)),
        "typical_training_distance": typical,
        "threshold_ratio": threshold,
        "median_ratio": float(np.median(ratios)),
        "min_ratio": float(ratios.min()),
        "num_flagged": int(len(flagged)),
        "share_flagged": float(len(flagged) / len(sample)),
        # indices are positions in the caller's arrays, so the CLI can name the image (its seed) and the training image
        "flagged": [{"generated_index": int(sample[i]), "training_index": int(gen_nn[i]), "ratio": float(ratios[i])}
                    for i in flagged[np.argsort(ratios[flagged])][:20]],
        "real": {"source": real_source, "median_ratio": float(np.median(real_ratios)),
                 "min_ratio": float(real_ratios.min()),
                 "share_flagged": float(np.mean(real_ratios < threshold))},
    }


def _flat_unit(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


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
