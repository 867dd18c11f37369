"""Score generated images against the real data set: FD and KID, IS and class shares where a classifier fits,
reference figures beside every score, and a memorisation check. What `gancli eval` calls.

Images everywhere are uint8 [N, H, W, C] (NHWC, the runtime's `uint8_nhwc` output), C = 1 or 3.

Feature networks (numbers from different networks are never compared; every score names its network):
- `inception-v3-fid`: pytorch-fid's InceptionV3 pool3 features (2048-d) with the standard FID weights
  `pt_inception-2015-12-05-6726825d.pth`, read from disk only (see `find_inception_weights`); gives FID and KID.
- `mnist-classifier`: the classifier shipped in models/mnist-classifier/ (gan.classifier), MNIST only; its 128-d
  penultimate features give FCD and KID, its softmax the classifier IS and the share of each digit class.

Reference figures, computed with the same network, counts and settings as the generated score:
- `real_test`: real images the generator did not learn from, against the same reference (the floor:
  what a perfect generator would score). MNIST: the 10,000 test images vs the 60,000 train images.
  Folders (cats, PATH): a seeded 20 % held out vs the other 80 %; the generated images are scored against that 80 %.
- `untrained_generator`: images from a freshly initialised generator of the same architecture (the ceiling);
  the caller passes them, made by `untrained_generator_images` (seed 0) from the model's description.

Memorisation check, in pixel space (Euclidean distance between images scaled to [0, 1], no feature network, so it
works for every data set): for a seeded sample of generated images, the distance to the nearest training image,
divided by the typical distance between training images (the median, over a seeded sample of training images, of
the distance to their nearest other training image). A ratio below NEAR_COPY_RATIO flags a near-copy. On MNIST the
lowest ratio of any of the 10,000 real test images is about 0.2 and the median about 1.0; exact copies score 0.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gancli.gan import data, metrics
from gancli.gan.classifier import FEATURE_NETWORK_NAME as CLASSIFIER_NETWORK_NAME
from gancli.gan.classifier import check_mnist_images, classifier_outputs, load_classifier
from gancli.gan.distributed import select_device
from gancli.gan.errors import DataError, EvalError
from gancli.gan.networks import build_generator, dcgan_init_
from gancli.runtime.pixels import to_uint8_nhwc  # noqa: F401  (also imported from here by gan/quality.py)

INCEPTION_NETWORK_NAME = "inception-v3-fid"
INCEPTION_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_SHA256_PREFIX = "6726825d"  # torch hub's convention: the file name carries its hash prefix
INCEPTION_WEIGHTS_ENV = "GANCLI_INCEPTION_WEIGHTS"
# where pytorch-fid fetches them from: named in messages, never downloaded here
INCEPTION_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                         + INCEPTION_WEIGHTS_NAME)

NEAR_COPY_RATIO = 0.1  # half the lowest ratio of any real MNIST test image: only (near-)copies fall below
HELD_OUT_FRACTION = 0.2  # folders: share of images held out as the real sample for the floor
Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class RealData:
    """The real images one evaluation compares against, all uint8 [N, H, W, C]."""

    name: str  # "mnist", "cats" or the folder's path
    reference: np.ndarray  # FD and KID of every image set are taken against these
    test: np.ndarray  # real images not in `reference`: the floor's sample
    training: np.ndarray  # every image the generator may have learnt from: the memorisation check's search space
    test_is_held_out: bool  # True when `test` is disjoint from `training` (MNIST test), False for folder splits
    description: str


def nhwc(images: torch.Tensor) -> np.ndarray:
    """gan.data's uint8 [N, C, H, W] tensor -> uint8 [N, H, W, C] array."""
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def load_real_data(dataset: str, data_root: str | Path | None, image_shape: tuple[int, int, int], seed: int = 0,
                   download: bool = True) -> RealData:
    """The real side of an evaluation for `dataset` ("mnist", "cats" or a folder), shaped like the generated images.

    Images are read, resized and cropped by gan.data exactly as training reads them; `data_root` None means
    $GANCLI_DATA_ROOT or the user cache, as for `gancli train`.
    """
    height, width, channels = image_shape
    root = data.resolve_data_root(str(data_root) if data_root is not None else None)
    if dataset == "mnist":
        if tuple(image_shape) != (28, 28, 1):
            raise EvalError(f"the generated images are {list(image_shape)} but MNIST is [28, 28, 1]; "
                            f"evaluate an MNIST generator against mnist")
        train = nhwc(data.load_mnist(root, train=True, download=download)[0])
        test = nhwc(data.load_mnist(root, train=False, download=download)[0])
        return RealData("mnist", train, test, train, True,
                        f"MNIST train ({len(train)}) as reference; MNIST test ({len(test)}) as the real sample")
    if height != width:
        raise EvalError(f"the generated images are {height}x{width}; eval compares square images only")
    folder = data.ensure_cats(root, download) if dataset == "cats" else data.existing_folder(dataset)
    images = data.decode_folder(folder, height, channels, limit=None)[0]
    images = nhwc(images)
    if len(images) < 10:
        raise DataError(f"{folder} holds {len(images)} usable images; eval needs at least 10")
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = round(HELD_OUT_FRACTION * len(images))
    test, reference = images[np.sort(order[:n_test])], images[np.sort(order[n_test:])]
    return RealData(dataset, reference, test, images, False,
                    f"{folder}: {len(reference)} images as reference; a seeded {HELD_OUT_FRACTION:.0%} "
                    f"({len(test)}) held out as the real sample")


# ---------------------------------------------------------------------------------------------------------------
# Untrained generator (the ceiling)
# ---------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def untrained_generator_images(arch: str, latent_dim: int, channels: int, img_size: int, num_images: int,
                               width: int = 64, seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """Images of a freshly initialised generator (as training starts it, eval mode), seeded: uint8 [N, H, W, C]."""
    # fork the RNG so that seeding the weights here leaves the caller's global torch RNG as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = build_generator(arch, latent_dim, channels, img_size, width)
        if arch == "dcgan":
            dcgan_init_(G)  # build_models' initialisation for dcgan
    G.eval()
    z_gen = torch.Generator().manual_seed(seed)
    batches = [to_uint8_nhwc(G(torch.randn(min(batch_size, num_images - start), latent_dim, generator=z_gen)))
               for start in range(0, num_images, batch_size)]
    return np.concatenate(batches)


# ---------------------------------------------------------------------------------------------------------------
# Feature networks
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class FeatureNetwork:
    """A network that maps images to features (and, for classifiers, class probabilities)."""

    name: str
    description: str
    fd_name: str  # what FD on its features is called: "FID" or "FCD"
    # images uint8 [N, H, W, C] -> (features [N, D], class probabilities [N, K] or None)
    extract: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    info: dict  # JSON-serialisable facts about it (weights, feature size, accuracy)


def mnist_classifier_network(device: str | torch.device = "cpu", path: str | Path | None = None) -> FeatureNetwork:
    model, spec = load_classifier(path, device)

    def extract(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return classifier_outputs(model, spec, images)

    return FeatureNetwork(
        CLASSIFIER_NETWORK_NAME,
        f"MNIST CNN shipped in models/mnist-classifier (test accuracy {spec.test_accuracy:.2%}); "
        f"{spec.feature_dim}-d penultimate features",
        "FCD", extract,
        {"feature_dim": spec.feature_dim, "test_accuracy": spec.test_accuracy, "weights_sha256": spec.weights_sha256},
    )


def inception_weights_locations() -> list[str]:
    """Where `find_inception_weights` looks when no path is given, for messages."""
    return [f"${INCEPTION_WEIGHTS_ENV}", str(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_NAME)]


def find_inception_weights(path: str | Path | None = None) -> Path | None:
    """The FID Inception weights file: `path` (e.g. --inception-weights), else $GANCLI_INCEPTION_WEIGHTS, else the
    torch hub cache (torch.hub.get_dir()/checkpoints, i.e. ~/.cache/torch/hub/checkpoints by default).

    A path that is named (argument or variable) but missing raises EvalError; with none named and none in the
    cache, returns None. Never downloads.
    """
    named = path if path is not None else os.environ.get(INCEPTION_WEIGHTS_ENV) or None
    if named is not None:
        named = Path(named).expanduser()
        if named.is_dir():
            named = named / INCEPTION_WEIGHTS_NAME
        if not named.is_file():
            source = "--inception-weights" if path is not None else f"${INCEPTION_WEIGHTS_ENV}"
            raise EvalError(f"{source} names {named}, which does not exist; download {INCEPTION_WEIGHTS_URL} there "
                            f"or leave it unset to score without Inception")
        return named
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_NAME
    return cached if cached.is_file() else None


def check_inception_weights(path: str | Path) -> None:
    """Raise EvalError unless the file's sha256 starts with the prefix its standard name carries."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if not digest.startswith(INCEPTION_WEIGHTS_SHA256_PREFIX):
        raise EvalError(f"{path} is not the pytorch-fid Inception weights (sha256 {digest[:8]}..., expected "
                        f"{INCEPTION_WEIGHTS_SHA256_PREFIX}...); download {INCEPTION_WEIGHTS_URL} again")


def load_fid_inception(weights: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (pool3, 2048-d; resizes to 299 and scales [0, 1] to [-1, 1] itself) with the
    weights read from `weights` (torch.load, weights_only) instead of fetched from its URL."""
    from pytorch_fid import inception

    def load_local(url: str, **kwargs) -> dict:
        return torch.load(weights, map_location="cpu", weights_only=True)

    # pytorch-fid only knows how to fetch its weights by URL; route that one call to the file on disk
    fetch = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = load_local
    try:
        model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    except (RuntimeError, pickle.UnpicklingError) as e:
        raise EvalError(f"{weights} does not fit pytorch-fid's InceptionV3 ({str(e).splitlines()[0]}); "
                        f"download {INCEPTION_WEIGHTS_URL} again") from e
    finally:
        inception.load_state_dict_from_url = fetch
    return model.to(device).eval()


@torch.no_grad()
def inception_features(model: torch.nn.Module, images: np.ndarray, batch_size: int = 50) -> np.ndarray:
    """uint8 [N, H, W, C] -> pool3 features [N, 2048] float64; grey images are repeated to RGB as PIL's convert does."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        out.append(model(x)[0].flatten(1).double().cpu().numpy())
    return np.concatenate(out)


def inception_network(weights: str | Path, device: str | torch.device = "cpu") -> FeatureNetwork:
    check_inception_weights(weights)
    model = load_fid_inception(weights, device)
    batch_size = 200 if torch.device(device).type == "cuda" else 50

    def extract(images: np.ndarray) -> tuple[np.ndarray, None]:
        return inception_features(model, images, batch_size), None

    return FeatureNetwork(INCEPTION_NETWORK_NAME, "pytorch-fid InceptionV3 (FID weights), 2048-d pool3 features",
                          "FID", extract, {"feature_dim": 2048, "weights": str(weights)})


def feature_networks(dataset: str, inception_weights: str | Path | None = None,
                     device: str | torch.device = "cpu") -> tuple[list[FeatureNetwork], list[str]]:
    """The networks that fit `dataset`, and notes on what was left out and why."""
    networks, notes = [], []
    weights = find_inception_weights(inception_weights)
    if weights is not None:
        networks.append(inception_network(weights, device))
    else:
        notes.append(f"no Inception weights found (looked at {' and '.join(inception_weights_locations())}): "
                     f"FID and Inception KID are not computed; put {INCEPTION_WEIGHTS_NAME} there or pass "
                     f"--inception-weights to get them")
    if dataset == "mnist":
        networks.append(mnist_classifier_network(device))
    else:
        notes.append("IS and class shares need a classifier for the data set; only MNIST has one")
    return networks, notes


# ---------------------------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------------------------

IMAGE_SETS = ("generated", "real_test", "untrained_generator")


def _score(value: float, std: float | None = None) -> dict:
    return {"value": float(value), "std": None if std is None else float(std)}


def score_with_network(network: FeatureNetwork, image_sets: dict[str, np.ndarray], reference: np.ndarray,
                       kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
                       log: Log | None = None) -> tuple[list[dict], dict | None]:
    """FD, KID (and IS with class shares, for classifiers) of each image set against `reference`.

    Returns score rows {metric, feature_network, better, <set>: {value, std}} and the class shares (or None).
    """
    if log:
        log(f"{network.name}: features of {len(reference)} reference images")
    ref_features, _ = network.extract(reference)
    fd, kid, is_, shares = {}, {}, {}, {}
    for set_name, images in image_sets.items():
        if log:
            log(f"{network.name}: features of {len(images)} {set_name.replace('_', ' ')} images")
        features, probs = network.extract(images)
        fd[set_name] = _score(metrics.frechet_distance(features, ref_features))
        kid[set_name] = _score(*metrics.kernel_inception_distance(features, ref_features, kid_subsets,
                                                                   kid_subset_size, seed))
        if probs is not None:
            is_[set_name] = _score(*metrics.inception_score(probs))
            shares[set_name] = metrics.class_shares(probs).tolist()
    rows = [{"metric": network.fd_name, "feature_network": network.name, "better": "lower", **fd},
            {"metric": "KID", "feature_network": network.name, "better": "lower", **kid}]
    if not is_:
        return rows, None
    rows.append({"metric": "IS", "feature_network": network.name, "better": "higher", **is_})
    return rows, {"feature_network": network.name, **shares}


def memorisation_check(generated: np.ndarray, training: np.ndarray, held_out: np.ndarray | None = None,
                       sample_size: int = 1000, threshold: float = NEAR_COPY_RATIO, seed: int = 0) -> dict:
    """Nearest-training-image distance of a seeded sample of generated images, over the typical distance between
    training images (pixel space, [0, 1]); ratios below `threshold` are flagged as near-copies.

    The same ratio for real images is reported beside it: `held_out` images (disjoint from `training`) when given,
    otherwise the training sample itself, leave-one-out (its median is then 1 by construction).
    """
    rng = np.random.default_rng(seed)
    train_flat = _flat_unit(training)
    sample = np.sort(rng.choice(len(generated), min(sample_size, len(generated)), replace=False))
    train_sample = rng.choice(len(training), min(sample_size, len(training)), replace=False)
    # leave-one-out: each sampled training image against all the others
    typical_d, _ = metrics.nearest_neighbour_distances(train_flat[train_sample], train_flat, skip=train_sample)
    typical = float(np.median(typical_d))
    gen_d, gen_nn = metrics.nearest_neighbour_distances(_flat_unit(generated[sample]), train_flat)
    ratios = gen_d / typical
    if held_out is not None:
        held = held_out[np.sort(rng.choice(len(held_out), min(sample_size, len(held_out)), replace=False))]
        real_ratios = metrics.nearest_neighbour_distances(_flat_unit(held), train_flat)[0] / typical
        real_source = "held-out real images against the training images"
    else:
        real_ratios = typical_d / typical
        real_source = "sampled training images against the other training images (leave-one-out)"
    flagged = np.flatnonzero(ratios < threshold)
    return {
        "space": "pixels scaled to [0, 1], Euclidean distance",
        "num_checked": int(len(sample)),
        "num_training_images": int(len(training)),
        "typical_training_distance": typical,
        "threshold_ratio": threshold,
        "median_ratio": float(np.median(ratios)),
        "min_ratio": float(ratios.min()),
        "num_flagged": int(len(flagged)),
        "share_flagged": float(len(flagged) / len(sample)),
        # indices are positions in the caller's arrays, so the CLI can name the image (its seed) and the training image
        "flagged": [{"generated_index": int(sample[i]), "training_index": int(gen_nn[i]), "ratio": float(ratios[i])}
                    for i in flagged[np.argsort(ratios[flagged])][:20]],
        "real": {"source": real_source, "median_ratio": float(np.median(real_ratios)),
                 "min_ratio": float(real_ratios.min()),
                 "share_flagged": float(np.mean(real_ratios < threshold))},
    }


def _flat_unit(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def check_images(images: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> None:
    """Raise EvalError unless `images` is uint8 [N >= 10, H, W, C in (1, 3)], of `shape` [H, W, C] when given."""
    is_nhwc = isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[3] in (1, 3)
    if not is_nhwc or images.dtype != np.uint8:
        got = f"{images.dtype} {list(images.shape)}" if isinstance(images, np.ndarray) else type(images).__name__
        raise EvalError(f"{name} images must be uint8 [N, H, W, C] with C 1 or 3, got {got}")
    if len(images) < 10:
        raise EvalError(f"{name}: {len(images)} images are too few to score; use -n 10 or more (10000 is standard)")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise EvalError(f"{name} images are {list(images.shape[1:])} but the real ones are {list(shape)}")


def evaluate_images(generated: np.ndarray, untrained: np.ndarray, real: RealData, networks: list[FeatureNetwork],
                    notes: list[str] | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                    memorisation_sample: int = 1000, seed: int = 0, log: Log | None = None) -> dict:
    """Score `generated` (and, as references, real test images and `untrained`) with every network; JSON-ready."""
    check_images(generated, "generated")
    check_images(untrained, "untrained generator", generated.shape[1:])
    check_images(real.reference, "reference", generated.shape[1:])
    if CLASSIFIER_NETWORK_NAME in {n.name for n in networks}:
        check_mnist_images(generated, "generated images")
    image_sets = {"generated": generated, "real_test": real.test, "untrained_generator": untrained}
    scores, shares, network_info = [], None, {}
    for network in networks:
        rows, network_shares = score_with_network(network, image_sets, real.reference, kid_subsets,
                                                  kid_subset_size, seed, log)
        scores += rows
        shares = network_shares or shares
        network_info[network.name] = {"description": network.description, **network.info}
    if log:
        log(f"memorisation: nearest of {len(real.training)} training images, pixel space")
    memo = memorisation_check(generated, real.training, real.test if real.test_is_held_out else None,
                              memorisation_sample, seed=seed)
    return {
        "dataset": real.name,
        "image_shape": list(generated.shape[1:]),
        "real_data": real.description,
        "counts": {"generated": len(generated), "reference": len(real.reference), "real_test": len(real.test),
                   "untrained_generator": len(untrained)},
        "feature_networks": network_info,
        "scores": scores,
        "class_shares": shares,
        "memorisation": memo,
        "settings": {"kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size, "is_splits": 10, "seed": seed},
        "notes": list(notes or []),
    }


def evaluate(generated: np.ndarray, untrained: np.ndarray, dataset: str, data_root: str | Path | None = None,
             inception_weights: str | Path | None = None, device: str = "auto", seed: int = 0,
             download: bool = True, log: Log | None = None) -> dict:
    """Load the real data for `dataset`, pick the feature networks that fit, score; the dict `gancli eval` writes.

    `untrained`: images of an untrained generator of the same architecture, as many as `generated`, from
    `untrained_generator_images(..., seed=0)`.
    """
    check_images(generated, "generated")
    real = load_real_data(dataset, data_root, generated.shape[1:], seed, download)
    networks, notes = feature_networks(dataset, inception_weights, select_device(device))
    return evaluate_images(generated, untrained, real, networks, notes, seed=seed, log=log)


def model_width(model_path: str | Path) -> int:
    """The dcgan width from generator.json beside an exported model (64, the default, when there is none), so that
    the untrained generator of the ceiling has the size of the model scored."""
    spec = Path(model_path).parent / "generator.json"
    return json.loads(spec.read_text()).get("width", 64) if spec.is_file() else 64


def evaluate_model(model: str | Path, dataset: str, n: int = 10_000, *, seed: int = 0,
                   data_root: str | Path | None = None, inception_weights: str | Path | None = None,
                   device: str = "auto", precision: str | None = None, log: Log | None = None) -> dict:
    """Score images [0, n) of `seed` from `model` (a shipped model name, a model folder or an exported .onnx file)
    against the real `dataset` ("mnist", "cats" or a folder): what `gancli eval` does, as a dict ready for JSON.

    The images are made through the runtime, exactly as `gancli generate` makes them; the ceiling is an untrained
    generator of the model's architecture and width. The result is `evaluate`'s dict plus a "model" entry (path,
    weights hash, architecture, data set, precision, seed). Bad input raises a GancliError subclass (EvalError,
    DataError, GenerateError).
    """
    from gancli.runtime.generate import generate_array, resolve_model

    if n < 2:
        raise EvalError(f"-n {n} is too few to score; pass at least 2 (10,000 is the usual)")
    path = resolve_model(model, precision)
    generated, meta = generate_array(path, n, seed=seed, device=device, precision=precision)
    untrained = untrained_generator_images(meta.arch, meta.latent_dim, meta.channels, meta.img_size, n,
                                           width=model_width(path))
    result = evaluate(generated, untrained, dataset, data_root=str(data_root) if data_root is not None else None,
                      inception_weights=inception_weights, device=device, seed=seed, log=log)
    result["model"] = {"path": str(path), "weights_sha256": meta.weights_sha256, "arch": meta.arch,
                       "dataset": meta.dataset, "precision": meta.precision, "seed": seed}
    return result


# ---------------------------------------------------------------------------------------------------------------
# Targets of the shipped MNIST generator
# ---------------------------------------------------------------------------------------------------------------

MNIST_TARGETS = {"min_classifier_is": 9.0, "max_fcd_over_real": 3.0, "class_share": (0.08, 0.12)}


def mnist_targets(result: dict) -> dict:
    """Check an MNIST result against the shipped mnist-dcgan's targets: classifier IS >= 9.0, FCD <= 3x the
    real-test FCD, every digit class 10 % +- 2 %. Returns {check: {value, target, passed}, "passed": all}."""
    rows = {r["metric"]: r for r in result["scores"] if r["feature_network"] == CLASSIFIER_NETWORK_NAME}
    if "IS" not in rows or result.get("class_shares") is None:
        raise EvalError("the MNIST targets need the mnist-classifier scores; evaluate with --dataset mnist")
    is_value = rows["IS"]["generated"]["value"]
    fcd, fcd_real = rows["FCD"]["generated"]["value"], rows["FCD"]["real_test"]["value"]
    low, high = MNIST_TARGETS["class_share"]
    shares = result["class_shares"]["generated"]
    checks = {
        "classifier_is": {"value": is_value, "target": f">= {MNIST_TARGETS['min_classifier_is']}",
                          "passed": is_value >= MNIST_TARGETS["min_classifier_is"]},
        "fcd": {"value": fcd, "target": f"<= {MNIST_TARGETS['max_fcd_over_real']} x {fcd_real:.3g} (real test)",
                "passed": fcd <= MNIST_TARGETS["max_fcd_over_real"] * fcd_real},
        "class_shares": {"value": shares, "target": f"each in [{low}, {high}]",
                         "passed": all(low <= s <= high for s in shares)},
    }
    return {**checks, "passed": all(c["passed"] for c in checks.values())}
