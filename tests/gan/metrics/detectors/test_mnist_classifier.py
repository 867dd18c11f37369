"""The shipped MNIST classifier: its accuracy from the shipped weights, and the FCD, IS and class shares it gives
on real MNIST (never retrained here)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gancli.gan.metrics.detectors import mnist_classifier as classifier
from gancli.gan.metrics.feature_stats import features_frechet_distance
from gancli.gan.metrics.inception_score import class_shares, inception_score
from gancli.gan.errors import ArtifactError, EvalError
from gancli.gan.metrics.references import load_mnist_nhwc


@pytest.fixture(scope="module")
def shipped() -> tuple[classifier.MNISTClassifier, classifier.ClassifierSpec]:
    return classifier.load_classifier()


@pytest.fixture(scope="module")
def mnist_test(data_root) -> tuple[np.ndarray, np.ndarray]:
    return load_mnist_nhwc(data_root, train=False, download=False)


@pytest.fixture(scope="module")
def test_outputs(shipped, mnist_test) -> tuple[np.ndarray, np.ndarray]:
    model, spec = shipped
    return classifier.classifier_outputs(model, spec, mnist_test[0])


@pytest.fixture(scope="module")
def train_features(shipped, data_root) -> np.ndarray:
    # a seeded third of MNIST train: the FCD floor barely moves, the test runs three times faster
    images, _ = load_mnist_nhwc(data_root, train=True, download=False)
    subset = np.sort(np.random.default_rng(0).choice(len(images), 20000, replace=False))
    return classifier.classifier_outputs(*shipped, images[subset])[0]


def test_shipped_files_are_small_and_self_described(shipped):
    _, spec = shipped
    assert (classifier.CLASSIFIER_DIR / classifier.WEIGHTS_NAME).stat().st_size < 2 * 1024 * 1024
    described = json.loads((classifier.CLASSIFIER_DIR / classifier.SPEC_NAME).read_text())
    assert described["format"] == classifier.CLASSIFIER_FORMAT
    assert {"seed", "epochs", "seconds"} <= set(described["training"])
    assert len(spec.weights_sha256) == 64 and spec.feature_dim == 128


def test_shipped_classifier_reaches_98_percent_on_all_of_mnist_test(test_outputs, mnist_test, shipped):
    _, probs = test_outputs
    accuracy = float((probs.argmax(1) == mnist_test[1]).mean())
    assert accuracy >= 0.98
    assert accuracy == pytest.approx(shipped[1].test_accuracy, abs=1e-4)  # the JSON tells the truth


def test_real_test_images_score_high_classifier_is_and_balanced_class_shares(test_outputs, mnist_test):
    features, probs = test_outputs
    assert features.shape == (10000, 128) and probs.shape == (10000, 10)
    is_mean, _ = inception_score(probs)
    assert is_mean > 9.3  # room above the 9.0 that the shipped generator must reach
    shares = class_shares(probs)
    true_shares = np.bincount(mnist_test[1], minlength=10) / len(mnist_test[1])
    assert np.abs(shares - true_shares).max() < 0.005
    assert ((shares > 0.08) & (shares < 0.12)).all()


def test_fcd_is_small_for_real_test_images_and_large_for_noise(test_outputs, train_features, shipped):
    real_fcd = features_frechet_distance(test_outputs[0], train_features)
    noise = np.random.default_rng(0).integers(0, 256, size=(2000, 28, 28, 1), dtype=np.uint8)
    noise_fcd = features_frechet_distance(classifier.classifier_outputs(*shipped, noise)[0], train_features)
    assert real_fcd < 1.0
    assert noise_fcd > 100 * real_fcd


def test_features_do_not_depend_on_the_batch(shipped, mnist_test):
    images = mnist_test[0][:64]
    whole = classifier.classifier_outputs(*shipped, images)
    batched = classifier.classifier_outputs(*shipped, images, batch_size=10)
    np.testing.assert_allclose(whole[0], batched[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whole[1], batched[1], rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_and_a_changed_weights_file_is_refused(tmp_path, mnist_test):
    torch.manual_seed(0)
    spec = classifier.ClassifierSpec(conv_channels=(4, 8), feature_dim=16)
    model = classifier.build_classifier(spec).eval()
    classifier.save_classifier(model, spec, tmp_path)
    loaded, loaded_spec = classifier.load_classifier(tmp_path)
    assert loaded_spec == spec
    images = mnist_test[0][:8]
    np.testing.assert_array_equal(classifier.classifier_outputs(model, spec, images)[1],
                                  classifier.classifier_outputs(loaded, loaded_spec, images)[1])
    with open(tmp_path / classifier.WEIGHTS_NAME, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match the hash"):
        classifier.load_classifier(tmp_path)


def test_a_missing_classifier_is_one_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="lacks classifier.json or classifier.safetensors; restore"):
        classifier.load_classifier(tmp_path)


def test_images_that_are_not_mnist_shaped_are_refused(shipped):
    with pytest.raises(EvalError, match=r"needs uint8 \[N, 28, 28, 1\] images, got uint8 \[4, 32, 32, 3\]"):
        classifier.classifier_outputs(*shipped, np.zeros((4, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(EvalError, match="got float32"):
        classifier.classifier_outputs(*shipped, np.zeros((4, 28, 28, 1), dtype=np.float32))


@pytest.mark.parametrize("name, damage, expected", [
    (classifier.SPEC_NAME, lambda p: p.write_bytes(p.read_bytes()[:40]), "is not valid JSON"),
    (classifier.SPEC_NAME, lambda p: p.write_bytes(b""), "is empty"),
    (classifier.SPEC_NAME, lambda p: p.write_text("[]"), "holds a JSON list"),
    (classifier.SPEC_NAME, lambda p: p.write_text(p.read_text().replace('"format_version": 1', '"format_version": 9')),
     "was written by a newer gancli"),
    (classifier.SPEC_NAME, lambda p: p.write_text(p.read_text().replace('"feature_dim": 16', '"feature_dim": "16"')),
     'is damaged: feature_dim is "16", not an integer'),
    (classifier.SPEC_NAME, lambda p: p.write_text(p.read_text().replace('"conv_channels": [\n    4,\n    8\n  ]',
                                                                        '"conv_channels": [4]')),
     "is damaged: conv_channels is [4], not a list of 2 values"),
    (classifier.WEIGHTS_NAME, lambda p: p.write_bytes(p.read_bytes()[:100]), "does not match the hash"),
    (classifier.WEIGHTS_NAME, lambda p: p.write_bytes(b""), "is empty"),
])
def test_a_damaged_classifier_is_one_line_naming_the_file(tmp_path, name, damage, expected):
    torch.manual_seed(0)
    spec = classifier.ClassifierSpec(conv_channels=(4, 8), feature_dim=16)
    classifier.save_classifier(classifier.build_classifier(spec), spec, tmp_path)
    damage(tmp_path / name)
    with pytest.raises(ArtifactError) as error:
        classifier.load_classifier(tmp_path)
    message = str(error.value)
    assert "\n" not in message and f"{tmp_path / name} {expected}" in message
    assert ("upgrade gancli" if "newer" in expected else "scripts/train_classifier.py") in message


def test_train_classifier_is_seeded_and_leaves_the_global_rng_alone(mnist_test):
    images, labels = mnist_test[0][:300], mnist_test[1][:300]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    spec = classifier.ClassifierSpec()
    models = [classifier.train_classifier(spec, images, labels, epochs=1, seed=5) for _ in range(2)]
    assert torch.equal(torch.random.get_rng_state(), before)
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(a, b)
    other = classifier.train_classifier(spec, images, labels, epochs=1, seed=6)
    assert not torch.equal(next(iter(other.parameters())), next(iter(models[0].parameters())))
