"""gancli: train, export and deploy GAN image generators.

Each command parses its flags and calls one plain function; expected failures become one red
line and exit code 1 at this edge. torch is imported inside the commands that need it, so
`gancli --help` and `gancli generate` never load it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from export.errors import ExportError
from gan.errors import GanError
from runtime.errors import GenerateError

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
        from gan.config import resolve_config

        if resume is not None:
            from gan.train import load_run_config, train as run_training

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
        from gan.train import train as run_training

        run_training(cfg, console=console)


@app.command()
def export(
    source: Path = typer.Argument(..., help="Run directory of `gancli train`, or a folder with generator.json and generator.safetensors."),
    fmt: str = typer.Option("all", "--format", help="onnx, torchscript, or all."),
    out: Optional[Path] = typer.Option(None, "--out", show_default="SOURCE/export",
                                       help="Folder for the exported files and parity.json (created if missing)."),
    opset: int = typer.Option(20, help="ONNX opset version."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write half-precision ONNX graphs (z stays float32 in, images float32/uint8 out)."),
) -> None:
    """Export a generator to ONNX (float NCHW and uint8 NHWC graphs) and/or TorchScript, checked against eager PyTorch.

    Each file embeds its metadata (JSON under key `gancli`), so a runtime needs no other file. Files
    are kept only if all pass parity (batches 1, 7, 256; 3 seeds); parity.json records the errors.
    TorchScript is deprecated upstream in torch but still loads with torch.jit.load.
    """
    with one_line_errors():
        from export.api import export_generator

        export_generator(source, fmt, out, opset=opset, fp16=fp16, console=console)


if __name__ == "__main__":
    app()
