"""gancli.gan.feature_networks: which networks score a data set, and what is said about those left out."""
from __future__ import annotations

import pytest

from gancli.gan import feature_networks as fn
from gancli.gan import fid_inception
from gancli.gan.errors import EvalError


def test_without_inception_weights_a_folder_gets_no_network_and_notes_say_why(monkeypatch):
    monkeypatch.setattr(fid_inception, "find_inception_weights", lambda path=None: None)
    networks, notes = fn.feature_networks("cats", None)
    assert networks == []
    assert any("no Inception weights found" in n and fid_inception.INCEPTION_WEIGHTS_ENV in n for n in notes)
    assert any("only MNIST has one" in n for n in notes)


def test_mnist_gets_the_shipped_classifier(monkeypatch):
    monkeypatch.setattr(fid_inception, "find_inception_weights", lambda path=None: None)
    networks, notes = fn.feature_networks("mnist", None)
    assert [(n.name, n.fd_name) for n in networks] == [("mnist-classifier", "FCD")]
    assert networks[0].info["feature_dim"] == 128 and len(notes) == 1


def test_named_but_missing_inception_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(fid_inception.INCEPTION_WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(EvalError, match=r"\$GANCLI_INCEPTION_WEIGHTS names .* does not exist") as e:
        fn.feature_networks("mnist", None)
    assert "\n" not in str(e.value)
