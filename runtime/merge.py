"""Merge the manifests of M shard jobs (`manifest-K-of-M.jsonl`) into one `manifest.jsonl`.

Shards are the unit of scale: M processes, GPUs or cluster jobs each make `--shard K/M` of one set
into the same folder (or folders copied together afterwards). Merging proves the union is the
whole set: every index in [0, N) listed exactly once, by exactly one shard, with one seed, and
every listed file present. The files are where each manifest line says (flat or imagefolder
layout alike); for a class-conditional model every line must carry the label that the folder's
generate.json gives its index (labels[i % len(labels)]), so shards run with different --class
cannot be merged into one set.

In bounded memory for any N: a first pass streams each manifest, checks every line and notes where
the index stops rising (a manifest is a few runs of rising indices: the rebuild at a run's start, then
what that run appended); a second pass merges all those runs by index (heapq.merge over byte ranges
read with pread), which finds a doubled or missing index in one walk and writes the merged manifest as
it goes, atomically. Shards still being written (their lock is held) are refused.
"""
from __future__ import annotations

import functools
import heapq
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gancli.runtime import files
from gancli.runtime.errors import GenerateError
from gancli.runtime.faults import FolderLock, shard_busy
from gancli.runtime.manifest import header_differences, parse_line, read_entries, read_header, shard_header_name
from gancli.runtime.writer import HEADER_NAME, MAX_IMAGES, atomic_file

SHARD_MANIFEST = re.compile(r"^manifest-(\d+)-of-(\d+)\.jsonl$")
MERGED_NAME = "manifest.jsonl"
MAX_RUNS = 4096  # rising runs merged at once (each holds a READ_BLOCK buffer)
READ_BLOCK = 1 << 14
MAX_SEEDS_SHOWN = 5


@dataclass(frozen=True)
class MergeResult:
    path: Path
    images: int
    shards: int
    seed: int


def shard_manifests(out_dir: Path) -> dict[int, Path]:
    """{K: path} of one M; several Ms in one folder would mix two different splits."""
    found: dict[int, dict[int, Path]] = {}
    try:
        names = [entry.name for entry in os.scandir(out_dir) if entry.name.startswith("manifest-")]
    except (FileNotFoundError, NotADirectoryError):
        raise GenerateError(f"--out {out_dir} is not a folder; pass the folder the shards wrote to") from None
    except OSError as e:
        raise GenerateError(f"cannot read --out {out_dir} ({e.strerror or e})") from e
    for name in names:
        if match := SHARD_MANIFEST.match(name):
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = out_dir / name
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
    """The label cycle of the set in `out_dir` (generate.json's "labels"); None when unconditional or when
    there is no generate.json (shards copied together without it). A damaged one is one GenerateError."""
    header = read_header(out_dir)
    return header.get("labels") if header is not None else None


def check_one_model(out_dir: Path, m: int) -> None:
    """Every shard's own record (generate-K-of-M.json) names the same model file, seed, format, layout, classes
    and truncation as shard 0's and as the folder's generate.json: shards copied together from runs of different
    models are refused, not merged into one set."""
    def describe(classes: list[str] | None) -> str:
        return "no classes" if classes is None else f"classes {', '.join(classes)}"

    first = None
    for k in range(m):
        name = shard_header_name(k, m)
        record = read_header(out_dir, name)
        if record is None:
            raise GenerateError(f"{out_dir} has no {name}, shard {k}/{m}'s record of the model and settings it ran "
                                f"with; rerun shard {k}/{m} with the shards' settings (it writes the record, and makes "
                                f"only the images its manifest does not list)")
        if first is None:
            first = record
        elif problems := header_differences(record, first, describe):
            raise GenerateError(f"shard {k}/{m} is not of shard 0/{m}'s set: its {name} says it holds images "
                                f"{problems[0].split(';')[0].replace(' vs ', ' where shard 0 has ')}; one set needs "
                                f"one model and one set of settings: rerun shard {k}/{m} with shard 0's")
    header = read_header(out_dir)
    if header is not None and first is not None and (problems := header_differences(header, first, describe)):
        raise GenerateError(f"{out_dir / HEADER_NAME} and the shards' records differ (generate.json holds images "
                            f"{problems[0].split(';')[0]}); copy the shards' generate.json back, or rerun the shards")


def _runs(path: Path, k: int, m: int, n: int, labels: list[int] | None, seeds: set[int]) -> list[tuple[int, int]]:
    """Check every line of shard k's manifest; return the byte ranges of its rising runs of indices."""
    out_dir = path.parent
    rerun = f"rerun shard {k}/{m} (gancli generate --shard {k}/{m} with the shards' other settings) to rebuild it"
    present = functools.lru_cache(maxsize=256)(lambda file: (out_dir / file).is_file())  # an npz holds 1,000
    runs: list[tuple[int, int]] = []
    run_start = end = None
    previous = -1
    for offset, number, raw, entry in read_entries(path, rerun):
        index = entry.index
        if index >= n:
            raise GenerateError(f"{path.name} line {number} lists index {index}, outside -n {n}; pass the -n the shards ran with")
        if not present(entry.file):
            raise GenerateError(f"{path.name} lists {entry.file}, which is missing; rerun shard {k}/{m} to make it")
        if labels is not None and entry.label != labels[index % len(labels)]:
            raise GenerateError(f"{path.name} line {number} gives image {index} label {entry.label}, but "
                                f"{HEADER_NAME} gives it {labels[index % len(labels)]}; the shards used different "
                                f"--class: rerun shard {k}/{m} with the --class of the others")
        if len(seeds) <= MAX_SEEDS_SHOWN:
            seeds.add(entry.seed)
        if run_start is None or index <= previous or offset != end:  # a new run: indices fell, or a line was skipped
            if run_start is not None:
                runs.append((run_start, end))
            run_start = offset
        previous = index
        end = offset + len(raw) + 1
    if run_start is not None:
        runs.append((run_start, end))
    return runs


def _read_lines(fd: int, start: int, end: int) -> Iterator[bytes]:
    """The lines (without newline) in bytes [start, end) of a file, READ_BLOCK at a time."""
    rest = b""
    while start < end:
        block = os.pread(fd, min(READ_BLOCK, end - start), start)
        if not block:
            break
        start += len(block)
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _keyed(fd: int, start: int, end: int, k: int, path: Path) -> Iterator[tuple[int, int, bytes]]:
    for raw in _read_lines(fd, start, end):
        if (entry := parse_line(raw)) is None:
            raise GenerateError(f"{path} changed while it was merged (a shard ran again?); merge again once no shard runs")
        yield entry.index, k, raw


def merge_manifests(out_dir: str | Path, n: int) -> MergeResult:
    """Check the shards of `out_dir` make images [0, n) exactly once; write the merged manifest atomically."""
    out_dir = Path(out_dir)
    if not 0 < n <= MAX_IMAGES:
        raise GenerateError(f"-n must be a number of images from 1 to {MAX_IMAGES:,}, not {n:,}")
    by_k = shard_manifests(out_dir)
    m = len(by_k)
    for k, path in sorted(by_k.items()):
        if holder := shard_busy(path):
            raise GenerateError(f"shard {k}/{m} is still being written by {holder}; wait for it to finish, then merge")
    check_one_model(out_dir, m)
    labels = header_labels(out_dir)
    with FolderLock(out_dir / MERGED_NAME, "gancli merge"):
        seeds: set[int] = set()
        runs = {k: _runs(path, k, m, n, labels, seeds) for k, path in sorted(by_k.items())}
        if sum(len(r) for r in runs.values()) > MAX_RUNS:
            worst = max(runs, key=lambda k: len(runs[k]))
            raise GenerateError(f"{by_k[worst].name} is in {len(runs[worst]):,} pieces out of index order, too many to "
                                f"merge in bounded memory; rerun shard {worst}/{m}, which rewrites it in order")
        if len(seeds) != 1:
            shown = ", ".join(map(str, sorted(seeds)[:MAX_SEEDS_SHOWN])) + (", ..." if len(seeds) > MAX_SEEDS_SHOWN else "")
            raise GenerateError(f"the shards used different seeds ({shown}); one set needs one --seed")
        path = out_dir / MERGED_NAME
        fds = {k: files.open_regular(p, os.O_RDONLY) for k, p in by_k.items()}
        try:
            with atomic_file(path) as dst:
                _walk(heapq.merge(*(_keyed(fds[k], a, b, k, by_k[k]) for k, pieces in runs.items() for a, b in pieces)), n, m, dst)
        finally:
            for fd in fds.values():
                os.close(fd)
    return MergeResult(path, n, m, seeds.pop())


def _walk(merged: Iterator[tuple[int, int, bytes]], n: int, m: int, dst) -> None:  # noqa: ANN001 (a binary file)
    """Every index once, in order: write the lines, or raise naming the doubled or the missing indices."""
    expected, owner = 0, -1
    missing, first_missing = 0, None
    for index, k, raw in merged:
        if index < expected:
            raise GenerateError(f"index {index} is listed by shard {owner} and shard {k}"
                                f"{' (twice)' if owner == k else ''}; shards must be disjoint: "
                                f"rerun shard {k}/{m}, which rebuilds its manifest")
        if index > expected:
            missing += index - expected
            first_missing = expected if first_missing is None else first_missing
        elif not missing:
            dst.write(raw + b"\n")
        expected, owner = index + 1, k
    if expected < n:
        missing += n - expected
        first_missing = expected if first_missing is None else first_missing
    if missing:
        raise GenerateError(f"{missing:,} of {n:,} images are in no shard's manifest (first: index {first_missing}); "
                            f"rerun the shards that own them, which makes only the missing images")
