"""One training step on real MNIST: --d-steps (D updates per G update) and the R1 penalty."""
from __future__ import annotations

import pytest
import torch

from gancli.gan.data import load_images, to_model_range
from gancli.gan.errors import ConfigError
from gancli.gan.training.config import resolve_config
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
    from gancli.gan.training.config import load_run_config

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
