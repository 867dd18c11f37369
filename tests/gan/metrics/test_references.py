"""gancli.gan.metrics.references: the real images an evaluation compares with, for MNIST and for folders."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from gancli.gan.errors import EvalError
from gancli.gan.metrics.references import load_mnist_nhwc, load_real_data


def test_mnist_is_read_as_nhwc_arrays_with_labels(data_root):
    images, labels = load_mnist_nhwc(data_root, train=False, download=False)
    assert images.dtype == np.uint8 and images.shape == (10_000, 28, 28, 1)
    assert labels.dtype == np.int64 and labels.shape == (10_000,) and set(labels.tolist()) == set(range(10))


def test_mnist_real_data_is_train_as_reference_and_test_as_held_out(data_root):
    real = load_real_data("mnist", data_root, (28, 28, 1), download=False)
    assert real.reference.shape == real.training.shape == (60_000, 28, 28, 1)
    assert real.test.shape == (10_000, 28, 28, 1) and real.test_is_held_out


def test_folder_data_sets_are_the_whole_set_as_reference_and_a_seeded_fifth_as_real_sample(data_root, tmp_path):
    faces = sorted((data_root / "cats" / "faces").glob("*.jpg"))[:20]
    folder = tmp_path / "cats" / "one-class"
    folder.mkdir(parents=True)
    for path in faces:
        shutil.copy(path, folder / path.name)
    real = load_real_data(str(tmp_path / "cats"), data_root, (32, 32, 1))
    assert real.reference.shape == real.training.shape == (20, 32, 32, 1) and real.test.shape == (4, 32, 32, 1)
    assert not real.test_is_held_out
    flat = lambda x: {im.tobytes() for im in x}  # noqa: E731
    assert flat(real.test) < flat(real.reference) == flat(real.training)
    again = load_real_data(str(tmp_path / "cats"), data_root, (32, 32, 1))
    assert np.array_equal(again.test, real.test)


def test_mnist_real_data_needs_mnist_shaped_images(data_root):
    with pytest.raises(EvalError, match=r"the generated images are \[64, 64, 3\] but MNIST is \[28, 28, 1\]"):
        load_real_data("mnist", data_root, (64, 64, 3))
