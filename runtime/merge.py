"""Merge the manifests of M shard jobs (`manifest-K-of-M.jsonl`) into one `manifest.jsonl`.

Shards are the unit of scale: M processes, GPUs or cluster jobs each make `--shard K/M` of one set
into the same folder (or folders copied together afterwards). Merging proves the union is the
whole set: every index in [0, N) listed exactly once, by exactly one shard, with one seed, and
every listed file present. The files are where each manifest line says (flat or imagefolder
layout alike); for a class-conditional model every line must carry the label that the folder's
generate.json gives its index (labels[i % len(labels)]), so shards run with different --class
cannot be merged into one set.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gancli.runtime.errors import GenerateError
from gancli.runtime.writer import HEADER_NAME, write_bytes_atomic

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


def header_labels(out_dir: Path) -> list[int] | None:
    """The label cycle of the set in `out_dir` (generate.json's "labels"); None when unconditional or unknown."""
    try:
        labels = json.loads((out_dir / HEADER_NAME).read_text()).get("labels")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return labels if isinstance(labels, list) and labels and all(isinstance(x, int) for x in labels) else None


def merge_manifests(out_dir: str | Path, n: int) -> MergeResult:
    """Check the shards of `out_dir` make images [0, n) exactly once; write the merged manifest atomically."""
    out_dir = Path(out_dir)
    by_k = shard_manifests(out_dir)
    labels = header_labels(out_dir)
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
            if labels is not None and entry.get("label") != labels[index % len(labels)]:
                raise GenerateError(f"{path.name} line {number} gives image {index} label {entry.get('label')}, but "
                                    f"{HEADER_NAME} gives it {labels[index % len(labels)]}; the shards used different "
                                    f"--class: rerun shard {k}/{len(by_k)} with the --class of the others")
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
