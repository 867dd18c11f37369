"""The quality score tracked during training: every --eval-every epochs, a few thousand samples of the
EMA generator are scored, the score goes into metrics.csv and the plot, and the best-scoring EMA
generator is what the run ships.

MNIST-shaped data (28x28 grey) is judged by the project's MNIST classifier: Fréchet classifier
distance (FCD, lower is better) against the training images, classifier IS and, for a conditional
generator, the share of images classified as the label they were asked for. Everything else is
judged by Inception FID (gancli.gan.inception) when its network can be loaded. The samples come from
a fixed z, so scores of different epochs compare the generator, not the draw.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gancli.gan.classifier import classifier_outputs, load_classifier
from gancli.gan.data import ImageData
from gancli.gan.metrics import frechet_distance, inception_score
from gancli.runtime.pixels import to_uint8_nhwc

BATCH = 500


@dataclass
class QualityJudge:
    """Scores a generator's samples; `metric` names the value that decides the best epoch (lower wins)."""

    metric: str
    feature_network: str
    features: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # uint8 NHWC -> (features, probs)
    reference: np.ndarray  # features of the training images

    @torch.no_grad()
    def score(self, G: nn.Module, latent_dim: int, num_images: int, num_classes: int, seed: int,
              device: torch.device) -> dict[str, float]:
        images, labels = sample_images(G, latent_dim, num_images, num_classes, seed, device)
        features, probs = self.features(images)
        result = {self.metric: frechet_distance(features, self.reference)}
        if probs is not None:
            result["is"] = inception_score(probs)[0]
            if num_classes:
                result["label_accuracy"] = float(np.mean(probs.argmax(axis=1) == labels))
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


def mnist_judge(data: ImageData, device: torch.device) -> QualityJudge:
    model, spec = load_classifier(device=device)

    def features(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return classifier_outputs(model, spec, images)

    reference, _ = features(data.train.permute(0, 2, 3, 1).numpy())
    return QualityJudge("fcd", "mnist-classifier", features, reference)


def make_judge(data: ImageData, image_shape: tuple[int, int, int], device: torch.device,
               log: Callable[[str], None]) -> QualityJudge | None:
    """The judge for this data, or None (logged) when no feature network fits it."""
    if image_shape == (1, 28, 28):
        return mnist_judge(data, device)
    from gancli.gan.inception import inception_judge

    judge = inception_judge(data, device, log)
    if judge is None:
        log("quality: no Inception network available, so no score is tracked; every epoch's EMA generator is kept")
    return judge
