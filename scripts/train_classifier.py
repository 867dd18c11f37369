"""Train the MNIST classifier that `gancli eval` ships in models/mnist-classifier/.

    python scripts/train_classifier.py --data-root DATA_ROOT    # a data root holding mnist/MNIST/raw

Seeded, CPU-friendly (a few minutes on a 2-core CPU); writes classifier.safetensors + classifier.json atomically,
with the test accuracy on the 10,000 MNIST test images and the training time in the JSON.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gancli.gan.metrics.detectors.mnist_classifier import CLASSIFIER_DIR, ClassifierSpec, classifier_outputs, save_classifier, train_classifier
from gancli.gan.data import resolve_data_root
from gancli.gan.metrics.references import load_mnist_nhwc


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder holding mnist/MNIST/raw (default: $GANCLI_DATA_ROOT or ~/.cache/gancli/data)")
    p.add_argument("--out-dir", type=Path, default=CLASSIFIER_DIR)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (cosine decay to 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (1 wastes least time when other jobs share the cores)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    root = resolve_data_root(str(args.data_root) if args.data_root is not None else None)
    train_images, train_labels = load_mnist_nhwc(root, train=True, download=False)
    test_images, test_labels = load_mnist_nhwc(root, train=False, download=False)

    spec = ClassifierSpec()
    t0 = time.perf_counter()
    model = train_classifier(spec, train_images, train_labels, args.epochs, args.batch_size, args.lr, args.seed)
    seconds = time.perf_counter() - t0

    _, probs = classifier_outputs(model, spec, test_images)
    spec.test_accuracy = float((probs.argmax(1) == test_labels).mean())
    spec.training = {
        "data": "MNIST train, 60,000 images, no augmentation", "seed": args.seed, "epochs": args.epochs,
        "batch_size": args.batch_size, "optimizer": "AdamW, weight decay 1e-4", "lr": args.lr,
        "schedule": "one-cycle (15 % warm-up, cosine decay)", "seconds": round(seconds, 1),
        "threads": args.threads, "device": "cpu", "torch_version": torch.__version__,
    }
    path = save_classifier(model, spec, args.out_dir)
    print(f"test accuracy {spec.test_accuracy:.4f}, trained in {seconds:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
