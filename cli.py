"""gancli: train, export and deploy GAN image generators.

Each command parses its flags and calls one plain function; expected failures become one red
line and exit code 1 at this edge. torch is imported inside the commands that need it, so
`gancli --help` and `gancli generate` never load it.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from gancli.export.errors import ExportError
from gancli.gan.errors import GanError
from gancli.runtime.errors import GenerateError

app = typer.Typer(
    name="gancli",
    help="Train, export and deploy GAN image generators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

EXPECTED_ERRORS = (GanError, ExportError, GenerateError)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Expected failures print one line naming the problem and the fix, then exit 1."""
    try:
        yield
    except EXPECTED_ERRORS as e:
        err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted:[/yellow] stopped cleanly; run the same command again to resume")
        raise typer.Exit(130) from None


@app.command()
def train(
    dataset: str = typer.Option("mnist", help="mnist, cats, or a folder of images (ImageFolder layout or flat)."),
    data_root: Optional[Path] = typer.Option(
        None, envvar="GANCLI_DATA_ROOT", show_default="$GANCLI_DATA_ROOT or ~/.cache/gancli/data",
        help="Folder holding mnist/ and cats/; missing sets are downloaded there when online."),
    arch: Optional[str] = typer.Option(None, show_default="dcgan", help="Generator/discriminator family: mlp or dcgan."),
    img_size: Optional[int] = typer.Option(None, show_default="28 for mnist, 64 for cats and folders",
                                           help="Image side in pixels (dcgan: 28 or a power of two >= 32)."),
    channels: Optional[int] = typer.Option(None, show_default="1 for mnist, 3 for cats and folders",
                                           help="1 (grey) or 3 (RGB)."),
    n_epochs: Optional[int] = typer.Option(None, show_default="25",
                                           help="Total epochs; with --resume, the total to reach."),
    batch_size: int = typer.Option(128, help="Images per batch (per process under torchrun)."),
    lr: float = typer.Option(2e-4, help="Adam learning rate for G and D."),
    b1: float = typer.Option(0.5, help="Adam beta1."),
    b2: float = typer.Option(0.999, help="Adam beta2."),
    latent_dim: int = typer.Option(100, help="Size of z."),
    width: int = typer.Option(64, help="dcgan: channels at the finest resolution (doubles per halving)."),
    spectral_norm: bool = typer.Option(True, "--spectral-norm/--no-spectral-norm", help="Spectral norm on every D layer."),
    g_dropout: float = typer.Option(0.1, help="Dropout after each hidden G block while training (0 turns it off)."),
    real_label: float = typer.Option(0.9, help="D's target for real images (one-sided label smoothing; 1.0 turns it off)."),
    ema_decay: float = typer.Option(0.999, help="Decay of the EMA of G's weights that the artifact ships."),
    val_fraction: float = typer.Option(0.05, help="Seeded share of images held out for validation losses."),
    sample_interval: int = typer.Option(400, help="Batches between sample grids (each epoch end writes one too)."),
    limit: Optional[int] = typer.Option(None, show_default="all", help="Train on the first N usable images only."),
    seed: int = typer.Option(0, help="Seed for weights, data order, z and dropout."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cuda or cpu."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision on CUDA (ignored on the CPU)."),
    out_dir: Path = typer.Option(Path("runs"), help="Parent folder of the numbered run directories."),
    resume: Optional[Path] = typer.Option(
        None, show_default="none: start a new run", help="Run directory to continue from its last checkpoint, with its own config (only --n-epochs and --device apply)."),
    dry_run: bool = typer.Option(False, "--dry-run", show_default="off", help="Print the resolved config and exit."),
) -> None:
    """Train a generator; writes a numbered run directory with config, metrics, grids, checkpoints and the artifact."""
    with one_line_errors():
        from gancli.gan.config import resolve_config

        if resume is not None:
            from gancli.gan.train import load_run_config, train as run_training

            cfg = load_run_config(resume, n_epochs=n_epochs, device=device)
            run_training(cfg, resume=resume, console=console)
            return
        cfg = resolve_config(
            dataset, data_root=str(data_root) if data_root else None, arch=arch, img_size=img_size,
            channels=channels, n_epochs=n_epochs, batch_size=batch_size, lr=lr, b1=b1, b2=b2,
            latent_dim=latent_dim, width=width, spectral_norm=spectral_norm, g_dropout=g_dropout,
            real_label=real_label, ema_decay=ema_decay, val_fraction=val_fraction,
            sample_interval=sample_interval, limit=limit, seed=seed, device=device, amp=amp,
            out_dir=str(out_dir),
        )
        if dry_run:
            console.print_json(cfg.to_json())
            return
        from gancli.gan.train import train as run_training

        run_training(cfg, console=console)


@app.command()
def export(
    source: Path = typer.Argument(..., help="Run directory of `gancli train`, or a folder with generator.json and generator.safetensors."),
    fmt: str = typer.Option("all", "--format", help="onnx, torchscript, or all."),
    out: Optional[Path] = typer.Option(None, "--out", show_default="SOURCE/export",
                                       help="Folder for the exported files and parity.json (created if missing)."),
    opset: int = typer.Option(20, help="ONNX opset version (18 or newer; the exporter starts at 18)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write half-precision ONNX graphs (z stays float32 in, images float32/uint8 out)."),
    int8: bool = typer.Option(False, "--int8", help="Also write generator-int8-uint8.onnx: int8 weights and activations, "
                                                    "1.5-3x faster on the CPU, with its own parity bar (mean <= 1.5, 99th percentile <= 12 levels)."),
) -> None:
    """Export a generator to ONNX (float NCHW and uint8 NHWC graphs) and/or TorchScript, checked against eager PyTorch.

    Each file embeds its metadata (JSON under key `gancli`), so a runtime needs no other file. Files
    are kept only if all pass parity (batches 1, 7, 256; 3 seeds); parity.json records the errors.
    TorchScript is deprecated upstream in torch but still loads with torch.jit.load.
    """
    with one_line_errors():
        from gancli.export.api import export_generator

        export_generator(source, fmt, out, opset=opset, fp16=fp16, int8=int8, console=console)


@app.command()
def generate(
    n: int = typer.Option(..., "-n", "--num-images", help="How many images: indices 0 to N-1 (with --shard, this job's part of them)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created if missing); run the same command again to resume."),
    model: Optional[str] = typer.Option(None, show_default="cats-dcgan",
                                        help="An exported .onnx file, or the name of a shipped model in models/ (e.g. mnist-dcgan)."),
    batch_size: str = typer.Option("auto", help="Images per inference batch, or auto (measured per device and architecture)."),
    device: str = typer.Option("auto", help="auto (CUDA when a session really gets it, else CPU), cuda or cpu."),
    seed: int = typer.Option(0, help="Image i is made from (seed, i) alone: same image whatever the batch, shard or resume."),
    fmt: str = typer.Option("png", "--format", help="png, jpg, or npz (1,000 images per file, with their indices)."),
    shard: str = typer.Option("0/1", help="K/M: make part K (counting from 0) of M disjoint parts of the same set."),
    grid: Optional[Path] = typer.Option(None, help="Also write a grid PNG of the first (up to 64) images."),
    precision: Optional[str] = typer.Option(None, show_default="fp32",
                                            help="fp32, or int8: a shipped model's int8 CPU graph (from `gancli export --int8`)."),
    merge_manifests: bool = typer.Option(False, "--merge-manifests", show_default="off",
                                         help="Make nothing: check that the shard manifests in --out cover images 0 to N-1 "
                                              "exactly once, then write manifest.jsonl."),
) -> None:
    """Generate images from an exported ONNX generator: reproducible, resumable, sharded, torch-free.

    Files are OUT/00000/000000042.png (10,000 per folder); OUT/manifest.jsonl maps each file to its
    index and seed. Every file is written under a temp name and renamed, so Ctrl-C leaves no partial file.
    """
    import time
    import warnings

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)

    if merge_manifests:
        with one_line_errors():
            from gancli.runtime.merge import merge_manifests as merge

            merged = merge(out, n)
            console.print(f"merged {merged.shards} shard manifests: images 0 to {merged.images - 1:,} each made once "
                          f"(seed {merged.seed}) -> {merged.path}", highlight=False)
        return
    with one_line_errors(), warnings.catch_warnings():
        from gancli.runtime.generate import generate as run_generate

        warnings.showwarning = show_warning  # one yellow line; catch_warnings restores the default
        if batch_size != "auto" and not batch_size.isdigit():
            raise GenerateError(f"--batch-size must be a positive integer or auto, not {batch_size!r}")
        columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                   TimeRemainingColumn())
        progress = Progress(*columns, console=console)
        bar_started = time.perf_counter()

        def on_progress(made: int, total: int) -> None:
            nonlocal bar_started
            if not progress.task_ids:  # the bar appears once the checks passed and work starts
                progress.start()
                progress.add_task("generate", total=total, rate="")
                bar_started = time.perf_counter()
            elapsed = time.perf_counter() - bar_started
            rate = f"{made / elapsed:,.0f} images/s" if made and elapsed > 0 else ""
            progress.update(progress.task_ids[0], completed=made, total=total, rate=rate)

        try:
            result = run_generate(n, out, model, batch_size=None if batch_size == "auto" else int(batch_size),
                                  device=device, seed=seed, fmt=fmt, shard=shard, grid=grid, precision=precision,
                                  on_progress=on_progress)
        finally:
            progress.stop()
        console.print(f"made {result.made:,} images in {result.seconds:.1f} s: {result.images_per_second:,.0f} images/s "
                      f"({result.already:,} already there; {result.device}, {result.layout} x{result.workers}, "
                      f"batch {result.batch_size}) in {result.out_dir}", highlight=False, soft_wrap=True)


@app.command("eval")
def evaluate(
    model: str = typer.Argument(..., help="A shipped model name (e.g. mnist-dcgan), a model folder, or an exported .onnx file."),
    dataset: str = typer.Option(..., help="Real data to compare with: mnist, cats, or a folder of images."),
    n: int = typer.Option(10_000, "-n", "--num-images", help="Generated images to score (indices 0 to N-1 of --seed)."),
    seed: int = typer.Option(0, help="Seed of the generated images (same images as `gancli generate --seed`)."),
    data_root: Optional[Path] = typer.Option(None, envvar="GANCLI_DATA_ROOT", show_default="$GANCLI_DATA_ROOT or ~/.cache/gancli/data",
                                             help="Folder holding mnist/ and cats/."),
    inception_weights: Optional[Path] = typer.Option(
        None, envvar="GANCLI_INCEPTION_WEIGHTS", show_default="the torch hub cache, if it has pt_inception-2015-12-05-6726825d.pth",
        help="pytorch-fid's Inception weights file, for the standard FID/KID/IS."),
    device: str = typer.Option("auto", help="auto, cuda or cpu: for generation and for the feature networks."),
    out: Optional[Path] = typer.Option(None, show_default="eval-MODEL.json", help="Where to write the results as JSON."),
    precision: Optional[str] = typer.Option(None, show_default="fp32", help="fp32, or int8: score a model's int8 graph."),
) -> None:
    """Score a generator against real data: FID/KID (+IS) with Inception weights, and for MNIST the project's
    classifier (FCD, classifier IS, digit shares); with the real-test floor, untrained ceiling and a memorisation check."""
    with one_line_errors():
        from gancli.gan.evaluate import evaluate as score_images, mnist_targets, untrained_generator_images
        from gancli.gan.io import write_text_atomic
        from gancli.runtime.generate import generate_array, resolve_model

        if n < 2:
            raise GenerateError(f"-n {n} is too few to score; pass at least 2 (10,000 is the usual)")
        path = resolve_model(model, precision)
        generated, meta = generate_array(path, n, seed=seed, device=device, precision=precision)
        width = model_width(path)
        untrained = untrained_generator_images(meta.arch, meta.latent_dim, meta.channels, meta.img_size, n, width=width)
        result = score_images(generated, untrained, dataset, data_root=str(data_root) if data_root else None,
                              inception_weights=inception_weights, device=device, seed=seed,
                              log=lambda line: err_console.print(line, style="dim", highlight=False))
        result["model"] = {"path": str(path), "weights_sha256": meta.weights_sha256, "arch": meta.arch,
                           "dataset": meta.dataset, "precision": meta.precision, "seed": seed}
        if result["class_shares"] is not None and dataset == "mnist":
            result["targets"] = mnist_targets(result)
        name = path.parent.name or path.stem
        out = out or Path(f"eval-{name}.json" if meta.precision == "fp32" else f"eval-{name}-{meta.precision}.json")
        write_text_atomic(out, json.dumps(result, indent=2))
        print_eval(result, out)


def model_width(onnx_path: Path) -> int:
    """The dcgan width from generator.json beside the model, for an untrained generator of the same size."""
    spec = onnx_path.parent / "generator.json"
    return json.loads(spec.read_text()).get("width", 64) if spec.is_file() else 64


def print_eval(result: dict, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{result['counts']['generated']:,} generated vs {result['real_data']}")
    for column in ("metric", "feature network", "generated", "floor: real test", "ceiling: untrained G"):
        table.add_column(column, justify="right" if column[0] in "gfc" else "left")
    for row in result["scores"]:
        cells = [f"{row[k]['value']:.4g}" + (f" ± {row[k]['std']:.2g}" if row[k].get("std") is not None else "")
                 for k in ("generated", "real_test", "untrained_generator")]
        table.add_row(row["metric"], row["feature_network"], *cells)
    if result["scores"]:
        console.print(table)
    if result["class_shares"] is not None:
        shares = "  ".join(f"{d}:{s:.1%}" for d, s in enumerate(result["class_shares"]["generated"]))
        console.print(f"digit shares: {shares}", highlight=False)
    memo = result["memorisation"]
    console.print(f"memorisation: {memo['num_flagged']} near-copies of training images among {memo['num_checked']} "
                  f"generated (nearest-training-image distance / typical: median {memo['median_ratio']:.2f}, "
                  f"min {memo['min_ratio']:.2f}; real images: min {memo['real']['min_ratio']:.2f}; "
                  f"flagged below {memo['threshold_ratio']})", highlight=False)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if "targets" in result:
        for name, check in result["targets"].items():
            if name != "passed":
                value = check["value"] if not isinstance(check["value"], list) else "see shares"
                mark = "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]"
                console.print(f"target {name}: {mark} ({value if isinstance(value, str) else f'{value:.4g}'}; {check['target']})")
    console.print(f"results written to {out}")

if __name__ == "__main__":
    app()
