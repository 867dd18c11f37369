"""Save a run's last checkpoint as a model folder to continue it from with `gancli train --init-from`: weights
only (EMA G, G, D), config, curves, and its lineage (images seen and training hours in all).

The cats run that outlives sessions is kept this way in models/training/cats-dcgan/ (the wheel leaves it out):

    python scripts/save_training_state.py runs/00000-cats-dcgan models/training/cats-dcgan
"""
from __future__ import annotations

import sys
from pathlib import Path

from gancli.gan.training.init_from import save_training_state

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/save_training_state.py RUN_DIR OUT_DIR")
    out = save_training_state(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"saved {out}")
