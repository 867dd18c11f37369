"""Scores of a class-conditional MNIST generator: does image i show the digit it was asked for, and how well?

- label accuracy: the share of generated images that the project's MNIST classifier (detectors/mnist_classifier.py)
  assigns to the label they were generated with; its reference is the classifier's accuracy on real MNIST test.
- per-class FCD: for each class c, the Fréchet distance between the classifier's 128-d features of the generated
  images of class c and of the real MNIST train images of class c; the mean over classes and each class. Its
  floor is the same distance for the real MNIST test images of class c.
- classification accuracy score (CAS; Ravuri & Vinyals, 2019): a fresh classifier of the same architecture and
  recipe as the shipped one (gan/classifier.train_classifier: AdamW, one-cycle, batch 128, seeded), trained only on
  the generated labelled images, tested on real MNIST test. Its reference is the same recipe trained on as many
  real MNIST train images (a seeded sample), so the gap between the two is what the generator costs.

Images are uint8 [N, 28, 28, 1] (NHWC); labels int64 [N] are the digits 0-9 (a model's labels map to digits
through its class names, which must be "0" to "9").
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gancli.gan.metrics.detectors.mnist_classifier import (FEATURE_NETWORK_NAME, ClassifierSpec, MNISTClassifier, check_mnist_images,
                                   classifier_outputs, train_classifier)
from gancli.gan.errors import EvalError
from gancli.gan.metrics.feature_stats import Log, features_frechet_distance

DIGITS = [str(digit) for digit in range(10)]
# CAS recipe: the shipped classifier's (gancli.gan.metrics.detectors.mnist_classifier.train_classifier) on fewer images, kept fast on a
# CPU: 10,000 images x 5 epochs is about 20 s of one CPU thread per classifier
CAS_TRAIN_IMAGES = 10_000
CAS_EPOCHS = 5
MIN_PER_CLASS = 2  # a Fréchet distance needs two images of the class to fit a covariance


@dataclass
class LabelledImages:
    """uint8 images [N, 28, 28, 1] with their digit labels int64 [N]."""

    images: np.ndarray
    labels: np.ndarray


def digit_labels(labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """A model's labels (indices into its class names) as digits; EvalError unless its classes are the digits."""
    if sorted(class_names) != DIGITS:
        raise EvalError(f"conditional MNIST scores need a model whose classes are the digits 0-9, not "
                        f"{list(class_names)[:12]}")
    digits = np.array([int(name) for name in class_names], dtype=np.int64)
    return digits[np.asarray(labels, dtype=np.int64)]


def label_accuracy(probs: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> tuple[float, list[float | None]]:
    """Share of images whose most probable class is their label, overall and per label (None: no image of it)."""
    hits = probs.argmax(axis=1) == labels
    per_class = [float(hits[labels == c].mean()) if np.any(labels == c) else None for c in range(num_classes)]
    return float(hits.mean()), per_class


def per_class_fd(features: np.ndarray, labels: np.ndarray, reference: np.ndarray, reference_labels: np.ndarray,
                 num_classes: int = 10) -> dict:
    """Fréchet distance of each class's features to the reference features of the same class; the mean over
    the classes that have at least MIN_PER_CLASS images on both sides (the others are None)."""
    per_class: list[float | None] = []
    for c in range(num_classes):
        mine, theirs = features[labels == c], reference[reference_labels == c]
        per_class.append(features_frechet_distance(mine, theirs) if min(len(mine), len(theirs)) >= MIN_PER_CLASS else None)
    scored = [d for d in per_class if d is not None]
    return {"mean": float(np.mean(scored)) if scored else None, "per_class": per_class}


def accuracy(model: MNISTClassifier, spec: ClassifierSpec, test: LabelledImages) -> float:
    _, probs = classifier_outputs(model, spec, test.images)
    return float(np.mean(probs.argmax(axis=1) == test.labels))


def classification_accuracy_score(train: LabelledImages, test: LabelledImages, epochs: int = CAS_EPOCHS,
                                  seed: int = 0, device: str | torch.device = "cpu",
                                  spec: ClassifierSpec | None = None) -> float:
    """CAS: accuracy on `test` (real images) of a classifier trained only on `train` (generated images)."""
    spec = spec or ClassifierSpec()
    return accuracy(train_classifier(spec, train.images, train.labels, epochs, seed=seed, device=device), spec, test)


def sample(data: LabelledImages, count: int, seed: int) -> LabelledImages:
    """A seeded sample of `count` images (all of them when there are fewer), in their original order."""
    if count >= len(data.images):
        return data
    keep = np.sort(np.random.default_rng(seed).choice(len(data.images), count, replace=False))
    return LabelledImages(data.images[keep], data.labels[keep])


def conditional_scores(generated: LabelledImages, real_train: LabelledImages, real_test: LabelledImages,
                       classifier: MNISTClassifier, classifier_spec: ClassifierSpec, class_names: Sequence[str],
                       cas_images: int = CAS_TRAIN_IMAGES, cas_epochs: int = CAS_EPOCHS, seed: int = 0,
                       device: str | torch.device = "cpu", log: Log | None = None) -> dict:
    """Label accuracy, per-class FCD and CAS of generated digits with their labels (digits 0-9), each beside its
    real-data reference; JSON-ready. `classifier` is the shipped MNIST classifier (the judge); CAS trains its own."""
    for name, data in (("generated", generated), ("real train", real_train), ("real test", real_test)):
        check_mnist_images(data.images, f"{name} images")
        if len(data.labels) != len(data.images):
            raise EvalError(f"{name}: {len(data.labels)} labels for {len(data.images)} images; pass one label per image")
    if log:
        log(f"conditional: classifier features of {len(generated.images)} generated, {len(real_train.images)} real "
            f"train and {len(real_test.images)} real test images")
    gen_features, gen_probs = classifier_outputs(classifier, classifier_spec, generated.images)
    train_features, _ = classifier_outputs(classifier, classifier_spec, real_train.images)
    test_features, test_probs = classifier_outputs(classifier, classifier_spec, real_test.images)
    gen_accuracy, gen_per_class = label_accuracy(gen_probs, generated.labels)
    real_accuracy, real_per_class = label_accuracy(test_probs, real_test.labels)

    count = min(cas_images, len(generated.images))
    cas_train = sample(generated, count, seed)
    reference_train = sample(real_train, count, seed)
    if log:
        log(f"conditional: CAS: training a classifier on {count} generated images ({cas_epochs} epochs), "
            f"and one on {count} real train images")
    cas = classification_accuracy_score(cas_train, real_test, cas_epochs, seed, device)
    cas_real = classification_accuracy_score(reference_train, real_test, cas_epochs, seed, device)
    return {
        "class_names": list(class_names),
        "images_per_class": np.bincount(generated.labels, minlength=10).tolist(),
        "feature_network": FEATURE_NETWORK_NAME,
        "label_accuracy": {
            "better": "higher", "generated": gen_accuracy, "real_test": real_accuracy,
            "per_class": {"generated": gen_per_class, "real_test": real_per_class},
            "description": "share of images the MNIST classifier assigns to the label they were made for "
                           "(real test: to their true label)",
        },
        "fcd_per_class": {
            "better": "lower",
            "generated": per_class_fd(gen_features, generated.labels, train_features, real_train.labels),
            "real_test": per_class_fd(test_features, real_test.labels, train_features, real_train.labels),
            "description": "Fréchet distance of the classifier's 128-d features of each class to real MNIST train "
                           "images of the same class",
        },
        "cas": {
            "better": "higher", "generated": cas, "real_train": cas_real,
            "train_images": count, "test_images": len(real_test.images), "epochs": cas_epochs, "seed": seed,
            "description": "accuracy on real MNIST test of an MNISTClassifier trained only on the generated "
                           "labelled images (real_train: the same recipe on as many real train images)",
        },
    }
