"""gancli.gan.metrics.feature_stats: statistics of an image set, FD from them, and their cache keyed by the images' content
and the network (hit on the second call, missed when the images or the network change, rewritten when unreadable)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from gancli.gan.metrics import feature_stats as fc
from gancli.gan import data


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANCLI_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class CountingExtract:
    """A cheap stand-in network: per-channel means and spreads of the pixels, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, images: np.ndarray):
        self.calls += 1
        x = images.astype(np.float64)
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2)), x[:, ::8, ::8].reshape(len(x), -1)], 1), None


def images(seed: int, n: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)


def test_fd_from_statistics_is_the_closed_form_for_known_gaussians():
    # N(m1, diag(v1)) vs N(m2, diag(v2)): |m1 - m2|^2 + sum(v1 + v2 - 2 sqrt(v1 v2))
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    a = fc.FeatureStats(100, m1, np.diag(v1), np.zeros((2, 3), np.float32), None)
    b = fc.FeatureStats(100, m2, np.diag(v2), np.zeros((2, 3), np.float32), None)
    expected = np.sum((m1 - m2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert fc.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)  # 5 + (1 + 1 + 4) = 11
    assert fc.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)


def pytorch_fid_distance(x: np.ndarray, y: np.ndarray) -> float:
    """pytorch-fid's own FD (scipy's sqrtm of the product), the established implementation to agree with."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    return float(calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)))


@pytest.mark.filterwarnings("ignore:.*disp.*:DeprecationWarning")  # pytorch-fid 0.3.0 passes scipy's old `disp`
def test_fd_from_statistics_equals_pytorch_fid():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 6)), rng.normal(0.5, 2.0, size=(200, 6))
    stats = fc.FeatureStats.from_features
    assert fc.frechet_distance(stats(x), stats(y)) == pytest.approx(pytorch_fid_distance(x, y), rel=1e-12)


@pytest.mark.filterwarnings("ignore:.*disp.*:DeprecationWarning", "ignore::scipy.linalg.LinAlgWarning")
def test_fd_from_statistics_handles_fewer_images_than_feature_dimensions():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(10, 50)), rng.normal(0.3, 1.5, size=(15, 50))  # singular covariances
    stats = fc.FeatureStats.from_features
    assert fc.frechet_distance(stats(x), stats(y)) == pytest.approx(pytorch_fid_distance(x, y), rel=1e-6)
    assert abs(fc.frechet_distance(stats(x), stats(x))) < 1e-4


def test_kid_pool_is_a_seeded_subset_of_at_most_kid_pool_rows():
    features = np.random.default_rng(0).normal(size=(50, 4))
    small = fc.FeatureStats.from_features(features, kid_pool=100)
    np.testing.assert_array_equal(small.kid_features, features.astype(np.float32))
    pooled = fc.FeatureStats.from_features(features, kid_pool=20, seed=3)
    assert pooled.kid_features.shape == (20, 4) and pooled.n == 50
    np.testing.assert_array_equal(pooled.kid_features, fc.FeatureStats.from_features(features, kid_pool=20,
                                                                                     seed=3).kid_features)


def test_second_call_is_a_cache_hit_and_changed_images_a_miss(cache):
    extract, lines = CountingExtract(), []
    first, hit = fc.feature_stats(extract, images(0), "net:v1", log=lines.append, what="ref")
    assert not hit and extract.calls == 1
    assert len(list((cache / fc.CACHE_SUBDIR).glob("*.npz"))) == 1
    again, hit = fc.feature_stats(extract, images(0), "net:v1", log=lines.append, what="ref")
    assert hit and extract.calls == 1 and any("from the cache" in line for line in lines)
    for name in ("mean", "cov", "kid_features"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    changed = images(0)
    changed[3, 5, 5, 1] ^= 1  # one pixel of one image
    assert not fc.feature_stats(extract, changed, "net:v1")[1] and extract.calls == 2
    assert not fc.feature_stats(extract, images(0), "net:v2")[1] and extract.calls == 3  # another network
    assert not fc.feature_stats(extract, images(0), "net:v1", cache=False)[1] and extract.calls == 4
    assert not fc.feature_stats(extract, images(0), None)[1] and extract.calls == 5  # network not cacheable
    assert not list(cache.rglob(".*tmp-*"))  # written atomically: no temp file left


def test_an_unreadable_entry_is_computed_again_and_rewritten(cache):
    extract = CountingExtract()
    fc.feature_stats(extract, images(1), "net:v1")
    (entry,) = (cache / fc.CACHE_SUBDIR).glob("*.npz")
    entry.write_bytes(b"truncated")
    assert not fc.feature_stats(extract, images(1), "net:v1")[1] and extract.calls == 2
    assert fc.feature_stats(extract, images(1), "net:v1")[1] and extract.calls == 2


def test_probabilities_are_kept_for_classifiers(cache):
    probs = np.full((40, 10), 0.1)
    stats, _ = fc.feature_stats(lambda x: (CountingExtract()(x)[0], probs), images(2), "clf:v1")
    cached, hit = fc.feature_stats(lambda x: pytest.fail("recomputed"), images(2), "clf:v1")
    assert hit and cached.probs.shape == (40, 10)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("GANCLI_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "gancli"
    assert fc.cache_path("key").parent == tmp_path / "xdg" / "gancli" / fc.CACHE_SUBDIR
    monkeypatch.setenv("GANCLI_CACHE_DIR", str(tmp_path / "mine"))
    assert data.cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("damage", ["empty", "cut off", "not a zip", "another program's npz", "another format's key",
                                    "pickled arrays", "a folder", "shapes that do not fit", "not finite"])
def test_a_damaged_or_foreign_entry_is_computed_again_never_a_traceback(cache, damage):
    """Whatever lies at an entry's path (a crash mid-write cannot leave half a file, the writes are atomic, but
    a disk error, another program or an older/newer gancli can): it is ignored, computed again and rewritten."""
    extract = CountingExtract()
    fc.feature_stats(extract, images(3), "net:v1")
    (entry,) = (cache / fc.CACHE_SUBDIR).glob("*.npz")
    whole = entry.read_bytes()
    if damage == "a folder":
        entry.unlink()
        entry.mkdir()
    else:
        with open(entry, "wb") as f:
            if damage == "cut off":
                f.write(whole[:len(whole) // 2])
            elif damage == "not a zip":
                f.write(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
            elif damage == "another program's npz":
                np.savez(f, weights=np.ones(3))
            elif damage == "another format's key":
                key = fc.cache_key("net:v1", images(3)).replace(f"v{fc.FORMAT}|", f"v{fc.FORMAT + 1}|", 1)
                np.savez(f, key=np.array(key), n=np.array(40), mean=np.zeros(3), cov=np.eye(3), kid_features=np.zeros((2, 3)))
            elif damage == "pickled arrays":
                np.savez(f, key=np.array([object()], dtype=object))
            elif damage in ("shapes that do not fit", "not finite"):  # the right key, arrays a later FD cannot use
                key = fc.cache_key("net:v1", images(3))
                d = len(CountingExtract()(images(3))[0][0])
                mean, cov = np.zeros(d), (np.eye(d + 1) if damage == "shapes that do not fit" else np.full((d, d), np.nan))
                np.savez(f, key=np.array(key), n=np.array(40), mean=mean, cov=cov, kid_features=np.zeros((40, d)))
    stats, hit = fc.feature_stats(extract, images(3), "net:v1")
    assert not hit and extract.calls == 2 and stats.n == 40
    if damage != "a folder":  # a folder in the way only costs the reuse
        assert fc.feature_stats(extract, images(3), "net:v1")[1] and extract.calls == 2


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def correlated_features(rng: np.random.Generator, n: int, d: int, mixing: np.ndarray) -> np.ndarray:
    return rng.normal(size=(n, d)) @ mixing + 0.5


def test_frechet_distance_of_identical_sets_is_zero(rng):
    a = correlated_features(rng, 400, 8, rng.normal(size=(8, 8)))
    assert abs(fc.features_frechet_distance(a, a)) < 1e-6


def test_frechet_distance_matches_scipy_sqrtm(rng):
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 1.0
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert fc.features_frechet_distance(a, b) == pytest.approx(direct, rel=1e-6)


def test_frechet_distance_separates_a_distribution_from_noise(rng):
    mixing = rng.normal(size=(8, 8))
    a, a_again = correlated_features(rng, 500, 8, mixing), correlated_features(rng, 500, 8, mixing)
    noise = rng.uniform(-5, 5, size=(500, 8))
    same, different = fc.features_frechet_distance(a, a_again), fc.features_frechet_distance(a, noise)
    assert same < 1.0
    assert different > 20 * same


def test_frechet_distance_rejects_mismatched_features(rng):
    with pytest.raises(ValueError, match="same D"):
        fc.features_frechet_distance(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))
