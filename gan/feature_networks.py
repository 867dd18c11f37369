"""The networks that map images to features for scoring; numbers from different networks are never compared,
and every score names its network.

- `inception-v3-fid`: pytorch-fid's InceptionV3 pool3 features (2048-d) with the standard FID weights, read
  from disk only (gan/fid_inception.py); gives FID and KID.
- `mnist-classifier`: the classifier shipped in models/mnist-classifier/ (gan/classifier.py), MNIST only; its
  128-d penultimate features give FCD and KID, its softmax the classifier IS and the share of each digit class.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gancli.gan import fid_inception
from gancli.gan.classifier import FEATURE_NETWORK_NAME as CLASSIFIER_NETWORK_NAME
from gancli.gan.classifier import classifier_outputs, load_classifier

INCEPTION_NETWORK_NAME = "inception-v3-fid"


@dataclass
class FeatureNetwork:
    """A network that maps images to features (and, for classifiers, class probabilities)."""

    name: str
    description: str
    fd_name: str  # what FD on its features is called: "FID" or "FCD"
    # images uint8 [N, H, W, C] -> (features [N, D], class probabilities [N, K] or None)
    extract: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    info: dict  # JSON-serialisable facts about it (weights, feature size, accuracy)


def mnist_classifier_network(device: str | torch.device = "cpu", path: str | Path | None = None) -> FeatureNetwork:
    model, spec = load_classifier(path, device)

    def extract(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return classifier_outputs(model, spec, images)

    return FeatureNetwork(
        CLASSIFIER_NETWORK_NAME,
        f"MNIST CNN shipped in models/mnist-classifier (test accuracy {spec.test_accuracy:.2%}); "
        f"{spec.feature_dim}-d penultimate features",
        "FCD", extract,
        {"feature_dim": spec.feature_dim, "test_accuracy": spec.test_accuracy, "weights_sha256": spec.weights_sha256},
    )


def inception_network(weights: str | Path, device: str | torch.device = "cpu") -> FeatureNetwork:
    fid_inception.check_inception_weights(weights)
    model = fid_inception.load_fid_inception(weights, device)
    batch_size = 200 if torch.device(device).type == "cuda" else 50

    def extract(images: np.ndarray) -> tuple[np.ndarray, None]:
        return fid_inception.inception_features(model, images, batch_size), None

    return FeatureNetwork(INCEPTION_NETWORK_NAME, "pytorch-fid InceptionV3 (FID weights), 2048-d pool3 features",
                          "FID", extract, {"feature_dim": fid_inception.FEATURE_DIM, "weights": str(weights)})


def feature_networks(dataset: str, inception_weights: str | Path | None = None,
                     device: str | torch.device = "cpu") -> tuple[list[FeatureNetwork], list[str]]:
    """The networks that fit `dataset`, and notes on what was left out and why."""
    networks, notes = [], []
    weights = fid_inception.find_inception_weights(inception_weights)
    if weights is not None:
        networks.append(inception_network(weights, device))
    else:
        looked_at = " and ".join(fid_inception.inception_weights_locations())
        notes.append(f"no Inception weights found (looked at {looked_at}): FID and Inception KID are not computed; "
                     f"put {fid_inception.INCEPTION_WEIGHTS_NAME} there or pass --inception-weights to get them")
    if dataset == "mnist":
        networks.append(mnist_classifier_network(device))
    else:
        notes.append("IS and class shares need a classifier for the data set; only MNIST has one")
    return networks, notes
