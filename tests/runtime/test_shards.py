"""Sharded generation: 3 shard processes make, file for file, what one process makes; merge checks the union
(flat and imagefolder layouts, labelled sets of class-conditional models too)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gancli.cli import app
from gancli.runtime.faults import shard_busy

GANCLI = Path(sys.executable).with_name("gancli")
N = 90
runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory, export_untrained) -> Path:
    return export_untrained(tmp_path_factory.mktemp("model") / "generator-uint8.onnx", "dcgan", 16, 3, 32, 8,
                            dataset="cats")


def gancli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(GANCLI), *args], capture_output=True, text=True, timeout=300)


def image_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_three_shard_processes_equal_one_run_file_for_file(model, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert gancli("generate", "-n", str(N), "--out", str(single), "--model", str(model), "--seed", "7").returncode == 0
    shards = [subprocess.Popen([str(GANCLI), "generate", "-n", str(N), "--out", str(sharded), "--model", str(model),
                                "--seed", "7", "--shard", f"{k}/3", "--batch-size", str(5 + k)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in range(3)]
    for process in shards:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    assert len(image_files(single)) == N
    assert image_files(sharded) == image_files(single)

    merged = gancli("merge", "-n", str(N), "--out", str(sharded))
    assert merged.returncode == 0, merged.stdout + merged.stderr
    lines = [json.loads(line) for line in (sharded / "manifest.jsonl").read_text().splitlines()]
    single_lines = [json.loads(line) for line in (single / "manifest.jsonl").read_text().splitlines()]
    assert sorted(lines, key=lambda e: e["index"]) == sorted(single_lines, key=lambda e: e["index"])
    assert [e["index"] for e in lines] == list(range(N))


def test_merge_names_what_is_missing_or_doubled(model, tmp_path):
    out = tmp_path / "out"
    for k in (0, 2):
        result = runner.invoke(app, ["generate", "-n", "30", "--out", str(out), "--model", str(model), "--shard", f"{k}/3"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["merge", "-n", "30", "--out", str(out)])
    assert result.exit_code == 1 and "lacks the manifests of shards 1/3" in result.output
    result = runner.invoke(app, ["generate", "-n", "30", "--out", str(out), "--model", str(model), "--shard", "1/3"])
    assert result.exit_code == 0, result.output
    first = (out / "manifest-0-of-3.jsonl").read_text().splitlines()[0]
    with open(out / "manifest-1-of-3.jsonl", "a") as f:
        f.write(first + "\n")
    result = runner.invoke(app, ["merge", "-n", "30", "--out", str(out)])
    assert result.exit_code == 1 and "shards must be disjoint" in result.output
    assert not (out / "manifest.jsonl").exists()


@pytest.fixture(scope="module")
def conditional_model(tmp_path_factory, export_untrained) -> Path:
    return export_untrained(tmp_path_factory.mktemp("cmodel") / "generator-uint8.onnx", "dcgan", 16, 1, 28, 8,
                            dataset="mnist", class_names=["zero", "one", "two"])


def test_imagefolder_shards_merge_into_one_labelled_set(conditional_model, tmp_path):
    from torchvision.datasets import ImageFolder

    single, sharded = tmp_path / "single", tmp_path / "sharded"
    common = ["--model", str(conditional_model), "--layout", "imagefolder", "--class", "two,zero", "--device", "cpu"]
    result = runner.invoke(app, ["generate", "-n", "30", "--out", str(single), *common])
    assert result.exit_code == 0, result.output
    for k in range(3):
        result = runner.invoke(app, ["generate", "-n", "30", "--out", str(sharded), "--shard", f"{k}/3",
                                     "--batch-size", str(4 + k), *common])
        assert result.exit_code == 0, result.output
    assert image_files(sharded) == image_files(single)
    result = runner.invoke(app, ["merge", "-n", "30", "--out", str(sharded)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (sharded / "manifest.jsonl").read_text().splitlines()]
    assert [e["index"] for e in lines] == list(range(30))
    assert [(e["label"], e["class"]) for e in lines[:3]] == [(2, "two"), (0, "zero"), (2, "two")]
    assert all(e["file"] == f"{e['class']}/{e['index']:09d}.png" for e in lines)
    dataset = ImageFolder(str(sharded))
    assert dataset.classes == ["two", "zero"] and np.bincount(dataset.targets).tolist() == [15, 15]

    # a shard whose labels disagree with the folder's classes (another --class, copied in) is refused
    path = sharded / "manifest-1-of-3.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    entries[0]["label"] = 1
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    result = runner.invoke(app, ["merge", "-n", "30", "--out", str(sharded)])
    assert result.exit_code == 1 and "the shards used different --class" in result.output
    assert result.output.strip().count("\n") == 0


def test_an_empty_shard_makes_0_images_and_the_shards_still_merge(model, tmp_path):
    """-n 3 in 4 shards: shard 0/4 holds no image. It finishes cleanly (exit 0, an empty manifest, its own
    record, its lock released; it crashed with `max() arg is an empty sequence`), and merge takes the four
    manifests as the whole set. A grid of an empty shard is refused before any work."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", "-n", "3", "--out", str(out), "--model", str(model), "--shard", "0/4",
                                 "--device", "cpu", "--grid", str(tmp_path / "grid.png")])
    assert result.exit_code == 1 and result.output.startswith("error: --grid") and result.output.count("\n") == 1
    assert not out.exists()
    for k in range(4):
        result = runner.invoke(app, ["generate", "-n", "3", "--out", str(out), "--model", str(model), "--shard",
                                     f"{k}/4", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert k > 0 or "made 0 images" in result.output
    assert (out / "manifest-0-of-4.jsonl").read_text() == "" and (out / "generate-0-of-4.json").is_file()
    assert shard_busy(out / "manifest-0-of-4.jsonl") is None
    result = runner.invoke(app, ["merge", "-n", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["index"] for line in (out / "manifest.jsonl").read_text().splitlines()] == [0, 1, 2]
