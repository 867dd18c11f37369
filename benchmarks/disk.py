"""Waiting for the disk to settle before file-bound timings."""
from __future__ import annotations

import time
from pathlib import Path

# ext4 with online discard (this disk) creates files ~10x slower for a minute or two after a large
# delete (an earlier benchmark, a test run): file-bound parts would then measure the disk's state.
SETTLED_FILES_PER_SECOND = 8_000
SETTLE_PROBE_FILES = 1_000


def wait_for_settled_disk(work: Path, timeout: float = 180.0) -> float:
    """Create small files until the disk makes them at a settled rate (or time runs out); the rate."""
    started, attempt = time.perf_counter(), 0
    while True:
        folder = work / f"settle{attempt}"
        folder.mkdir()
        t = time.perf_counter()
        for i in range(SETTLE_PROBE_FILES):
            (folder / f"{i}.bin").write_bytes(b"x" * 200)
        rate = SETTLE_PROBE_FILES / (time.perf_counter() - t)
        if rate >= SETTLED_FILES_PER_SECOND or time.perf_counter() - started > timeout:
            return rate
        print(f"disk makes {rate:,.0f} files/s (a recent large delete?); waiting for it to settle", flush=True)
        time.sleep(10)
        attempt += 1
