"""FD, KID, IS and nearest neighbours against direct computations; Inception weight lookup without the weights;
the memorisation check and a small end-to-end evaluation on real MNIST."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.spatial.distance import cdist

from gancli.gan import evaluate, metrics
from gancli.gan.classifier import load_mnist_labelled
from gancli.gan.errors import EvalError


def correlated_features(rng: np.random.Generator, n: int, d: int, mixing: np.ndarray) -> np.ndarray:
    return rng.normal(size=(n, d)) @ mixing + 0.5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ----- Fréchet distance -----

def test_frechet_distance_of_identical_sets_is_zero(rng):
    a = correlated_features(rng, 400, 8, rng.normal(size=(8, 8)))
    assert abs(metrics.frechet_distance(a, a)) < 1e-6


def test_frechet_distance_matches_scipy_sqrtm(rng):
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 1.0
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert metrics.frechet_distance(a, b) == pytest.approx(direct, rel=1e-6)


def test_frechet_distance_separates_a_distribution_from_noise(rng):
    mixing = rng.normal(size=(8, 8))
    a, a_again = correlated_features(rng, 500, 8, mixing), correlated_features(rng, 500, 8, mixing)
    noise = rng.uniform(-5, 5, size=(500, 8))
    same, different = metrics.frechet_distance(a, a_again), metrics.frechet_distance(a, noise)
    assert same < 1.0
    assert different > 20 * same


def test_frechet_distance_rejects_mismatched_features(rng):
    with pytest.raises(ValueError, match="same D"):
        metrics.frechet_distance(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))


# ----- KID -----

def direct_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Bińkowski et al.'s unbiased estimator written out pair by pair."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / m ** 2


def test_kid_matches_direct_computation(rng):
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 0.3
    # one subset as large as the sets: a permutation of each, which MMD does not see
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=1, subset_size=30)
    assert mean == pytest.approx(direct_unbiased_mmd2(x, y), rel=1e-9)
    assert std == 0.0


def test_kid_of_identical_sets_is_near_zero_and_of_noise_is_large(rng):
    a = rng.normal(size=(600, 8))
    same, _ = metrics.kernel_inception_distance(a, a, num_subsets=20, subset_size=300)
    noise, _ = metrics.kernel_inception_distance(a, rng.uniform(-3, 3, size=(600, 8)), num_subsets=20, subset_size=300)
    # not exactly 0: the x-y term of the unbiased estimator keeps the k(x, x) pairs that the subsets share
    assert abs(same) < 0.05
    assert noise > 50 * abs(same)


def test_kid_is_seeded(rng):
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 0.2
    first = metrics.kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=3)
    assert metrics.kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=3) == first
    assert metrics.kernel_inception_distance(a, b, num_subsets=5, subset_size=50, seed=4) != first


# ----- IS and class shares -----

def test_inception_score_of_confident_uniform_classes_is_the_number_of_classes():
    probs = np.eye(10)[np.arange(1000) % 10]
    mean, std = metrics.inception_score(probs)
    assert mean == pytest.approx(10.0, rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_of_uniform_predictions_is_one():
    mean, _ = metrics.inception_score(np.full((500, 10), 0.1))
    assert mean == pytest.approx(1.0, abs=1e-9)


def test_inception_score_of_one_confident_class_is_one():
    mean, _ = metrics.inception_score(np.eye(10)[np.zeros(500, dtype=int)])
    assert mean == pytest.approx(1.0, abs=1e-6)


def test_class_shares_count_the_most_likely_class(rng):
    probs = rng.dirichlet(np.ones(4), size=200)
    shares = metrics.class_shares(probs)
    assert shares.sum() == pytest.approx(1.0)
    assert shares.tolist() == pytest.approx((np.bincount(probs.argmax(1), minlength=4) / 200).tolist())


# ----- nearest neighbours -----

def test_nearest_neighbour_distances_match_cdist(rng):
    q, r = rng.normal(size=(37, 12)), rng.normal(size=(300, 12))
    dists, index = metrics.nearest_neighbour_distances(q, r, batch_size=8)
    full = cdist(q, r)
    np.testing.assert_array_equal(index, full.argmin(1))
    np.testing.assert_allclose(dists, full.min(1), rtol=1e-4)


def test_nearest_neighbour_distances_skip_the_query_itself(rng):
    r = rng.normal(size=(100, 5))
    picked = np.array([7, 3, 50])
    dists, index = metrics.nearest_neighbour_distances(r[picked], r, skip=picked)
    full = cdist(r[picked], r)
    full[np.arange(3), picked] = np.inf
    np.testing.assert_array_equal(index, full.argmin(1))
    assert (dists > 0).all()


# ----- Inception weights: found or not, never downloaded -----

@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(evaluate.INCEPTION_WEIGHTS_ENV, raising=False)
    return tmp_path / "torch"


def test_no_inception_weights_anywhere_gives_none_and_a_note(empty_torch_home):
    assert evaluate.find_inception_weights() is None
    networks, notes = evaluate.feature_networks("cats", None)
    assert networks == []
    assert any("no Inception weights found" in n and evaluate.INCEPTION_WEIGHTS_ENV in n for n in notes)


def test_inception_weights_are_found_in_the_torch_hub_cache(empty_torch_home):
    cached = empty_torch_home / "hub" / "checkpoints" / evaluate.INCEPTION_WEIGHTS_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really weights")
    assert evaluate.find_inception_weights() == cached


def test_inception_weights_named_by_env_or_argument(empty_torch_home, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / evaluate.INCEPTION_WEIGHTS_NAME).write_bytes(b"x")
    assert evaluate.find_inception_weights(folder) == folder / evaluate.INCEPTION_WEIGHTS_NAME
    monkeypatch.setenv(evaluate.INCEPTION_WEIGHTS_ENV, str(folder / evaluate.INCEPTION_WEIGHTS_NAME))
    assert evaluate.find_inception_weights() == folder / evaluate.INCEPTION_WEIGHTS_NAME


def test_named_but_missing_inception_weights_is_one_clear_error(empty_torch_home, tmp_path, monkeypatch):
    with pytest.raises(EvalError, match="--inception-weights names .* does not exist"):
        evaluate.find_inception_weights(tmp_path / "nowhere.pth")
    monkeypatch.setenv(evaluate.INCEPTION_WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(EvalError, match=r"\$GANCLI_INCEPTION_WEIGHTS names .* does not exist") as e:
        evaluate.feature_networks("mnist", None)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_the_fid_weights_is_refused(tmp_path):
    fake = tmp_path / evaluate.INCEPTION_WEIGHTS_NAME
    fake.write_bytes(b"something else")
    with pytest.raises(EvalError, match="is not the pytorch-fid Inception weights"):
        evaluate.check_inception_weights(fake)


def random_fid_inception_state() -> dict[str, torch.Tensor]:
    """A randomly initialised state dict shaped like the FID Inception weights (as fid_inception_v3 builds it)."""
    from pytorch_fid import inception as pf

    torch.manual_seed(0)
    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b, net.Mixed_5c = pf.FIDInceptionA(192, 32), pf.FIDInceptionA(256, 64)
    net.Mixed_5d = pf.FIDInceptionA(288, 64)
    net.Mixed_6b, net.Mixed_6c = pf.FIDInceptionC(768, 128), pf.FIDInceptionC(768, 160)
    net.Mixed_6d, net.Mixed_6e = pf.FIDInceptionC(768, 160), pf.FIDInceptionC(768, 192)
    net.Mixed_7b, net.Mixed_7c = pf.FIDInceptionE_1(1280), pf.FIDInceptionE_2(2048)
    # half precision halves the temporary file; load_state_dict copies into the float32 parameters
    return {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}


def test_fid_inception_loads_from_a_local_file_without_network(tmp_path, monkeypatch, data_root):
    from pytorch_fid import inception as pf

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    state = random_fid_inception_state()
    weights = tmp_path / "inception.pth"
    torch.save(state, weights)
    fetch_before = pf.load_state_dict_from_url

    model = evaluate.load_fid_inception(weights)
    assert pf.load_state_dict_from_url is fetch_before
    conv = model.blocks[0][0].conv.weight
    assert torch.equal(conv, state["Conv2d_1a_3x3.conv.weight"].float())
    images, _ = load_mnist_labelled(data_root, train=False)
    features = evaluate.inception_features(model, images[:2], batch_size=1)  # grey 28x28, resized to 299 inside
    assert features.shape == (2, 2048) and np.isfinite(features).all()


# ----- memorisation and a small end-to-end evaluation on real MNIST -----

@pytest.fixture(scope="module")
def mnist(data_root) -> dict[str, np.ndarray]:
    train, _ = load_mnist_labelled(data_root, train=True)
    test, _ = load_mnist_labelled(data_root, train=False)
    return {"train": train, "test": test}


def test_memorisation_flags_copies_of_training_images_and_not_real_test_images(mnist):
    train = mnist["train"][:20000]
    copied = np.array([5, 1234, 19999])
    generated = np.concatenate([mnist["test"][:300], train[copied]])
    result = evaluate.memorisation_check(generated, train, held_out=mnist["test"][300:], sample_size=len(generated))
    flagged = sorted(f["generated_index"] for f in result["flagged"])
    assert flagged == [300, 301, 302]
    assert sorted(f["training_index"] for f in result["flagged"]) == copied.tolist()
    assert result["num_flagged"] == 3 and result["min_ratio"] < 0.01
    assert 0.8 < result["median_ratio"] < 1.3  # real test images sit about one typical distance away
    assert result["real"]["share_flagged"] == 0.0
    json.dumps(result)


def test_memorisation_without_held_out_images_uses_leave_one_out(mnist):
    train = mnist["train"][:5000]
    result = evaluate.memorisation_check(mnist["test"][:100], train, sample_size=100)
    assert result["real"]["median_ratio"] == pytest.approx(1.0, abs=0.02)
    assert result["num_flagged"] == 0


def test_evaluate_images_reports_every_score_beside_its_references(mnist):
    real = evaluate.RealData("mnist", mnist["train"][:5000], mnist["test"][:500], mnist["train"][:5000], True, "subset")
    untrained = evaluate.untrained_generator_images("dcgan", 16, 1, 28, 200, width=8, seed=0)
    generated = mnist["test"][500:800]
    networks = [evaluate.mnist_classifier_network()]
    result = evaluate.evaluate_images(generated, untrained, real, networks, ["a note"], kid_subsets=5,
                                      kid_subset_size=100, memorisation_sample=100)
    json.loads(json.dumps(result))  # what the CLI writes
    rows = {r["metric"]: r for r in result["scores"]}
    assert set(rows) == {"FCD", "KID", "IS"}
    assert {r["feature_network"] for r in result["scores"]} == {"mnist-classifier"}
    for row in rows.values():
        assert set(evaluate.IMAGE_SETS) <= set(row)
    # real digits score near the real floor and far from the untrained generator
    assert rows["FCD"]["generated"]["value"] < 0.1 * rows["FCD"]["untrained_generator"]["value"]
    assert rows["IS"]["generated"]["value"] > 8.0 > rows["IS"]["untrained_generator"]["value"]
    assert len(result["class_shares"]["generated"]) == 10
    assert result["notes"] == ["a note"]
    assert result["memorisation"]["num_flagged"] == 0
    assert set(evaluate.mnist_targets(result)) == {"classifier_is", "fcd", "class_shares", "passed"}


def test_untrained_generator_images_are_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = evaluate.untrained_generator_images("dcgan", 16, 1, 28, 12, width=8, seed=0, batch_size=5)
    assert torch.equal(torch.rand(1), before)
    again = evaluate.untrained_generator_images("dcgan", 16, 1, 28, 12, width=8, seed=0)
    assert first.dtype == np.uint8 and first.shape == (12, 28, 28, 1)
    np.testing.assert_array_equal(first, again)


def test_generated_images_of_the_wrong_shape_are_one_clear_error(mnist):
    real = evaluate.RealData("mnist", mnist["train"][:100], mnist["test"][:50], mnist["train"][:100], True, "subset")
    wrong = np.zeros((20, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(EvalError, match=r"untrained generator images are \[28, 28, 1\] but the real ones are \[32, "):
        evaluate.evaluate_images(wrong, mnist["test"][:20], real, [])
    with pytest.raises(EvalError, match="must be uint8"):
        evaluate.evaluate_images(wrong.astype(np.float32), wrong, real, [])


def test_folder_data_sets_split_into_reference_and_held_out_images(data_root, tmp_path):
    faces = sorted((data_root / "cats" / "faces").glob("*.jpg"))[:20]
    folder = tmp_path / "cats" / "one-class"
    folder.mkdir(parents=True)
    for path in faces:
        shutil.copy(path, folder / path.name)
    real = evaluate.load_real_data(str(tmp_path / "cats"), data_root, (32, 32, 1))
    assert real.reference.shape == (16, 32, 32, 1) and real.test.shape == (4, 32, 32, 1)
    assert real.training.shape == (20, 32, 32, 1) and not real.test_is_held_out
    flat = lambda x: {im.tobytes() for im in x}  # noqa: E731
    assert not flat(real.reference) & flat(real.test)
    assert flat(real.reference) | flat(real.test) == flat(real.training)


def test_mnist_real_data_needs_mnist_shaped_images(data_root):
    with pytest.raises(EvalError, match=r"the generated images are \[64, 64, 3\] but MNIST is \[28, 28, 1\]"):
        evaluate.load_real_data("mnist", data_root, (64, 64, 3))
