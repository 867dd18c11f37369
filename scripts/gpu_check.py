"""The CUDA path end to end, for a machine with a GPU; prints one table.

1. trains one short epoch of the cats DCGAN on CUDA with AMP;
2. exports it to ONNX, with parity checked on the CUDA EP as well as the CPU EP;
3. generates 10,000 64x64 PNGs with `gancli generate --device cuda` and times them after the model
   is loaded (target: <= 0.5 s);
4. runs benchmarks/bench_generate.py on this host's CPU for comparison.

Usage: python scripts/gpu_check.py [--data-root DATA_ROOT] [--work-dir /tmp/gancli-gpu]
Without a GPU it stops at once with one line: every step here needs CUDA.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_GENERATE = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_generate.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None,
                        help="folder holding cats/ (default: $GANCLI_DATA_ROOT or ~/.cache/gancli/data)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/gancli-gpu"))
    parser.add_argument("-n", type=int, default=10_000)
    args = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible to torch; run this on a machine with one")
    from gancli.export.api import export_generator
    from gancli.gan.training.config import resolve_config
    from gancli.gan.training.loop import train
    from gancli.runtime.generate import generate
    from gancli.runtime.session import GeneratorSession

    console = Console()
    rows: list[tuple[str, str]] = [("GPU", torch.cuda.get_device_name(0))]
    cfg = resolve_config("cats", data_root=args.data_root, n_epochs=1, device="cuda", amp=True,
                         out_dir=str(args.work_dir / "runs"))
    started = time.perf_counter()
    run_dir = train(cfg, console=console)
    rows.append(("train 1 epoch, cats DCGAN width 64, AMP", f"{time.perf_counter() - started:.1f} s"))

    result = export_generator(run_dir, "onnx", args.work_dir / "export", console=console)
    for entry in result.report.results:
        rows.append((f"parity {entry.file} on {entry.runtime}", f"max error {entry.max_error:.3g} (bar {entry.bar:.3g})"))

    model = args.work_dir / "export" / "generator-uint8.onnx"
    load_started = time.perf_counter()
    GeneratorSession(model, device="cuda")
    rows.append(("load model on the CUDA EP", f"{time.perf_counter() - load_started:.2f} s"))
    made = generate(args.n, args.work_dir / "samples", model, device="cuda")
    rows.append((f"generate {made.made:,} PNGs, CUDA EP (after load)",
                 f"{made.seconds:.2f} s, {made.images_per_second:,.0f} images/s (target <= 0.5 s for 10,000)"))

    bench = subprocess.run([sys.executable, str(BENCH_GENERATE), "--artifact",
                            str(run_dir), "--parts", "abcdt"], capture_output=True, text=True)
    rows.append(("benchmarks/bench_generate.py (CPU layouts of this host)", "exit 0, output below" if bench.returncode == 0
                 else f"exit {bench.returncode}"))

    table = Table(title=f"gancli GPU check, {time.strftime('%Y-%m-%d')}")
    table.add_column("step")
    table.add_column("result")
    for step, value in rows:
        table.add_row(step, value)
    console.print(table)
    console.print(bench.stdout[-4000:] or bench.stderr[-4000:])


if __name__ == "__main__":
    main()
