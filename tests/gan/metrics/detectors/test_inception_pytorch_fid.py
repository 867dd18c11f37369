"""gancli.gan.metrics.detectors.inception_pytorch_fid: the FID Inception weights are found where they are named or cached, checked, never
downloaded, and load into pytorch-fid's InceptionV3 from a local file, with the classifier layer the IS needs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.gan.metrics.detectors import inception_pytorch_fid as fid_inception
from gancli.gan.errors import EvalError
from gancli.gan.metrics.references import load_mnist_nhwc


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(fid_inception.INCEPTION_WEIGHTS_ENV, raising=False)
    return tmp_path / "torch"


def test_no_inception_weights_anywhere_gives_none(empty_torch_home):
    assert fid_inception.named_inception_weights() is None and fid_inception.cached_inception_weights() is None


def test_inception_weights_are_found_in_the_torch_hub_cache(empty_torch_home):
    cached = empty_torch_home / "hub" / "checkpoints" / fid_inception.INCEPTION_WEIGHTS_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really weights")
    assert fid_inception.cached_inception_weights() == cached


def test_inception_weights_named_by_env_or_argument(empty_torch_home, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / fid_inception.INCEPTION_WEIGHTS_NAME).write_bytes(b"x")
    assert fid_inception.named_inception_weights(folder) == folder / fid_inception.INCEPTION_WEIGHTS_NAME
    monkeypatch.setenv(fid_inception.INCEPTION_WEIGHTS_ENV, str(folder / fid_inception.INCEPTION_WEIGHTS_NAME))
    assert fid_inception.named_inception_weights() == folder / fid_inception.INCEPTION_WEIGHTS_NAME


def test_named_but_missing_inception_weights_is_one_clear_error(empty_torch_home, tmp_path, monkeypatch):
    with pytest.raises(EvalError, match="--inception-weights names .* does not exist"):
        fid_inception.named_inception_weights(tmp_path / "nowhere.pth")
    monkeypatch.setenv(fid_inception.INCEPTION_WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(EvalError, match=r"\$GANCLI_INCEPTION_WEIGHTS names .* does not exist") as e:
        fid_inception.named_inception_weights()
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_the_fid_weights_is_refused(tmp_path):
    fake = tmp_path / fid_inception.INCEPTION_WEIGHTS_NAME
    fake.write_bytes(b"something else")
    with pytest.raises(EvalError, match="is not the pytorch-fid Inception weights"):
        fid_inception.check_inception_weights(fake)


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

    model = fid_inception.load_fid_inception(weights)
    assert pf.load_state_dict_from_url is fetch_before
    conv = model.blocks[0][0].conv.weight
    assert torch.equal(conv, state["Conv2d_1a_3x3.conv.weight"].float())
    images, _ = load_mnist_nhwc(data_root, train=False, download=False)
    # grey 28x28, resized to 299 inside; the 1008-way layer (no bias) gives the IS's class probabilities
    features, probs = fid_inception.inception_outputs(model, images[:2], batch_size=1)
    assert features.shape == (2, 2048) and np.isfinite(features).all()
    assert torch.equal(model.logit_weight, state["fc.weight"].float())
    expected = torch.softmax(torch.from_numpy(features) @ state["fc.weight"].double().T, dim=1).numpy()
    assert probs.shape == (2, 1008) and np.allclose(probs, expected, atol=1e-6)
