"""CPU per image file for the two atomic ways of runtime/files.py, through runtime.writer: O_TMPFILE + link
against temp name + rename.

Writes the same small PNG (a 28x28 digit, ~300 bytes: where per-file cost matters most) N times
each way into fresh folders, interleaved for --rounds, and prints medians and their ratio.

  python benchmarks/bench_file_writes.py -n 5000 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from disk import SETTLED_FILES_PER_SECOND, wait_for_settled_disk  # benchmarks/disk.py, beside this script
from gancli.runtime import files, writer


def cpu_per_file(write, folder: Path, data: np.ndarray, n: int) -> float:
    """Microseconds of this process's CPU (user + system) per file."""
    folder.mkdir()
    names = [str(folder / f"{i:09d}.png") for i in range(n)]
    started = time.process_time()
    for name in names:
        write(name, data)
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, help="where files are written (default: a temp folder on /tmp's disk)")
    args = parser.parse_args()
    if not files._anonymous_files.usable:
        raise SystemExit("O_TMPFILE is not available here: gancli writes with temp name + rename only")
    digit = (np.random.default_rng(0).random((28, 28, 1)) > 0.8).astype(np.uint8) * 255
    data = writer.encode(digit, "png")
    ways = {"O_TMPFILE + link": writer.write_bytes_atomic, "temp + rename": writer.write_bytes_renamed}
    times: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(prefix="bench-file-writes-", dir=args.work_dir) as work:
        rate = wait_for_settled_disk(Path(work))
        print(f"disk: {rate:,.0f} small files/s" + ("" if rate >= SETTLED_FILES_PER_SECOND else
                                                    " (NOT settled: the figures below measure that)"), flush=True)
        for r in range(args.rounds):
            for i, (name, write) in enumerate(ways.items()):
                times[name].append(cpu_per_file(write, Path(work) / f"{r}-{i}", data, args.n))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} µs" for k, v in times.items()), flush=True)
        if not files._anonymous_files.usable:
            raise SystemExit("O_TMPFILE stopped working on this file system mid-run; its figures are not valid")
        medians = {name: statistics.median(v) for name, v in times.items()}
        for name, value in medians.items():
            print(f"{name:18s} {value:6.1f} µs CPU per {len(data)}-byte file (median of {args.rounds})")
        print(f"temp + rename / O_TMPFILE + link = {medians['temp + rename'] / medians['O_TMPFILE + link']:.2f}")
        print(f"removing {work} ...", flush=True)


if __name__ == "__main__":
    main()
