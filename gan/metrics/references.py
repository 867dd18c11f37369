"""The references every score is read against, all uint8 [N, H, W, C]: the real images (the reference set and
the floor's real sample) and an untrained generator's images (the ceiling).

- MNIST: the 60,000 train images are the reference (and what a generator may have memorised); the
  10,000 test images, which no generator learnt from, are the real sample of the floor.
- Folders (cats, PATH): every image is the reference (the whole training set, as FID is usually reported, e.g. by
  stylegan2-ada); a seeded 20 % of them is the real sample of the floor. No image of a folder is unseen by its
  generator, so that floor is a real subset against the set it belongs to: lower than a held-out sample would give.

Images are read, resized and cropped by gan.data exactly as training reads them. The ceiling is a freshly
initialised generator of the scored model's architecture and size, seeded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gancli.gan import data
from gancli.gan.errors import DataError, EvalError
from gancli.gan.networks import build_generator
from gancli.runtime.pixels import to_uint8_nhwc

REAL_SAMPLE_FRACTION = 0.2  # folders: share of the images drawn as the real sample of the floor
MNIST_SHAPE = (28, 28, 1)


@dataclass
class RealData:
    """The real images one evaluation compares against, all uint8 [N, H, W, C]."""

    name: str  # "mnist", "cats" or the folder's path
    reference: np.ndarray  # FD and KID of every image set are taken against these
    test: np.ndarray  # real images not in `reference`: the floor's sample
    training: np.ndarray  # every image the generator may have learnt from: the memorisation check's search space
    test_is_held_out: bool  # True when `test` is disjoint from `training` (MNIST test), False for folder splits
    description: str
    skipped: tuple[str, ...] = ()  # real files that did not decode: left out, and said so


def load_mnist_nhwc(root: str | Path, train: bool = True, download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """gan.data.load_mnist as arrays in the evaluation's layout: images uint8 [N, 28, 28, 1], labels int64 [N]."""
    images, labels = data.load_mnist(Path(root), train=train, download=download)
    return data.nhwc_array(images), labels.numpy().astype(np.int64)


def load_real_data(dataset: str, data_root: str | Path | None, image_shape: tuple[int, int, int], seed: int = 0,
                   download: bool = True) -> RealData:
    """The real side of an evaluation for `dataset` ("mnist", "cats" or a folder), shaped like the generated images.

    `data_root` None means $GANCLI_DATA_ROOT or the user cache, as for `gancli train`.
    """
    height, width, channels = image_shape
    root = data.resolve_data_root(str(data_root) if data_root is not None else None)
    if dataset == "mnist":
        if tuple(image_shape) != MNIST_SHAPE:
            raise EvalError(f"the generated images are {list(image_shape)} but MNIST is {list(MNIST_SHAPE)}; "
                            f"evaluate an MNIST generator against mnist")
        train = load_mnist_nhwc(root, train=True, download=download)[0]
        test = load_mnist_nhwc(root, train=False, download=download)[0]
        return RealData("mnist", train, test, train, True,
                        f"MNIST train ({len(train)}) as reference; MNIST test ({len(test)}) as the real sample")
    if height != width:
        raise EvalError(f"the generated images are {height}x{width}; eval compares square images only")
    folder = data.ensure_cats(root, download) if dataset == "cats" else data.existing_folder(dataset)
    decoded, _labels, _classes, skipped = data.decode_folder(folder, height, channels, limit=None)
    images = data.nhwc_array(decoded)
    if len(images) < 10:
        raise DataError(f"{folder} holds {len(images)} usable images; eval needs at least 10")
    n_sample = round(REAL_SAMPLE_FRACTION * len(images))
    sample = images[np.sort(np.random.default_rng(seed).permutation(len(images))[:n_sample])]
    return RealData(dataset, images, sample, images, False,
                    f"{'cats' if dataset == 'cats' else folder}: all {len(images)} images as reference; a seeded "
                    f"{REAL_SAMPLE_FRACTION:.0%} of them ({len(sample)}) as the real sample", tuple(skipped))


@torch.no_grad()
def untrained_generator_images(arch: str, latent_dim: int, channels: int, img_size: int, num_images: int,
                               width: int = 64, depth: int = 1, seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """Images of a freshly initialised generator (as training starts it, eval mode), seeded: uint8 [N, H, W, C]."""
    # fork the RNG so that seeding the weights here leaves the caller's global torch RNG as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = build_generator(arch, latent_dim, channels, img_size, width, depth=depth)  # initialised as its paper does
    G.eval()
    z_gen = torch.Generator().manual_seed(seed)
    batches = [to_uint8_nhwc(G(torch.randn(min(batch_size, num_images - start), latent_dim, generator=z_gen)))
               for start in range(0, num_images, batch_size)]
    return np.concatenate(batches)
