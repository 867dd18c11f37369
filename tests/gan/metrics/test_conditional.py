"""gan/metrics/conditional.py: label accuracy, per-class FCD and the classification accuracy score (CAS) of labelled
digits, checked on real MNIST digits with their true labels (a perfect generator) and with shuffled labels (a
generator that ignores its label)."""
from __future__ import annotations

import numpy as np
import pytest

from gancli.gan.metrics import conditional as cm
from gancli.gan.metrics.detectors.mnist_classifier import load_classifier
from gancli.gan.errors import EvalError
from gancli.gan.metrics.evaluate import evaluate_conditional
from gancli.gan.metrics.references import load_mnist_nhwc


@pytest.fixture(scope="module")
def mnist(data_root):
    train = cm.LabelledImages(*load_mnist_nhwc(data_root, train=True, download=False))
    test = cm.LabelledImages(*load_mnist_nhwc(data_root, train=False, download=False))
    return cm.sample(train, 6000, seed=1), test


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def true_and_shuffled(mnist, classifier):
    """Scores of 1,000 real test digits labelled truly, and the same digits with their labels shuffled."""
    train, test = mnist
    digits = cm.sample(test, 1000, seed=2)
    shuffled = cm.LabelledImages(digits.images, np.random.default_rng(0).permutation(digits.labels))
    scores = [cm.conditional_scores(images, train, test, *classifier, cm.DIGITS, cas_images=1000, cas_epochs=2)
              for images in (digits, shuffled)]
    return scores


def test_true_labels_score_like_real_data(true_and_shuffled):
    true, _ = true_and_shuffled
    assert true["label_accuracy"]["generated"] > 0.97 and true["label_accuracy"]["real_test"] > 0.98
    assert all(a > 0.9 for a in true["label_accuracy"]["per_class"]["generated"])
    fcd = true["fcd_per_class"]
    # 100 images a class against the floor's ~1,000: a Fréchet distance grows as samples shrink (128-d features)
    assert len(fcd["generated"]["per_class"]) == 10 and fcd["generated"]["mean"] < 5 * fcd["real_test"]["mean"]
    cas = true["cas"]
    assert (cas["train_images"], cas["test_images"], cas["epochs"]) == (1000, 10000, 2)
    assert cas["generated"] > 0.8 and abs(cas["generated"] - cas["real_train"]) < 0.05
    assert sum(true["images_per_class"]) == 1000 and true["class_names"] == cm.DIGITS


def test_labels_that_do_not_match_the_digits_score_badly(true_and_shuffled):
    true, shuffled = true_and_shuffled
    assert shuffled["label_accuracy"]["generated"] < 0.2
    assert shuffled["cas"]["generated"] < 0.3 < shuffled["cas"]["real_train"]  # the reference does not change
    assert shuffled["fcd_per_class"]["generated"]["mean"] > 10 * true["fcd_per_class"]["generated"]["mean"]


def test_label_accuracy_and_per_class_fd_on_small_cases():
    probs = np.eye(3)[[0, 1, 2, 2]]
    overall, per_class = cm.label_accuracy(probs, np.array([0, 1, 1, 2]), num_classes=4)
    assert overall == 0.75 and per_class == [1.0, 0.5, 1.0, None]
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(40, 3)), np.arange(40) % 2
    result = cm.per_class_fd(features, labels, features, labels, num_classes=3)
    assert result["per_class"][2] is None and result["mean"] == pytest.approx(0.0, abs=1e-6)


def test_digit_labels_map_a_models_classes_to_digits():
    assert cm.digit_labels(np.array([0, 9, 3]), cm.DIGITS).tolist() == [0, 9, 3]
    reordered = ["9", "8", "7", "6", "5", "4", "3", "2", "1", "0"]
    assert cm.digit_labels(np.array([0, 9]), reordered).tolist() == [9, 0]
    with pytest.raises(EvalError, match="classes are the digits 0-9"):
        cm.digit_labels(np.array([0]), ["cat", "dog"])


def test_a_conditional_model_of_another_data_set_gets_a_note_not_scores():
    notes: list[str] = []
    images = np.zeros((20, 28, 28, 1), dtype=np.uint8)
    assert evaluate_conditional(images, np.arange(20) % 2, ("cat", "dog"), "mnist", None, "cpu", 0, notes) is None
    assert evaluate_conditional(images, np.arange(20) % 10, tuple(cm.DIGITS), "cats", None, "cpu", 0, notes) is None
    assert len(notes) == 2 and "classes are the digits 0-9" in notes[0]
