"""gancli.gan.networks: every G and D of a config has the documented shapes, D's and G's depth add 3x3 convs per
resolution, conditional networks route labels, and networks initialise themselves as their paper does."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gancli.gan.training.config import resolve_config
from gancli.gan.networks import build_models, dcgan_plan


@pytest.mark.parametrize("dataset,arch,size,channels", [("mnist", "dcgan", 28, 1), ("mnist", "mlp", 28, 1),
                                                        ("cats", "dcgan", 32, 3)])
@pytest.mark.parametrize("classes", [0, 3])
@pytest.mark.parametrize("d_depth", [1, 2])
def test_g_makes_images_in_range_and_d_one_logit_each(dataset, arch, size, channels, classes, d_depth):
    torch.manual_seed(0)
    cfg = resolve_config(dataset, arch=arch, img_size=size, channels=channels, width=8, d_depth=d_depth)
    G, D = build_models(cfg, num_classes=classes)
    z, labels = torch.randn(5, cfg.latent_dim), (torch.arange(5) % classes if classes else None)
    images = G(z, labels)
    assert images.shape == (5, channels, size, size) and images.abs().max() <= 1
    assert D(images, labels).shape == (5,)
    if classes:
        logit, class_logits = D(images, labels, with_classes=True)
        assert logit.shape == (5,) and class_logits.shape == (5, classes)
        assert not torch.allclose(G(z, labels), G(z, (labels + 1) % classes))  # the label changes the image


def test_d_depth_adds_one_stride_1_conv_per_resolution():
    shallow, deep = (build_models(resolve_config("mnist", width=8, d_depth=depth))[1] for depth in (1, 2))
    convs = [[m for m in D.features if isinstance(m, nn.Conv2d)] for D in (shallow, deep)]
    resolutions = len(dcgan_plan(28, 8)[1])
    assert len(convs[0]) == resolutions and len(convs[1]) == 2 * resolutions
    assert [c.stride for c in convs[1]] == [(2, 2), (1, 1)] * resolutions


def test_g_depth_adds_one_3x3_conv_per_resolution_and_depth_1_keeps_the_weights_names_of_older_models():
    shallow, deep = (build_models(resolve_config("mnist", width=8, g_depth=depth))[0] for depth in (1, 2))
    convs = [[m for m in G.net if isinstance(m, nn.Conv2d)] for G in (shallow, deep)]
    resolutions = len(dcgan_plan(28, 8)[1])
    assert convs[0] == [] and len(convs[1]) == resolutions
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs[1])
    assert deep(torch.randn(3, 100)).shape == (3, 1, 28, 28)
    # a depth-1 G is the DCGAN of every model shipped before g_depth: the same layer names, so their weights load
    assert list(shallow.state_dict()) == [f"net.{name}" for name in (
        "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "3.weight", "4.weight", "4.bias", "4.running_mean", "4.running_var", "4.num_batches_tracked", "6.weight")]


def test_classic_recipe_keeps_the_dcgan_paper_d_with_batch_norm_after_every_conv_but_the_first():
    D = build_models(resolve_config("mnist", recipe="classic", width=8, d_depth=2))[1]
    kinds = ["conv" if isinstance(m, nn.Conv2d) else "bn" for m in D.features if not isinstance(m, nn.LeakyReLU)]
    assert kinds == ["conv", "conv"] + ["conv", "bn"] * 2


def test_dcgan_networks_initialise_as_radford_et_al():
    torch.manual_seed(0)
    G, _ = build_models(resolve_config("cats", img_size=64, channels=3, width=32))
    weights = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(weights.std().item() - 0.02) < 0.002
    bn = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.bias == 0) for m in bn) and abs(torch.cat([m.weight for m in bn]).mean().item() - 1) < 0.01
