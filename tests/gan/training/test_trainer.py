"""One training step on real MNIST: --d-steps (D updates per G update) and the R1 penalty (eager and lazy,
with and without batch norm in D)."""
from __future__ import annotations

import pytest
import torch

from gancli.gan.data import load_images, to_model_range
from gancli.gan.errors import ConfigError
from gancli.gan.training.config import load_run_config, resolve_config
from gancli.gan.training.loop import train
from gancli.gan.training.trainer import Trainer


def tiny_config(data_root, tmp_path, **overrides):
    options = dict(data_root=str(data_root), n_epochs=1, limit=200, batch_size=16, width=8, eval_every=0,
                   out_dir=str(tmp_path / "runs"), device="cpu")
    return resolve_config("mnist", **{**options, **overrides})


@pytest.fixture(scope="module")
def mnist_batches(data_root, tmp_path_factory):
    images = load_images(tiny_config(data_root, tmp_path_factory.mktemp("data")), download=False).train
    return [to_model_range(images[i * 16:(i + 1) * 16]) for i in range(6)]


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trained parameters (not buffers: every forward in training mode moves batch norm's running stats)."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


@pytest.mark.parametrize("loss", ["hinge", "ralsgan"])
def test_d_steps_trains_d_every_batch_and_g_every_nth(data_root, tmp_path, mnist_batches, loss):
    trainer = Trainer(tiny_config(data_root, tmp_path, d_steps=3, loss=loss), torch.device("cpu"))
    g_steps = []
    for real in mnist_batches:
        G_before, D_before, ema_before = weights(trainer.G), weights(trainer.D), weights(trainer.ema.module)
        out = trainer.train_step(real)
        trainer.step += 1
        assert changed(D_before, trainer.D), f"D did not train at batch {trainer.step}"
        g_steps.append(changed(G_before, trainer.G))
        assert changed(ema_before, trainer.ema.module) == g_steps[-1], "the EMA follows G's updates only"
        assert all(torch.isfinite(v) for v in out.values())
    assert g_steps == [False, False, True, False, False, True]
    assert trainer.ema.num_updates == 2


def test_one_d_step_trains_g_every_batch(data_root, tmp_path, mnist_batches):
    trainer = Trainer(tiny_config(data_root, tmp_path), torch.device("cpu"))
    for real in mnist_batches[:3]:
        before = weights(trainer.G)
        trainer.train_step(real)
        trainer.step += 1
        assert changed(before, trainer.G)


def test_d_steps_resume_bit_identical_across_a_cycle(data_root, tmp_path):
    # 200 images, 190 to train: 12 batches of 16 an epoch, so epoch 2 starts in the middle of a 5-batch cycle
    straight = train(tiny_config(data_root, tmp_path / "a", n_epochs=2, d_steps=5))
    first = train(tiny_config(data_root, tmp_path / "b", n_epochs=1, d_steps=5))
    train(load_run_config(first, n_epochs=2), resume=first)
    assert (straight / "generator.safetensors").read_bytes() == (first / "generator.safetensors").read_bytes()


@pytest.mark.parametrize("bad", [0, -2])
def test_d_steps_below_one_is_refused(data_root, tmp_path, bad):
    with pytest.raises(ConfigError, match="--d-steps must be at least 1"):
        tiny_config(data_root, tmp_path, d_steps=bad)


def test_r1_penalty_is_the_squared_gradient_norm_at_real_images(data_root, tmp_path, mnist_batches):
    trainer = Trainer(tiny_config(data_root, tmp_path, r1_gamma=1.0), torch.device("cpu"))
    trainer.D.eval()  # spectral norm's power iteration would move between the calls
    real = mnist_batches[0].clone().requires_grad_(True)
    d_real = trainer.D(real, None)
    penalty = trainer.r1_penalty(d_real, real)
    # by hand: each image's gradient alone (D judges each image alone: no batch norm in sngan's D)
    expected = torch.stack([
        torch.autograd.grad(trainer.D(x[None], None).sum(), x)[0].square().sum()
        for x in mnist_batches[0].clone().requires_grad_(True).unbind()
    ]).mean()
    torch.testing.assert_close(penalty, expected, rtol=1e-4, atol=1e-7)
    assert penalty.requires_grad, "the penalty must be differentiable w.r.t. D's weights"


def test_r1_pulls_d_toward_a_flatter_function_at_real_images(data_root, tmp_path, mnist_batches):
    # the same seed and batches with and without R1: the penalty must change D's update
    runs = {}
    for gamma in (0.0, 10.0):
        torch.manual_seed(0)
        trainer = Trainer(tiny_config(data_root, tmp_path, r1_gamma=gamma), torch.device("cpu"))
        for real in mnist_batches[:3]:
            trainer.train_step(real)
            trainer.step += 1
        real = mnist_batches[3].clone().requires_grad_(True)
        runs[gamma] = trainer.r1_penalty(trainer.D(real, None), real).item()
    assert runs[10.0] < runs[0.0]


def d_after_one_step(data_root, tmp_path, batch, **overrides) -> dict[str, torch.Tensor]:
    trainer = Trainer(tiny_config(data_root, tmp_path, **overrides), torch.device("cpu"))
    trainer.train_step(batch)
    return weights(trainer.D)


def test_lazy_r1_adds_the_penalty_every_nth_batch_at_n_times_the_weight(data_root, tmp_path, mnist_batches,
                                                                          monkeypatch):
    # at the first batch, R1 every 4th batch at weight 0.5 is R1 every batch at weight 2
    lazy = d_after_one_step(data_root, tmp_path, mnist_batches[0], r1_gamma=0.5, r1_every=4)
    eager = d_after_one_step(data_root, tmp_path, mnist_batches[0], r1_gamma=2.0)
    plain = d_after_one_step(data_root, tmp_path, mnist_batches[0])
    assert all(torch.allclose(lazy[k], eager[k], rtol=1e-5, atol=1e-7) for k in lazy)
    assert any(not torch.equal(lazy[k], plain[k]) for k in lazy)

    steps = []
    penalty = Trainer.r1_penalty
    monkeypatch.setattr(Trainer, "r1_penalty", lambda self, d, x: steps.append(self.step) or penalty(self, d, x))
    trainer = Trainer(tiny_config(data_root, tmp_path, r1_gamma=0.5, r1_every=4), torch.device("cpu"))
    for real in mnist_batches:
        trainer.train_step(real)
        trainer.step += 1
    assert steps == [0, 4]


def test_r1_also_regularises_a_batch_norm_d(data_root, tmp_path, mnist_batches):
    # the classic recipe's D has batch norm, so real and fake batches take their own pass through it
    with_r1 = d_after_one_step(data_root, tmp_path, mnist_batches[0], recipe="classic", r1_gamma=10.0)
    without = d_after_one_step(data_root, tmp_path, mnist_batches[0], recipe="classic")
    assert any(not torch.equal(with_r1[k], without[k]) for k in with_r1), "--r1-gamma changed nothing"


@pytest.mark.parametrize("bad", [0, -1])
def test_r1_every_below_one_is_refused(data_root, tmp_path, bad):
    with pytest.raises(ConfigError, match="--r1-every must be at least 1"):
        tiny_config(data_root, tmp_path, r1_gamma=1.0, r1_every=bad)
