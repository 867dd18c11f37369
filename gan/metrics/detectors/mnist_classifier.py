"""The small MNIST classifier that `gancli eval` uses as a feature network when no Inception weights are on disk.

Shipped in `models/mnist-classifier/` as `classifier.safetensors` + `classifier.json` (architecture, input
normalisation, test accuracy, seed, weights hash), trained by `train_classifier` (scripts/train_classifier.py runs it). Its 128-d
penultimate activations give the Fréchet classifier distance (FCD), its softmax the classifier Inception
score and the share of each digit class.

Images enter as uint8 [N, 28, 28, 1] (NHWC, the runtime's output layout), 0 = black background.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gancli.gan.artifact import load_state_strict, load_verified_state, spec_fields, weights_bytes, write_pair
from gancli.gan.errors import ArtifactError, EvalError
from gancli.runtime.jsonfile import read_json_object
from gancli.models import models_dir

CLASSIFIER_DIR = models_dir() / "mnist-classifier"
WEIGHTS_NAME = "classifier.safetensors"
SPEC_NAME = "classifier.json"
CLASSIFIER_FORMAT = "gancli-mnist-classifier"
CLASSIFIER_FORMAT_VERSION = 1
FEATURE_NETWORK_NAME = "mnist-classifier"
WAY_OUT = f"restore models/mnist-classifier/ (both {SPEC_NAME} and {WEIGHTS_NAME}) or run scripts/train_classifier.py"
IMAGE_SHAPE = (28, 28, 1)  # H, W, C of the images it accepts
WEIGHT_DECAY = 1e-4
WARMUP = 0.15  # share of the one-cycle schedule spent warming up


class MNISTClassifier(nn.Module):
    """Two conv blocks (conv 3x3, BN, ReLU, max-pool), fc + BN + ReLU -> `feature_dim` features, fc -> logits."""

    def __init__(self, conv_channels: tuple[int, int] = (16, 32), feature_dim: int = 128, num_classes: int = 10,
                 dropout: float = 0.5):
        super().__init__()
        c1, c2 = conv_channels
        self.body = nn.Sequential(
            # state size: 1 x 28 x 28 -> c1 x 14 x 14
            nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            # c1 x 14 x 14 -> c2 x 7 x 7
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
            # BN before the last ReLU keeps every feature unit active on some images: no dead (constant) features,
            # whose zero variance would make the covariance that FCD takes the square root of singular
            nn.Linear(c2 * 7 * 7, feature_dim, bias=False), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True),
        )
        # dropout sits after the features so that they are the same in training and eval
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 1, 28, 28] -> penultimate activations [B, feature_dim]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class ClassifierSpec:
    """Everything needed to rebuild the classifier and to feed it the way it was trained."""

    conv_channels: tuple[int, int] = (16, 32)
    feature_dim: int = 128
    num_classes: int = 10
    dropout: float = 0.5
    # pixels are x / 255, then (x - mean) / std with the MNIST train statistics
    normalization: dict = field(default_factory=lambda: {"mean": 0.1307, "std": 0.3081})
    input: str = "uint8 [N, 28, 28, 1] (NHWC), 0 = black background"
    test_accuracy: float = 0.0  # on the 10,000 MNIST test images
    training: dict = field(default_factory=dict)  # seed, epochs, optimiser, seconds, torch version
    weights_sha256: str = ""
    format: str = CLASSIFIER_FORMAT
    format_version: int = CLASSIFIER_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: object, source: str = SPEC_NAME) -> "ClassifierSpec":
        """The spec in `data`; one ArtifactError line naming `source` when it is foreign, from a newer
        gancli, or has a field missing, unknown or of the wrong type."""
        return cls(**spec_fields(cls, data, source, CLASSIFIER_FORMAT, CLASSIFIER_FORMAT_VERSION,
                                 "a gancli MNIST classifier description", WAY_OUT))


def build_classifier(spec: ClassifierSpec) -> MNISTClassifier:
    return MNISTClassifier(spec.conv_channels, spec.feature_dim, spec.num_classes, spec.dropout)


def save_classifier(model: MNISTClassifier, spec: ClassifierSpec, out_dir: str | Path) -> Path:
    """Write the weights and the JSON naming their hash as one pair (artifact.write_pair: a failed write
    leaves the previous pair). Returns the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = weights_bytes(model, CLASSIFIER_FORMAT)
    spec.weights_sha256 = hashlib.sha256(weights).hexdigest()
    write_pair(out_dir / WEIGHTS_NAME, weights, out_dir / SPEC_NAME, spec.to_json())
    return out_dir / SPEC_NAME


def load_classifier(path: str | Path | None = None,
                    device: str | torch.device = "cpu") -> tuple[MNISTClassifier, ClassifierSpec]:
    """Rebuild the classifier from its JSON and load its safetensors weights; eval mode. Default: the shipped one."""
    folder = Path(path) if path is not None else CLASSIFIER_DIR
    spec_path, weights = folder / SPEC_NAME, folder / WEIGHTS_NAME
    if not spec_path.is_file() or not weights.is_file():
        raise ArtifactError(f"{folder} lacks {SPEC_NAME} or {WEIGHTS_NAME}; "
                            f"restore models/mnist-classifier/ or run scripts/train_classifier.py")
    data = read_json_object(spec_path, "a gancli MNIST classifier description (a JSON object)", ArtifactError, WAY_OUT)
    spec = ClassifierSpec.from_dict(data, str(spec_path))
    state = load_verified_state(weights, spec.weights_sha256, SPEC_NAME, WAY_OUT)
    try:
        model = build_classifier(spec)
    except (ValueError, RuntimeError) as e:
        raise ArtifactError(f"{spec_path} describes a classifier this gancli cannot build ({e}); {WAY_OUT}") from e
    load_state_strict(model, state, SPEC_NAME, WEIGHTS_NAME)
    return model.to(device).eval(), spec


def check_mnist_images(images: np.ndarray, name: str = "images") -> None:
    """Raise EvalError unless `images` is uint8 [N, 28, 28, 1]: the only input the classifier was trained on."""
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise EvalError(f"the MNIST classifier needs uint8 [N, 28, 28, 1] {name}, got {images.dtype} "
                        f"{list(images.shape)}; it fits 28x28 grey generators only")


def to_classifier_input(images: np.ndarray, spec: ClassifierSpec, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [N, 28, 28, 1] -> normalised float32 [N, 1, 28, 28]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
    return (x - spec.normalization["mean"]) / spec.normalization["std"]


@torch.no_grad()
def classifier_outputs(model: MNISTClassifier, spec: ClassifierSpec, images: np.ndarray,
                       batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features [N, feature_dim] float64, class probabilities [N, num_classes] float64)."""
    check_mnist_images(images)
    device = next(model.parameters()).device
    features, probs = [], []
    for start in range(0, len(images), batch_size):
        f = model.features(to_classifier_input(images[start:start + batch_size], spec, device))
        features.append(f.double().cpu().numpy())
        probs.append(torch.softmax(model.head(f).double(), dim=1).cpu().numpy())
    return np.concatenate(features), np.concatenate(probs)


def train_classifier(spec: ClassifierSpec, images: np.ndarray, labels: np.ndarray, epochs: int = 3,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     device: str | torch.device = "cpu") -> MNISTClassifier:
    """A fresh MNISTClassifier trained on (images, labels) with the shipped classifier's recipe (AdamW, one-cycle
    with 15 % warm-up, peak `lr`), seeded: the same data and seed give the same weights (on the CPU). The caller's
    global torch RNG is left as it was. The shipped classifier is this on MNIST train, 3 epochs."""
    check_mnist_images(images, "training images")
    if len(images) < 2:
        raise EvalError(f"{len(images)} images are too few to train a classifier on; pass more")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(spec).to(device)
        x_all = to_classifier_input(images, spec, device)
        y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        steps = epochs * math.ceil(len(x_all) / batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=WARMUP)
        order_gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x_all), generator=order_gen).to(device)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                if len(idx) < 2:  # batch norm cannot train on one image
                    continue
                loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return model.eval()
