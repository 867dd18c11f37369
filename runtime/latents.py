"""Per-index latent vectors: z for image i depends only on (seed, i).

So image i is the same whatever the batch size, the shard, a resume or the device (stylegan's
per-image seeds, but batched). Each index owns a fixed slice of one Philox-4x64 counter stream
keyed by the seed: a counter-based generator jumps to any position in O(1), so a run of
consecutive indices costs one `random_raw` call and one vectorised Box-Muller transform.

`random_raw` is used because numpy keeps bit generators' raw streams stable across versions,
while `Generator` methods (standard_normal, random) may change their algorithm. A Generator per
index (`default_rng([seed, i])`) would cost ~30 µs per image here, about what the whole MLP
generator spends per image; this costs 2-3 µs at batch 256-1,000 (measured).

Truncation (the "truncation trick" of BigGAN and StyleGAN) trades variety for typical-looking
images: z is pulled toward its mean, 0, as z' = psi * z with 0 < psi <= 1 (1: off). It is applied
here, to each row alone, so image i still depends only on (seed, i, its label, psi).
"""
from __future__ import annotations

import math

import numpy as np

WORDS_PER_BLOCK = 4  # Philox-4x64 yields four 64-bit words per counter increment
MAX_SEED = (1 << 128) - 1  # Philox's key is 128 bits
NO_TRUNCATION = 1.0
_TWO_POW_MINUS_32 = 1.0 / (1 << 32)
REDRAW_SHIFT = 192  # redraw r of truncated resampling starts its counters at r << 192 (the counter has 256 bits)
MAX_REDRAWS = 10_000


def blocks_per_index(latent_dim: int) -> int:
    """Counter blocks reserved per index: each 64-bit word gives two normals (one Box-Muller pair)."""
    words = -(-latent_dim // 2)
    return -(-words // WORDS_PER_BLOCK)


def _normals_from_words(words: np.ndarray) -> np.ndarray:
    """Box-Muller: uint64 words [n, k] -> standard normals float32 [n, 2k].

    The low 32 bits give u1 in (0, 1] (so the log is finite; tails reach 6.7 sigma), the high 32
    bits give the angle. The log runs in float64 (fast and exact enough); cos and sin run in
    float32, where numpy has SIMD kernels (float64 cos is ~15x slower here).
    """
    u1 = ((words & np.uint64(0xFFFFFFFF)) + np.uint64(1)) * _TWO_POW_MINUS_32
    u2 = (words >> np.uint64(32)) * _TWO_POW_MINUS_32
    radius = np.sqrt(-2.0 * np.log(u1)).astype(np.float32)
    angle = (2.0 * np.pi * u2).astype(np.float32)
    out = np.empty((words.shape[0], 2 * words.shape[1]), dtype=np.float32)
    out[:, 0::2] = radius * np.cos(angle)
    out[:, 1::2] = radius * np.sin(angle)
    return out


def contiguous_runs(indices: np.ndarray) -> list[tuple[int, int, int]]:
    """(position in indices, first index, length) of each run of consecutive indices."""
    if len(indices) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(indices)]))
    return [(int(s), int(indices[s]), int(e - s)) for s, e in zip(starts, ends)]


def is_truncation(psi: float) -> bool:
    """psi in (0, 1]: a pull toward the mean (NaN is not)."""
    return 0.0 < psi <= 1.0


def _standard_normals(seed: int, indices: np.ndarray, latent_dim: int, draw: int = 0) -> np.ndarray:
    """Standard normals [len(indices), latent_dim] float32; row k from index indices[k]'s own counter blocks.

    `draw` 0 is z itself; draw r >= 1 (truncated resampling's r-th redraw) reads the same per-index blocks with the
    counter's top 64-bit word set to r, a part of the 2**256 stream that draw 0 never reaches.
    """
    blocks = blocks_per_index(latent_dim)
    words_per_index = blocks * WORDS_PER_BLOCK
    words_used = -(-latent_dim // 2)
    z = np.empty((len(indices), latent_dim), dtype=np.float32)
    for pos, first, length in contiguous_runs(indices):
        # index i starts at counter block i * blocks, whatever run or batch it is drawn in
        stream = np.random.Philox(key=seed, counter=(draw << REDRAW_SHIFT) + first * blocks)
        words = stream.random_raw(length * words_per_index).reshape(length, words_per_index)
        z[pos:pos + length] = _normals_from_words(words[:, :words_used])[:, :latent_dim]
    return z


def latents(seed: int, indices: np.ndarray | list[int], latent_dim: int,
            truncation: float = NO_TRUNCATION) -> np.ndarray:
    """z [len(indices), latent_dim] float32, standard normal times `truncation` (psi in (0, 1]; 1: off);
    row k depends only on (seed, indices[k], psi)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**128), not {seed}")
    if not is_truncation(truncation):
        raise ValueError(f"truncation must be in (0, 1], not {truncation}")
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) and indices.min() < 0:
        raise ValueError("image indices must be >= 0")
    z = _standard_normals(seed, indices, latent_dim)
    if truncation != NO_TRUNCATION:
        z *= np.float32(truncation)  # psi is rounded to float32 once: the same z on every path
    return z


def resampling_threshold(psi: float) -> float:
    """The t for which a standard normal truncated to [-t, t] has standard deviation psi (inf for psi = 1).

    So both truncation rules give z components of the same spread at the same psi. The truncated variance,
    1 - 2 t phi(t) / (2 Phi(t) - 1), rises from t²/3 (t -> 0) to 1; bisection finds t to ~1e-12.
    """
    if not is_truncation(psi):
        raise ValueError(f"truncation must be in (0, 1], not {psi}")
    if psi == NO_TRUNCATION:
        return math.inf

    def std(t: float) -> float:
        mass = math.erf(t / math.sqrt(2))  # 2 Phi(t) - 1
        return math.sqrt(max(1 - 2 * t * math.exp(-t * t / 2) / math.sqrt(2 * math.pi) / mass, 0.0))

    low, high = 0.0, 40.0
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if std(mid) < psi else (low, mid)
    return (low + high) / 2


def resampled_latents(seed: int, indices: np.ndarray | list[int], latent_dim: int, psi: float) -> np.ndarray:
    """BigGAN's truncation (Brock et al., 2019): every component of z with |z_j| > t is drawn again until it falls
    inside, t = resampling_threshold(psi). The redraws come from index i's own counter blocks (draw r = 1, 2, ...),
    so row k still depends only on (seed, indices[k], psi). Measured against the pull to the mean in
    benchmarks/bench_truncation.py."""
    z = latents(seed, indices, latent_dim)
    t = np.float32(resampling_threshold(psi))
    indices = np.asarray(indices, dtype=np.int64)
    for draw in range(1, MAX_REDRAWS + 1):
        outside = np.abs(z) > t
        rows = np.flatnonzero(outside.any(axis=1))
        if len(rows) == 0:
            return z
        fresh = _standard_normals(seed, indices[rows], latent_dim, draw)
        z[rows] = np.where(outside[rows], fresh, z[rows])
    raise ValueError(f"truncation {psi}: components still outside +-{t:.3g} after {MAX_REDRAWS} redraws")
