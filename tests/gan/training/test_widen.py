"""gan/training/widen.py: a DCGAN grown to a larger width computes exactly what it did (G, and D through its
spectral norm, in eval and in training mode), its new channels learn, and `--init-from MODEL --width W` trains
from the grown weights and records the width it grew from (a narrower width: test_init_from.py)."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import gancli
from gancli.cli import app
from gancli.gan.networks import build_models
from gancli.gan.training.config import resolve_config
from gancli.gan.training.widen import grow_state


def trained_like(dataset: str, width: int, classes: int = 0, **options) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D of `width` whose batch-norm statistics and spectral-norm vectors have moved from their start."""
    torch.manual_seed(0)
    G, D = build_models(resolve_config(dataset, width=width, threads=1, **options), classes)
    labels = torch.arange(8) % classes if classes else None
    with torch.no_grad():
        for p in (*G.parameters(), *D.parameters()):
            p.add_(torch.randn_like(p) * 0.01)
        for _ in range(5):
            D(G(torch.randn(8, 100), labels), labels)
    return G, D


@pytest.mark.parametrize("dataset, options, classes", [
    ("cats", {"img_size": 32}, 0), ("cats", {"img_size": 32, "d_depth": 1}, 0), ("mnist", {}, 0),
    # classic: a D with batch norm (its G's dropout off: training mode is then deterministic)
    ("mnist", {"recipe": "classic", "g_dropout": 0.0}, 0),
    ("mnist", {}, 10),  # projection D, class head and label embedding
])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_grown_networks_compute_what_the_narrow_ones_did(dataset, options, classes, mode):
    G, D = trained_like(dataset, 8, classes, **options)
    wide_G, wide_D = build_models(resolve_config(dataset, width=12, threads=1, **options), classes)
    wide_G.load_state_dict(grow_state(G.state_dict(), wide_G, seed=0))
    wide_D.load_state_dict(grow_state(D.state_dict(), wide_D, seed=1))
    assert sum(p.numel() for p in wide_G.parameters()) > 1.5 * sum(p.numel() for p in G.parameters())
    z = torch.randn(16, 100, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(16) % classes if classes else None
    with torch.no_grad():
        for net in (G, D, wide_G, wide_D):
            net.train(mode == "train")
        images = G(z, labels)
        assert torch.allclose(wide_G(z, labels), images, atol=1e-6)
        # in training mode each call runs a power iteration: the grown D's gain estimate stays where it was
        for _ in range(10):
            assert torch.allclose(wide_D(images, labels), D(images, labels), rtol=1e-5, atol=1e-6)
        if classes:
            assert torch.allclose(wide_D(images, labels, True)[1], D(images, labels, True)[1], rtol=1e-5, atol=1e-6)


def test_the_new_channels_learn_and_each_grown_d_layer_keeps_its_gain():
    G, D = trained_like("cats", 8, img_size=32)
    wide_G, wide_D = build_models(resolve_config("cats", width=12, img_size=32, threads=1))
    wide_G.load_state_dict(grow_state(G.state_dict(), wide_G, seed=0))
    wide_D.load_state_dict(grow_state(D.state_dict(), wide_D, seed=1))
    (-wide_D(wide_G(torch.randn(8, 100))).mean()).backward()
    # the zero weights from a new channel to the old ones are the first to get a gradient
    second = wide_G.net[3].weight  # [12 * 4 in, 12 * 2 out, 4, 4]: new inputs 32.. feed old outputs ..16
    assert second[32:, :16].abs().max() == 0 and second.grad[32:, :16].abs().max() > 0
    first_d = wide_D.features[0].parametrizations.weight
    assert first_d.original.grad[8:].abs().max() > 0
    # the true largest singular value of each grown D layer is the narrow one's
    for narrow, wide in zip(weights_of(D), weights_of(wide_D)):
        assert torch.linalg.matrix_norm(wide, 2) == pytest.approx(torch.linalg.matrix_norm(narrow, 2).item(), rel=1e-5)


def weights_of(D: torch.nn.Module) -> list[torch.Tensor]:
    return [m.parametrizations.weight.original.detach().flatten(1) for m in D.modules() if hasattr(m, "parametrizations")]


def test_the_same_seed_grows_the_same_channels_so_g_and_its_ema_agree():
    G, _ = trained_like("mnist", 8)
    wide_G, _ = build_models(resolve_config("mnist", width=12, threads=1))
    first, again, other = (grow_state(G.state_dict(), wide_G, seed=s) for s in (0, 0, 1))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.fixture(scope="module")
def narrow_run(data_root, tmp_path_factory):
    return gancli.train("mnist", data_root=str(data_root), out_dir=str(tmp_path_factory.mktemp("runs")), limit=128,
                        n_epochs=1, eval_every=0, width=8, batch_size=64, threads=1, sample_interval=1000)


def test_init_from_with_a_larger_width_trains_the_grown_model(narrow_run, data_root, tmp_path):
    result = CliRunner().invoke(app, ["train", "--init-from", str(narrow_run), "--width", "12", "--data-root",
                                      str(data_root), "--out-dir", str(tmp_path / "runs"), "--limit", "128",
                                      "--n-epochs", "1", "--eval-every", "0", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "G and D grown from the model's width 8" in result.output
    run = next((tmp_path / "runs").iterdir())
    spec = json.loads((run / "generator.json").read_text())
    assert spec["width"] == 12 and spec["lineage"]["grown_from_width"] == 8
    assert json.loads((run / "config.json").read_text())["width"] == 12
