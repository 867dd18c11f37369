"""Score generated images against the real data set: FD and KID, IS and class shares where a classifier fits,
reference figures beside every score, and a memorisation check. What `gancli eval` calls: `evaluate_model`.

Images everywhere are uint8 [N, H, W, C] (NHWC, the runtime's `uint8_nhwc` output), C = 1 or 3. This module
only puts the pieces together, each of which has its own module:
- gan/real_data.py: the real images (reference, real test sample of the floor, training images);
- gan/untrained.py: the untrained generator's images (the ceiling);
- gan/feature_networks.py: Inception (weights from disk, gan/fid_inception.py) and the MNIST classifier;
- gan/scoring.py: FD, KID, IS and class shares of each image set with one network (math in gan/metrics.py);
- gan/memorisation.py: nearest training image of generated images, in pixel space;
- gan/conditional_metrics.py: a class-conditional MNIST model's label accuracy, per-class FCD and CAS;
- gan/targets.py: the project's own targets for the shipped MNIST generator (not part of any result here).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gancli.gan.classifier import FEATURE_NETWORK_NAME as CLASSIFIER_NETWORK_NAME
from gancli.gan.classifier import check_mnist_images, load_classifier
from gancli.gan.distributed import select_device
from gancli.gan.errors import EvalError
from gancli.gan.feature_networks import FeatureNetwork, feature_networks
from gancli.gan.memorisation import memorisation_check
from gancli.gan.real_data import RealData, load_mnist_nhwc, load_real_data
from gancli.gan.scoring import MIN_IMAGES, Log, check_images, score_with_network
from gancli.gan.untrained import untrained_generator_images

DEFAULT_WIDTH = 64  # build_generator's default dcgan width, for models with no generator.json beside them


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
    return evaluate_images(generated, untrained, real, networks, notes, seed=seed, log=log)


def model_width(model_path: str | Path) -> int:
    """The dcgan width from generator.json beside an exported model (64, the default, when there is none), so that
    the untrained generator of the ceiling has the size of the model scored."""
    spec = Path(model_path).parent / "generator.json"
    return json.loads(spec.read_text()).get("width", DEFAULT_WIDTH) if spec.is_file() else DEFAULT_WIDTH


def evaluate_model(model: str | Path, dataset: str, n: int = 10_000, *, seed: int = 0,
                   data_root: str | Path | None = None, inception_weights: str | Path | None = None,
                   device: str = "auto", precision: str | None = None, log: Log | None = None,
                   inception: bool = True) -> dict:
    """Score images [0, n) of `seed` from `model` (a shipped model name, a model folder or an exported .onnx file)
    against the real `dataset` ("mnist", "cats" or a folder): what `gancli eval` does, as a dict ready for JSON.

    The images are made through the runtime, exactly as `gancli generate` makes them; the ceiling is an untrained
    generator of the model's architecture and width. The result is `evaluate`'s dict plus a "model" entry (path,
    weights hash, architecture, data set, precision, seed). A class-conditional model makes its classes evenly
    (image i gets class i mod K, as in `gancli generate`) and adds a "conditional" entry: for MNIST, label
    accuracy, per-class FCD and CAS (gan/conditional_metrics.py); elsewhere None, with a note. Bad input raises
    a GancliError subclass (EvalError, DataError, GenerateError).
    """
    from gancli.runtime.generate import generate_array, resolve_model

    if n < MIN_IMAGES:
        raise EvalError(f"-n {n} is too few to score; pass at least {MIN_IMAGES} (10,000 is the usual)")
    path = resolve_model(model, precision)
    generated, labels, meta = generate_array(path, n, seed=seed, device=device, precision=precision,
                                             return_labels=True)
    untrained = untrained_generator_images(meta.arch, meta.latent_dim, meta.channels, meta.img_size, n,
                                           width=model_width(path))
    result = evaluate(generated, untrained, dataset, data_root=str(data_root) if data_root is not None else None,
                      inception_weights=inception_weights, device=device, seed=seed, log=log, inception=inception)
    result["model"] = {"path": str(path), "weights_sha256": meta.weights_sha256, "arch": meta.arch,
                       "dataset": meta.dataset, "precision": meta.precision, "seed": seed}
    if meta.conditional:
        result["model"]["class_names"] = list(meta.class_names)
        result["conditional"] = evaluate_conditional(generated, labels, meta.class_names, dataset, data_root, device,
                                                     seed, result["notes"], log)
    return result


def evaluate_conditional(generated: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], dataset: str,
                         data_root: str | Path | None, device: str, seed: int, notes: list[str],
                         log: Log | None = None) -> dict | None:
    """gan/conditional_metrics.py's scores of a conditional MNIST model's images with their labels; None (and a
    note) for another data set or classes that are not the ten digits."""
    from gancli.gan import conditional_metrics as cm
    from gancli.gan import data

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
