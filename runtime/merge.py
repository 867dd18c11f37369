"""Merge the manifests of M shard jobs (`manifest-K-of-M.jsonl`) into one `manifest.jsonl`.

Shards are the unit of scale: M processes, GPUs or cluster jobs each make `--shard K/M` of one set
into the same folder (or folders copied together afterwards). Merging proves the union is the
whole set: every index in [0, N) listed exactly once, by exactly one shard, with one seed, and
every listed file present.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gancli.runtime.errors import GenerateError
from gancli.runtime.writer import write_bytes_atomic

SHARD_MANIFEST = re.compile(r"^manifest-(\d+)-of-(\d+)\.jsonl$")
MERGED_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class MergeResult:
    path: Path
    images: int
    shards: int
    seed: int


def shard_manifests(out_dir: Path) -> dict[int, Path]:
    """{K: path} of one M; several Ms in one folder would mix two different splits."""
    found: dict[int, dict[int, Path]] = {}
    for path in out_dir.glob("manifest-*-of-*.jsonl"):
        if match := SHARD_MANIFEST.match(path.name):
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = path
    if not found:
        raise GenerateError(f"{out_dir} holds no manifest-K-of-M.jsonl; run `gancli generate --shard K/M --out {out_dir}` first")
    if len(found) > 1:
        raise GenerateError(f"{out_dir} holds shard manifests of several splits (M = {sorted(found)}); keep one split per folder")
    (m, by_k), = found.items()
    missing = sorted(set(range(m)) - set(by_k))
    if missing:
        raise GenerateError(f"{out_dir} lacks the manifests of shards {', '.join(f'{k}/{m}' for k in missing)}; "
                            f"run those shards (or copy their output here) before merging")
    return by_k


def merge_manifests(out_dir: str | Path, n: int) -> MergeResult:
    """Check the shards of `out_dir` make images [0, n) exactly once; write the merged manifest atomically."""
    out_dir = Path(out_dir)
    by_k = shard_manifests(out_dir)
    owner = np.full(n, -1, dtype=np.int64)  # which shard listed each index
    lines: list[str] = [""] * n
    seeds: set[int] = set()
    present: set[str] = set()
    for k, path in sorted(by_k.items()):
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            entry = json.loads(raw)
            index = entry["index"]
            if not 0 <= index < n:
                raise GenerateError(f"{path.name} line {number} lists index {index}, outside -n {n}; pass the -n the shards ran with")
            if owner[index] >= 0:
                raise GenerateError(f"index {index} is listed by shard {owner[index]} and shard {k}; shards must be disjoint")
            if entry["file"] not in present:  # npz files hold 1,000 images: stat each file once
                if not (out_dir / entry["file"]).is_file():
                    raise GenerateError(f"{path.name} lists {entry['file']}, which is missing; rerun shard {k}/{len(by_k)} to make it")
                present.add(entry["file"])
            owner[index] = k
            seeds.add(entry["seed"])
            lines[index] = raw + "\n"
    missing = np.flatnonzero(owner < 0)
    if missing.size:
        raise GenerateError(f"{missing.size} of {n} images are in no shard's manifest (first: index {missing[0]}); "
                            f"rerun the shards that own them, which makes only the missing images")
    if len(seeds) != 1:
        raise GenerateError(f"the shards used different seeds ({sorted(seeds)}); one set needs one --seed")
    path = out_dir / MERGED_NAME
    write_bytes_atomic(path, "".join(lines).encode())
    return MergeResult(path, n, len(by_k), seeds.pop())
