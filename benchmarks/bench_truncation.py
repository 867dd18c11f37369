"""Which truncation rule trades FID for precision better: the pull toward the mean (z' = psi z, StyleGAN's way on
a Gaussian z) or BigGAN's truncated resampling (every |z_j| above a threshold drawn again; runtime/latents.py
`resampled_latents`, whose threshold gives z the same spread psi). Both at each psi, on shipped unconditional
models, scored as `gancli eval` scores: FD against the real reference (the same cached statistics) and improved
precision / recall, density and coverage (k = 3) of the generated features against the reference's pool.

Images 0..n-1 of seed 0; the same z at psi = 1 for both rules. MNIST is scored with the shipped classifier's
features (FCD; fast), the cats with the standard TF Inception (FID; about 8 images/s on one core, so keep n small
there). FD at a small n is biased upward, the same way for both rules: compare rows of the same n.

  GANCLI_DATA_ROOT=../shared/datasets python benchmarks/bench_truncation.py --model mnist-dcgan -n 5000
  GANCLI_DATA_ROOT=../shared/datasets python benchmarks/bench_truncation.py --model cats-dcgan -n 1000 \
      --psi 0.5,0.7,1.0
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from gancli.gan.metrics.detectors import mnist_classifier_network, standard_inception_network
from gancli.gan.metrics.feature_stats import FeatureStats, frechet_distance, set_statistics
from gancli.gan.metrics.precision_recall import Manifold, prdc
from gancli.gan.metrics.references import load_real_data
from gancli.runtime.latents import latents, resampled_latents
from gancli.runtime.models import resolve_model
from gancli.runtime.session import GeneratorSession

RULES = {"pull to mean": latents, "resampling": resampled_latents}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist-dcgan", help="a shipped unconditional model")
    parser.add_argument("-n", type=int, default=2000, help="generated images per point")
    parser.add_argument("--psi", default="0.5,0.6,0.7,0.8,0.9,1.0", help="comma-separated psi values")
    parser.add_argument("--batch", type=int, default=250)
    args = parser.parse_args()
    psis = sorted({float(p) for p in args.psi.split(",")})

    session = GeneratorSession(resolve_model(args.model), device="cpu", threads=1)
    meta = session.metadata
    if meta.conditional:
        parser.error(f"{args.model} is class-conditional; pick an unconditional model")
    dataset = meta.dataset
    network = mnist_classifier_network() if dataset == "mnist" else standard_inception_network("cpu", threads=1)
    real = load_real_data(dataset, None, (meta.img_size, meta.img_size, meta.channels))
    ref = set_statistics(network, real.reference, "reference", log=print)
    ref_manifold = Manifold.of(ref.kid_features)
    print(f"{args.model}: {network.name} features, n = {args.n:,} generated per point against the reference "
          f"(FD: all {ref.n:,} images; PRDC: its pool of {len(ref.kid_features):,}, k = 3)")
    print(f"| rule | psi | {network.fd_name} | precision | recall | density | coverage |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    indices = np.arange(args.n)
    for rule, make_z in RULES.items():
        for psi in psis:
            if psi == 1.0 and rule != "pull to mean":
                continue  # psi = 1 is no truncation under either rule: the same z, the same row
            start = time.perf_counter()
            z = make_z(0, indices, meta.latent_dim, psi)
            images = np.concatenate([session.images(z[k:k + args.batch]) for k in range(0, args.n, args.batch)])
            features, _ = network.extract(images)
            stats = FeatureStats.from_features(features)
            scores = prdc(ref_manifold, Manifold.of(stats.kid_features))
            print(f"| {rule if psi < 1 else 'none'} | {psi:g} | {frechet_distance(stats, ref):.3f} | "
                  f"{scores['precision']:.4f} | {scores['recall']:.4f} | {scores['density']:.4f} | "
                  f"{scores['coverage']:.4f} |  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
