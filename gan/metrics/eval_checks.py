"""`gancli eval`'s checks, all before any image is made or any file written: one EvalError line each.

The model's own metadata says which data set it learnt (`dataset`); scoring a generator of one named data set
against the other (an MNIST generator against the cats, resized to 28x28 grey) gives numbers that mean nothing,
so it is refused both ways, as is an output file that could not be written after the whole computation.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from gancli.gan.data import existing_folder
from gancli.gan.errors import EvalError
from gancli.runtime.files import regular_target
from gancli.runtime.metadata import ModelMetadata

NAMED = ("mnist", "cats")
DEVICES = ("auto", "cuda", "cpu")


def check_eval_arguments(meta: ModelMetadata, model: Path, dataset: str, seed: int, device: str,
                         out: str | Path | None, inception_weights: str | Path | None) -> None:
    """Every argument of evaluate_model that can be checked without the work, in one place."""
    from gancli.gan.metrics.detectors.inception_pytorch_fid import named_inception_weights
    from gancli.runtime.latents import MAX_SEED

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise EvalError(f"--seed must be between 0 and 2**128 - 1, not {seed}")
    if device not in DEVICES:
        raise EvalError(f"--device {device!r} is not known; use auto, cuda or cpu")
    if dataset not in NAMED:
        existing_folder(dataset)
    elif meta.dataset in NAMED and meta.dataset != dataset:
        raise EvalError(f"{model} is a generator of {meta.dataset}, not {dataset}; evaluate it with --dataset "
                        f"{meta.dataset}")
    if inception_weights is not None:
        named_inception_weights(inception_weights)
    if out is not None:
        check_out_file(Path(out))


def check_out_file(out: Path) -> None:
    """--out names a file that can be written: not a folder, nor a device, FIFO or socket (a symlink is followed to
    the file it names: runtime/files.py), in a folder that exists and takes files (a temp file is made and removed
    there, so a read-only or virtual file system such as /proc is found out now)."""
    if out.is_dir() or not out.name:
        raise EvalError(f"--out {out} is a folder; pass a file name such as {out / 'eval.json'}")
    folder = Path(regular_target(out, "--out")).parent
    if not folder.is_dir():
        raise EvalError(f"--out {out}: its folder {folder} does not exist; create it or pass another file")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.probe-", dir=folder)
    except OSError as e:
        raise EvalError(f"--out {out} cannot be written ({e.strerror or e}); pass a file in a writable folder") from e
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
