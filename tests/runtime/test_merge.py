"""gancli merge (runtime/merge.py) in bounded memory and on damaged or busy shards: a million-line merge holds
flat memory whatever the order lines were appended in; a doubled index within one shard, a cut-off or
garbage line, and a shard still being written are each one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gancli.cli import app
from gancli.runtime.errors import GenerateError
from gancli.runtime.faults import FolderLock
from gancli.runtime.merge import merge_manifests
from gancli.runtime.writer import NPZ_CHUNK, relpath_for

REPO_ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def npz_lines(indices) -> str:  # noqa: ANN001
    return "".join(f'{{"index": {i}, "seed": 3, "file": "{relpath_for(i, "npz")}", "item": {i % NPZ_CHUNK}}}\n'
                   for i in indices)


SHARD_RECORD = {"header_version": 2, "model_sha256": "0" * 64, "seed": 3, "format": "npz", "layout": "flat",
                "classes": None, "labels": None, "truncation_psi": 1.0}


def sharded_folder(out: Path, n: int) -> None:
    """Two shard manifests of an npz set of n images, as gancli writes them: shard 0 was stopped halfway and
    resumed (two rising runs: what the first run made, then the rest appended), with placeholder chunk files
    (merge checks that each listed file is there, not what it holds)."""
    out.mkdir(parents=True, exist_ok=True)
    half = n // 2
    (out / "manifest-0-of-2.jsonl").write_text(npz_lines(range(half // 2, half)) + npz_lines(range(half // 2)))
    (out / "manifest-1-of-2.jsonl").write_text(npz_lines(range(half, n)))
    for k in range(2):  # each shard's own record of its model and settings (generate-K-of-M.json)
        (out / f"generate-{k}-of-2.json").write_text(json.dumps(SHARD_RECORD))
    for first in range(0, n, NPZ_CHUNK):
        path = out / relpath_for(first, "npz")
        path.parent.mkdir(exist_ok=True)
        path.touch()


def merge_peak_rss(out: Path, n: int) -> int:
    """Bytes: the peak resident set of a fresh process that merges `out`."""
    probe = ("import resource, sys; from gancli.runtime.merge import merge_manifests; "
             f"merge_manifests({str(out)!r}, {n}); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_merging_a_million_images_holds_flat_memory(tmp_path):
    """The old merge held a line and an int per image (about 150 MB for 10**6, 150 GB for 10**9); now the
    manifests are streamed and their rising runs merged, so a million lines cost what a thousand do."""
    small, big = tmp_path / "small", tmp_path / "big"
    sharded_folder(small, 2_000)
    sharded_folder(big, 1_000_000)
    baseline, peak = merge_peak_rss(small, 2_000), merge_peak_rss(big, 1_000_000)
    assert peak - baseline < 40 << 20, (baseline >> 20, peak >> 20)
    with open(big / "manifest.jsonl", "rb") as f:
        for expected, line in enumerate(f):
            assert int(line[10:line.index(b",")]) == expected
    assert expected == 999_999


def test_merge_names_a_doubled_index_a_damaged_line_and_a_missing_tail(tmp_path):
    out = tmp_path / "out"
    sharded_folder(out, 4_000)
    shard0 = out / "manifest-0-of-2.jsonl"
    good = shard0.read_bytes()

    shard0.write_bytes(good + npz_lines([17]).encode())  # listed twice by one shard
    with pytest.raises(GenerateError, match=r"^index 17 is listed by shard 0 and shard 0 \(twice\); shards must be "
                                            r"disjoint: rerun shard 0/2, which rebuilds its manifest$"):
        merge_manifests(out, 4_000)
    shard0.write_bytes(good[:100] + b"\x00garbage\xff\n" + good[100:])
    with pytest.raises(GenerateError, match=rf"^{shard0} line 2 is not a gancli manifest line \(binary data\); rerun "
                                            r"shard 0/2 \(gancli generate --shard 0/2"):
        merge_manifests(out, 4_000)
    shard0.write_bytes(good[:-20])  # a killed shard's cut-off last line: that image counts as missing
    with pytest.raises(GenerateError, match=r"^1 of 4,000 images are in no shard's manifest \(first: index 999\); rerun"):
        merge_manifests(out, 4_000)
    shard0.write_bytes(good)
    assert not (out / "manifest.jsonl").exists()
    assert merge_manifests(out, 4_000).seed == 3
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["index"] for e in entries] == list(range(4_000)) and entries[1234]["item"] == 234


def test_merge_refuses_while_a_shard_is_still_being_written(tmp_path):
    out = tmp_path / "out"
    sharded_folder(out, 4_000)
    with FolderLock(out / "manifest-1-of-2.jsonl"):  # what a running `gancli generate --shard 1/2` holds
        result = runner.invoke(app, ["merge", "-n", "4000", "--out", str(out)])
        assert result.exit_code == 1
        assert result.output.strip().startswith("error: shard 1/2 is still being written by another gancli generate (pid ")
    assert runner.invoke(app, ["merge", "-n", "4000", "--out", str(out)]).exit_code == 0


@pytest.mark.parametrize("n, message", [(0, "-n must be a number of images from 1 to 1,000,000,000, not 0"),
                                        (10 ** 10, "-n must be a number of images from 1 to 1,000,000,000")])
def test_merge_bad_count_is_one_line(tmp_path, n, message):
    sharded_folder(tmp_path, 2_000)
    result = runner.invoke(app, ["merge", "-n", str(n), "--out", str(tmp_path)])
    assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1
