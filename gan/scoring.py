"""Scores of image sets with one feature network: FD and KID of each set against the reference images, and,
for classifiers, IS and the share of each class. The math is gan/metrics.py's.

Reference figures are computed with the same network, counts and settings as the generated score:
- `real_test`: real images the generator did not learn from, against the same reference (the floor: what a
  perfect generator would score); see gan/real_data.py.
- `untrained_generator`: images of a freshly initialised generator of the same architecture (the ceiling); see
  gan/untrained.py.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gancli.gan import metrics
from gancli.gan.errors import EvalError
from gancli.gan.feature_cache import FeatureStats, feature_stats, frechet_distance
from gancli.gan.feature_networks import FeatureNetwork
from gancli.gan.standard_inception import progress_logger

IMAGE_SETS = ("generated", "real_test", "untrained_generator")
UNCACHED_SETS = ("generated",)  # every other set is the same images each time: its statistics are cached
MIN_IMAGES = 10  # fewer images give no meaningful score (10,000 is the usual)
Log = Callable[[str], None]


def _score(value: float, std: float | None = None, n: int | None = None) -> dict:
    return {"value": float(value), "std": None if std is None else float(std), "n": n}


def set_statistics(network: FeatureNetwork, images: np.ndarray, what: str, cache: bool = True, seed: int = 0,
                   log: Log | None = None) -> FeatureStats:
    """FeatureStats of `images` through `network`: from the cache when it holds them (`cache` and the network
    is cacheable), else computed, with progress logged for slow networks, and stored."""
    label = f"{network.name}: {what}"

    def extract(batch: np.ndarray):
        if log:
            log(f"{label}: features of {len(batch):,} images")
        if log and network.slow:
            return network.extract(batch, progress_logger(log, label))
        return network.extract(batch)

    stats, _ = feature_stats(extract, images, network.cache_id, cache=cache, seed=seed, log=log, what=label)
    return stats


def score_with_network(network: FeatureNetwork, image_sets: dict[str, np.ndarray], reference: np.ndarray,
                       kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
                       log: Log | None = None) -> tuple[list[dict], dict | None]:
    """FD, KID (and IS with class shares, for classifiers) of each image set against `reference`.

    Returns score rows {metric, feature_network, better, reference_n, <set>: {value, std, n}} and the class
    shares (or None). FD depends on n (fewer images score worse), so every value carries the n it was taken on.
    Statistics of the reference and of every set but "generated" come from the cache when it holds them
    (gan/feature_cache.py); KID draws its subsets from a seeded pool of at most feature_cache.KID_POOL features.
    """
    ref = set_statistics(network, reference, "reference", True, seed, log)
    fd, kid, is_, shares = {}, {}, {}, {}
    for set_name, images in image_sets.items():
        stats = set_statistics(network, images, set_name.replace("_", " "), set_name not in UNCACHED_SETS, seed, log)
        fd[set_name] = _score(frechet_distance(stats, ref), n=stats.n)
        kid[set_name] = _score(*metrics.kernel_inception_distance(stats.kid_features, ref.kid_features, kid_subsets,
                                                                   kid_subset_size, seed), n=stats.n)
        if stats.probs is not None:
            is_[set_name] = _score(*metrics.inception_score(stats.probs), n=stats.n)
            shares[set_name] = metrics.class_shares(stats.probs).tolist()
    common = {"feature_network": network.name, "better": "lower", "reference_n": ref.n}
    rows = [{"metric": network.fd_name, **common, **fd}, {"metric": "KID", **common, **kid}]
    if not is_:
        return rows, None
    rows.append({"metric": "IS", "feature_network": network.name, "better": "higher", **is_})
    return rows, {"feature_network": network.name, **shares}


def check_images(images: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> None:
    """Raise EvalError unless `images` is uint8 [N >= MIN_IMAGES, H, W, C in (1, 3)], of `shape` [H, W, C] when given."""
    is_nhwc = isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[3] in (1, 3)
    if not is_nhwc or images.dtype != np.uint8:
        got = f"{images.dtype} {list(images.shape)}" if isinstance(images, np.ndarray) else type(images).__name__
        raise EvalError(f"{name} images must be uint8 [N, H, W, C] with C 1 or 3, got {got}")
    if len(images) < MIN_IMAGES:
        raise EvalError(f"{name}: {len(images)} images are too few to score; use -n {MIN_IMAGES} or more "
                        f"(10000 is standard)")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise EvalError(f"{name} images are {list(images.shape[1:])} but the real ones are {list(shape)}")
