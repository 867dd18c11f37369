"""Training recipes compared at equal compute: each trains the same architecture on the same data for
the same number of images, then its EMA generator is scored by the run's own quality judge (MNIST:
the project's classifier, FCD and IS on --eval-images samples).

    python benchmarks/bench_recipes.py --dataset mnist --epochs 1 --threads 1

Prints one row per recipe: images seen, CPU minutes of the process, score. Compare rows only
within one run (the host's load changes between runs).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from rich.console import Console

from gancli.gan.training.config import resolve_config
from gancli.gan.training.loop import train

# recipe name -> (named recipe, overrides): the named recipes plus the variants worth measuring
CANDIDATES = {
    "classic": ("classic", {}),
    "sngan": ("sngan", {}),
    "sngan, D depth 1 (DCGAN's D)": ("sngan", {"d_depth": 1}),
    "sngan + TTUR 1e-4/4e-4": ("sngan", {"lr_g": 1e-4, "lr_d": 4e-4}),
    "sngan + Adam (0.5, 0.999)": ("sngan", {"b1": 0.5, "b2": 0.999}),
    "sngan + batch 128": ("sngan", {"batch_size": 128}),
    "sngan + ralsgan loss": ("sngan", {"loss": "ralsgan"}),
    "sngan + DiffAugment": ("sngan-diffaugment", {}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-root", default=None, help="default: $GANCLI_DATA_ROOT")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-images", type=int, default=5000)
    p.add_argument("--conditional", action="store_true")
    p.add_argument("--only", nargs="*", default=None, help="names from CANDIDATES")
    args = p.parse_args()
    for name, (recipe, overrides) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as out:
            cfg = resolve_config(args.dataset, recipe=recipe, data_root=args.data_root, n_epochs=args.epochs,
                                 limit=args.limit, threads=args.threads, device="cpu", eval_every=args.epochs,
                                 eval_images=args.eval_images, conditional=args.conditional or None, out_dir=out,
                                 **overrides)
            started = time.process_time()
            run_dir = train(cfg, console=Console(quiet=True))
            minutes = (time.process_time() - started) / 60
            history = json.loads((run_dir / "generator.json").read_text())["quality"]
            print(f"{name:28s} batch {cfg.batch_size:4d}  {args.epochs} epoch(s)  {minutes:5.1f} CPU min  "
                  + "  ".join(f"{k} {v:.4g}" for k, v in history.items() if isinstance(v, float)), flush=True)


if __name__ == "__main__":
    main()
