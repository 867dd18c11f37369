"""Score generated images against the real data set: FD and KID, IS and class shares where a classifier fits,
reference figures beside every score, and a memorisation check. What `gancli eval` calls: `evaluate_model`.

Images everywhere are uint8 [N, H, W, C] (NHWC, the runtime's `uint8_nhwc` output), C = 1 or 3. Each piece has
its own module in gan/metrics/: references (the real images, the floor's real sample and the untrained ceiling),
detectors (Inception, the MNIST classifier), feature_stats (cached statistics, the Fréchet distance), kid,
inception_score, memorisation and conditional (a class-conditional MNIST model's label accuracy, per-class FCD
and CAS). Reference figures are computed with the same network, counts and settings as the generated score:
`real_test` (real images the generator did not learn from: the floor) and `untrained_generator` (the ceiling).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gancli.gan import data
from gancli.gan.device import select_device
from gancli.gan.errors import EvalError
from gancli.gan.metrics import conditional as cm
from gancli.gan.metrics.detectors import FeatureNetwork, feature_networks
from gancli.gan.metrics.detectors.mnist_classifier import FEATURE_NETWORK_NAME as CLASSIFIER_NETWORK_NAME
from gancli.gan.metrics.detectors.mnist_classifier import check_mnist_images, load_classifier
from gancli.gan.metrics.feature_stats import Log, frechet_distance, set_statistics
from gancli.gan.metrics.inception_score import class_shares, inception_score
from gancli.gan.metrics.kid import kernel_inception_distance
from gancli.gan.metrics.memorisation import memorisation_check
from gancli.gan.metrics.precision_recall import NEAREST_K, Manifold, prdc
from gancli.gan.metrics.references import RealData, load_mnist_nhwc, load_real_data, untrained_generator_images

IMAGE_SETS = ("generated", "real_test", "untrained_generator")
PRDC_METRICS = ("precision", "recall", "density", "coverage")  # gan/metrics/precision_recall.py
UNCACHED_SETS = ("generated",)  # every other set is the same images each time: its statistics are cached
MIN_IMAGES = 10  # fewer images give no meaningful score (10,000 is the usual)


def _score(value: float, std: float | None = None, n: int | None = None) -> dict:
    return {"value": float(value), "std": None if std is None else float(std), "n": n}


def score_with_network(network: FeatureNetwork, image_sets: dict[str, np.ndarray], reference: np.ndarray,
                       kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
                       log: Log | None = None) -> tuple[list[dict], dict | None]:
    """FD, KID, precision, recall, density and coverage (and IS with class shares, for classifiers) of each image
    set against `reference`.

    Returns score rows {metric, feature_network, better, reference_n, <set>: {value, std, n}} and the class
    shares (or None). FD depends on n (fewer images score worse), so every value carries the n it was taken on.
    Statistics of the reference and of every set but "generated" come from the cache when it holds them
    (feature_stats); KID draws its subsets from a seeded pool of at most feature_stats.KID_POOL features, and
    precision/recall/density/coverage (k = 3) compare the same pools (so their n is the pool's, at most 5,000).
    """
    ref = set_statistics(network, reference, "reference", True, seed, log)
    ref_manifold = Manifold.of(ref.kid_features)
    fd, kid, is_, shares = {}, {}, {}, {}
    pr: dict[str, dict] = {name: {} for name in PRDC_METRICS}
    for set_name, images in image_sets.items():
        stats = set_statistics(network, images, set_name.replace("_", " "), set_name not in UNCACHED_SETS, seed, log)
        fd[set_name] = _score(frechet_distance(stats, ref), n=stats.n)
        kid[set_name] = _score(*kernel_inception_distance(stats.kid_features, ref.kid_features, kid_subsets,
                                                                   kid_subset_size, seed), n=stats.n)
        for name, value in prdc(ref_manifold, Manifold.of(stats.kid_features)).items():
            pr[name][set_name] = _score(value, n=len(stats.kid_features))
        if stats.probs is not None:
            is_[set_name] = _score(*inception_score(stats.probs), n=stats.n)
            shares[set_name] = class_shares(stats.probs).tolist()
    common = {"feature_network": network.name, "better": "lower", "reference_n": ref.n}
    rows = [{"metric": network.fd_name, **common, **fd}, {"metric": "KID", **common, **kid}]
    rows += [{"metric": name, "feature_network": network.name, "better": "higher",
              "reference_n": len(ref.kid_features), "k": NEAREST_K, **pr[name]} for name in PRDC_METRICS]
    if not is_:
        return rows, None
    rows.append({"metric": "IS", "feature_network": network.name, "better": "higher", **is_})
    return rows, {"feature_network": network.name, **shares}


def check_images(images: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> None:
    """Raise EvalError unless `images` is uint8 [N >= MIN_IMAGES, H, W, C in (1, 3)], of `shape` [H, W, C] when given."""
    is_nhwc = isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[3] in (1, 3)
    if not is_nhwc or images.dtype != np.uint8:
        got = f"{images.dtype} {list(images.shape)}" if isinstance(images, np.ndarray) else type(images).__name__
        raise EvalError(f"{name} images must be uint8 [N, H, W, C] with C 1 or 3, got {got}")
    if len(images) < MIN_IMAGES:
        raise EvalError(f"{name}: {len(images)} images are too few to score; use -n {MIN_IMAGES} or more "
                        f"(10000 is standard)")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise EvalError(f"{name} images are {list(images.shape[1:])} but the real ones are {list(shape)}")


DEFAULT_WIDTH = 64  # build_generator's default dcgan width, for exports that do not give theirs


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
             download: bool = True, log: Log | None = None, inception: bool = True) -> dict:
    """Load the real data for `dataset`, pick the feature networks that fit, score; the dict `gancli eval` writes.

    `untrained`: images of an untrained generator of the same architecture, as many as `generated`, from
    `untrained_generator_images(..., seed=0)`.
    """
    check_images(generated, "generated")
    real = load_real_data(dataset, data_root, generated.shape[1:], seed, download)
    networks, notes = feature_networks(dataset, inception_weights, select_device(device), inception=inception)
    if real.skipped:  # as training reports them: the real side is smaller than the folder
        notes.append(f"skipped {len(real.skipped)} unreadable real image(s), e.g. {real.skipped[0]}")
        if log:
            log(notes[-1])
    return evaluate_images(generated, untrained, real, networks, notes, seed=seed, log=log)


def evaluate_model(model: str | Path, dataset: str, n: int = 10_000, *, seed: int = 0,
                   data_root: str | Path | None = None, inception_weights: str | Path | None = None,
                   device: str = "auto", precision: str | None = None, log: Log | None = None,
                   inception: bool = True, out: str | Path | None = None, truncation: float = 1.0) -> dict:
    """Score images [0, n) of `seed` from `model` (a shipped model name, a model folder or an exported .onnx file)
    against the real `dataset` ("mnist", "cats" or a folder): what `gancli eval` does, as a dict ready for JSON.

    The images are made through the runtime, exactly as `gancli generate` makes them; the ceiling is an untrained
    generator of the model's architecture and width. The result is `evaluate`'s dict plus a "model" entry (path,
    weights hash, architecture, data set, precision, seed). A class-conditional model makes its classes evenly
    (image i gets class i mod K, as in `gancli generate`) and adds a "conditional" entry: for MNIST, label
    accuracy, per-class FCD and CAS (gan/conditional_metrics.py); elsewhere None, with a note. Bad input raises
    a GancliError subclass (EvalError, DataError, GenerateError), before any work (eval_checks). out: also write
    the result there as JSON. truncation: psi of the generated images' z, as `gancli generate --truncation`
    (the untrained ceiling is never truncated).
    """
    from gancli.gan.metrics.eval_checks import check_eval_arguments
    from gancli.runtime.files import write_text_atomic
    from gancli.runtime.generate import check_truncation, generate_array
    from gancli.runtime.models import resolve_model
    from gancli.runtime.session import GeneratorSession

    if n < MIN_IMAGES:
        raise EvalError(f"-n {n} is too few to score; pass at least {MIN_IMAGES} (10,000 is the usual)")
    check_truncation(truncation)
    path = resolve_model(model, precision)
    check_eval_arguments(GeneratorSession(path, device="cpu").metadata, path, dataset, seed, device, out,
                         inception_weights)
    generated, labels, meta = generate_array(path, n, seed=seed, device=device, precision=precision,
                                             return_labels=True, truncation=truncation)
    untrained = untrained_generator_images(meta.arch, meta.latent_dim, meta.channels, meta.img_size, n,
                                           width=meta.width or DEFAULT_WIDTH, depth=meta.g_depth or 1)
    result = evaluate(generated, untrained, dataset, data_root=str(data_root) if data_root is not None else None,
                      inception_weights=inception_weights, device=device, seed=seed, log=log, inception=inception)
    if meta.width is None and meta.arch == "dcgan":
        result["notes"].append(f"the model's metadata does not give its width (an export of gancli <= 0.2), so the "
                               f"untrained ceiling is a width-{DEFAULT_WIDTH} generator; re-export it for its own")
    result["model"] = {"path": str(path), "weights_sha256": meta.weights_sha256, "arch": meta.arch,
                       "dataset": meta.dataset, "precision": meta.precision, "seed": seed,
                       "truncation_psi": truncation}
    if meta.conditional:
        result["model"]["class_names"] = list(meta.class_names)
        result["conditional"] = evaluate_conditional(generated, labels, meta.class_names, dataset, data_root, device,
                                                     seed, result["notes"], log)
    if out is not None:
        write_text_atomic(out, json.dumps(result, indent=2))
    return result


def evaluate_conditional(generated: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], dataset: str,
                         data_root: str | Path | None, device: str, seed: int, notes: list[str],
                         log: Log | None = None) -> dict | None:
    """gan/conditional_metrics.py's scores of a conditional MNIST model's images with their labels; None (and a
    note) for another data set or classes that are not the ten digits."""
    if dataset != "mnist" or sorted(class_names) != cm.DIGITS:
        notes.append("label accuracy, per-class FCD and CAS need the MNIST classifier and a model whose classes are "
                     "the digits 0-9; not computed for this model")
        return None
    root = data.resolve_data_root(str(data_root) if data_root is not None else None)
    torch_device = select_device(device)
    classifier, spec = load_classifier(device=torch_device)
    real_train = cm.LabelledImages(*load_mnist_nhwc(root, train=True))
    real_test = cm.LabelledImages(*load_mnist_nhwc(root, train=False))
    generated_set = cm.LabelledImages(generated, cm.digit_labels(labels, class_names))
    return cm.conditional_scores(generated_set, real_train, real_test, classifier, spec, class_names, seed=seed,
                                 device=torch_device, log=log)
