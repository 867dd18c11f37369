"""gancli.gan.metrics.evaluate: FD, KID and IS rows of each image set against the reference, n beside every value, and the
statistics of every set but the generated one read from the cache on a second score."""
from __future__ import annotations

import numpy as np
import pytest

from gancli.gan.metrics.feature_stats import features_frechet_distance
from gancli.gan.metrics.detectors import FeatureNetwork
from gancli.gan.metrics.evaluate import IMAGE_SETS, score_with_network


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANCLI_CACHE_DIR", str(tmp_path / "cache"))


def fake_network(with_probs: bool = False, slow: bool = False) -> tuple[FeatureNetwork, list[int]]:
    """Pixel statistics as features (and a 3-class softmax of them); records the size of each batch it sees."""
    seen = []

    def extract(images: np.ndarray, progress=None):
        seen.append(len(images))
        x = images.astype(np.float64) / 255
        features = np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2)), x[:, ::4, ::4].reshape(len(x), -1)], 1)
        if progress is not None:
            progress(len(images), len(images))
        if not with_probs:
            return features, None
        logits = features[:, :3] * 10
        return features, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    network = FeatureNetwork("fake", "pixel statistics", "FD", extract, {}, cache_id=f"fake:probs={with_probs}:v1",
                             slow=slow)
    return network, seen


def image_sets(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    def draw(n, low, high):
        return rng.integers(low, high, size=(n, 8, 8, 3), dtype=np.uint8)

    sets = {"generated": draw(30, 0, 200), "real_test": draw(20, 50, 256), "untrained_generator": draw(30, 0, 40)}
    return sets, draw(50, 50, 256)


def test_rows_carry_n_beside_every_value_and_match_the_metrics():
    network, _ = fake_network()
    sets, reference = image_sets(np.random.default_rng(0))
    rows, shares = score_with_network(network, sets, reference, kid_subsets=5, kid_subset_size=10)
    assert shares is None and [r["metric"] for r in rows] == ["FD", "KID", "precision", "recall", "density", "coverage"]
    for row in rows:
        assert row["reference_n"] == 50 and row["feature_network"] == "fake"
        for name in IMAGE_SETS:
            assert row[name]["n"] == len(sets[name])
    fd = rows[0]
    features = {name: network.extract(images)[0] for name, images in {**sets, "reference": reference}.items()}
    assert fd["generated"]["value"] == pytest.approx(
        features_frechet_distance(features["generated"], features["reference"]), rel=1e-9)
    assert fd["real_test"]["value"] < fd["generated"]["value"] < fd["untrained_generator"]["value"]


def test_second_score_computes_features_of_the_generated_images_only():
    network, seen = fake_network(with_probs=True)
    sets, reference = image_sets(np.random.default_rng(1))
    first, first_shares = score_with_network(network, sets, reference, kid_subsets=5, kid_subset_size=10)
    assert sorted(seen) == sorted([50, 30, 20, 30])
    seen.clear()
    lines = []
    again, again_shares = score_with_network(network, sets, reference, kid_subsets=5, kid_subset_size=10,
                                             log=lines.append)
    assert seen == [30]  # the generated set; reference, real test and untrained generator came from the cache
    assert again == first and again_shares == first_shares
    assert sum("from the cache" in line for line in lines) == 3
    assert [r["metric"] for r in again] == ["FD", "KID", "precision", "recall", "density", "coverage", "IS"]
    assert len(again_shares["generated"]) == 3
    seen.clear()
    changed = reference.copy()
    changed[0, 0, 0, 0] ^= 1
    score_with_network(network, sets, changed, kid_subsets=5, kid_subset_size=10)
    assert sorted(seen) == [30, 50]  # new reference data: its statistics are computed again


def test_slow_networks_log_progress():
    network, _ = fake_network(slow=True)
    sets, reference = image_sets(np.random.default_rng(2))
    lines = []
    score_with_network(network, sets, reference, kid_subsets=2, kid_subset_size=10, log=lines.append)
    assert any(line.startswith("fake: generated: 30/30 (") for line in lines)
