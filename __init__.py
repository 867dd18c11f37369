"""gancli: train, export and deploy GAN image generators.

The public Python API (the CLI is a thin layer over these same functions, with the same arguments
and errors):

    import gancli
    images = gancli.generate_array("mnist-dcgan", 16, seed=0)     # uint8 [16, 28, 28, 1]
    gancli.generate(1000, "samples/", model="cats-dcgan")           # files + manifest.jsonl
    gancli.export("runs/00003-cats-dcgan", fmt="onnx")             # ONNX with parity checked
    scores = gancli.evaluate("mnist-dcgan", "mnist", n=10_000)      # dict of scores

Importing gancli loads neither torch nor onnxruntime; each function imports what it needs.
Expected failures raise `gancli.GancliError` subclasses with a one-line message.
"""
from __future__ import annotations

from importlib import metadata


class GancliError(Exception):
    """Base of every expected failure: the message is one line naming the problem and the fix.

    The CLI prints it and exits 1; anything else is a bug and keeps its traceback.
    """


try:
    __version__ = metadata.version("gancli")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["GancliError", "__version__", "evaluate", "export", "generate", "generate_array"]


def generate(n, out, model=None, **options):
    """Write images 0..n-1 of `model` (a shipped name, a model folder or an .onnx file) into `out`.

    Options as `gancli generate`: batch_size, device, seed, fmt, shard, grid, precision, layout.
    Returns a GenerateResult (counts, rate, device, layout).
    """
    from gancli.runtime.generate import generate as _generate

    return _generate(n, out, model, **options)


def generate_array(model=None, n=64, seed=0, device="auto", precision=None):
    """Images 0..n-1 of `model` as one uint8 NHWC array (the same images `generate` writes)."""
    from gancli.runtime.generate import generate_array as _generate_array

    images, _meta = _generate_array(model, n, seed=seed, device=device, precision=precision)
    return images


def export(source, fmt="all", out=None, **options):
    """Export a run directory or generator folder to ONNX and/or TorchScript, checked for parity.

    Options as `gancli export`: opset, fp16, int8. Returns an ExportResult.
    """
    from gancli.export.api import export_generator

    return export_generator(source, fmt, out, **options)


def evaluate(model, dataset, n=10_000, **options):
    """Score a generator against real data, as `gancli eval`; returns the results as a dict.

    Options: seed, data_root, inception_weights, device, precision.
    """
    from gancli.gan.evaluation import evaluate_model

    return evaluate_model(model, dataset, n=n, **options)
