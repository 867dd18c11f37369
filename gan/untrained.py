"""The ceiling of every score: images of a freshly initialised generator of the model's architecture and size."""
from __future__ import annotations

import numpy as np
import torch

from gancli.gan.networks import build_generator
from gancli.runtime.pixels import to_uint8_nhwc


@torch.no_grad()
def untrained_generator_images(arch: str, latent_dim: int, channels: int, img_size: int, num_images: int,
                               width: int = 64, seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """Images of a freshly initialised generator (as training starts it, eval mode), seeded: uint8 [N, H, W, C]."""
    # fork the RNG so that seeding the weights here leaves the caller's global torch RNG as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = build_generator(arch, latent_dim, channels, img_size, width)  # initialised as its paper does
    G.eval()
    z_gen = torch.Generator().manual_seed(seed)
    batches = [to_uint8_nhwc(G(torch.randn(min(batch_size, num_images - start), latent_dim, generator=z_gen)))
               for start in range(0, num_images, batch_size)]
    return np.concatenate(batches)
