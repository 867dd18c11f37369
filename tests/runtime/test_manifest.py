"""Every file gancli generate reads back, damaged (runtime/manifest.py, writer.py, session.py, metadata.py):
generate.json, the manifest, npz chunks and the ONNX model, each empty, cut off, foreign or from a newer gancli.
A file gancli can make again (a chunk, a cut-off manifest line) is made again; anything else is one line
naming the file and the way out, never a traceback. Plus the building blocks that keep memory flat."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from gancli import cli
from gancli.runtime.errors import GenerateError
from gancli.runtime.generate import generate
from gancli.runtime.manifest import Manifest, parse_line
from gancli.runtime.metadata import METADATA_KEY, OUTPUT_FLOAT_NCHW
from gancli.runtime.writer import FileNames, IndexSet, OnDisk

runner = CliRunner()


@pytest.fixture(scope="module")
def dcgan(tmp_path_factory, export_untrained) -> Path:
    return export_untrained(tmp_path_factory.mktemp("model") / "dcgan-uint8.onnx", "dcgan", 8, 3, 32, 4)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory, export_untrained) -> Path:
    return export_untrained(tmp_path_factory.mktemp("model") / "mlp.onnx", "mlp", 8, 1, 28, 4,
                            output_kind=OUTPUT_FLOAT_NCHW)


def gancli_generate(n: int, out: Path, model: Path, *extra: str):
    return runner.invoke(cli.app, ["generate", "-n", str(n), "--out", str(out), "--model", str(model), "--device", "cpu",
                                   *extra], terminal_width=400)


def one_error_line(result) -> str:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ")
    return line


def listed(out: Path) -> list[int]:
    return [json.loads(line)["index"] for line in (out / "manifest.jsonl").read_text().splitlines()]


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# ---- generate.json -------------------------------------------------------------------------------------

HEADER_DAMAGE = {
    "empty": (b"", "is empty: it is not a gancli generate.json, or was cut off"),
    "cut-off": (b'{"header_version": 1, "model_sha256": "ab', "is not JSON"),
    "binary": (bytes(range(256)) * 4, "is not JSON"),
    "a JSON list": (b"[1, 2, 3]", "is not a gancli generate.json (a JSON list, not an object)"),
    "foreign": (b'{"name": "my dataset", "version": 3}', "is not a gancli generate.json (it has no 'model_sha256')"),
    "newer": (b'{"header_version": 99, "model_sha256": "x", "seed": 0, "format": "png"}',
              "was written by a newer gancli (header version 99; this one reads up to 2); upgrade gancli"),
    "wrong type": (b'{"model_sha256": "x", "seed": "zero", "format": "png"}', "'seed' is 'zero', not what gancli writes"),
}


@pytest.mark.parametrize("case", list(HEADER_DAMAGE))
def test_a_damaged_generate_json_is_one_line_naming_it_and_the_way_out(tmp_path, dcgan, case):
    out = tmp_path / "out"
    assert gancli_generate(5, out, dcgan).exit_code == 0
    data, message = HEADER_DAMAGE[case]
    (out / "generate.json").write_bytes(data)
    before = snapshot(out)
    line = one_error_line(gancli_generate(10, out, dcgan))
    assert str(out / "generate.json") in line and message in line
    if case != "newer":
        assert "or choose another --out" in line and "delete it (gancli writes it again and makes the images" in line
    assert snapshot(out) == before  # refused before anything was written
    (out / "generate.json").unlink()  # the way out the line names: gancli writes it again, without the record
    result = gancli_generate(10, out, dcgan)  # ...no image there is known to be gancli's: all are made again
    assert result.exit_code == 0 and "made 10 images" in result.output and listed(out) == list(range(10))


def test_a_damaged_generate_json_stops_merge_with_one_line(tmp_path, dcgan):
    out = tmp_path / "out"
    for k in range(2):
        assert gancli_generate(10, out, dcgan, "--shard", f"{k}/2").exit_code == 0
    (out / "generate.json").write_bytes(b"\x00\x01garbage")
    line = one_error_line(runner.invoke(cli.app, ["merge", "-n", "10", "--out", str(out)]))
    assert f"{out / 'generate.json'} is not JSON" in line


# ---- the manifest --------------------------------------------------------------------------------------

def test_a_cut_off_last_line_blank_lines_and_a_zero_filled_tail_are_repaired(tmp_path, dcgan):
    """What a killed writer or a power cut leaves: the next run drops it and lists every image once."""
    out = tmp_path / "out"
    assert gancli_generate(20, out, dcgan).exit_code == 0
    text = (out / "manifest.jsonl").read_text()
    (out / "manifest.jsonl").write_bytes(text.replace("\n", "\n\n", 3).encode() + b'{"index": 7, "se')
    assert gancli_generate(25, out, dcgan).exit_code == 0
    assert listed(out) == list(range(25))
    with open(out / "manifest.jsonl", "ab") as f:
        f.write(b"\0" * 300)
    assert gancli_generate(30, out, dcgan).exit_code == 0
    assert listed(out) == list(range(30))


@pytest.mark.parametrize("case", ["binary", "not JSON lines", "a bad line in the middle"])
def test_a_garbage_manifest_is_one_line_and_moving_it_away_rebuilds_it(tmp_path, dcgan, case):
    out = tmp_path / "out"
    assert gancli_generate(20, out, dcgan).exit_code == 0
    lines = (out / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    data = {"binary": os.urandom(5000).replace(b"\n", b"\0") + b"\n" + os.urandom(100),
            "not JSON lines": b"index,seed,file\n0,0,00000/000000000.png\n",
            "a bad line in the middle": b"".join(lines[:5] + [b'{"index": "five"}\n'] + lines[5:])}[case]
    (out / "manifest.jsonl").write_bytes(data)
    line = one_error_line(gancli_generate(20, out, dcgan))
    number = 6 if case == "a bad line in the middle" else 1
    assert line.startswith(f"error: {out / 'manifest.jsonl'} line {number} is not a gancli manifest line")
    assert line.endswith(f"move it away or delete it: gancli generate writes it again, making the images in {out} again")
    assert (out / "manifest.jsonl").read_bytes() == data  # not overwritten: it may be someone else's file
    (out / "manifest.jsonl").rename(out / "moved-away.jsonl")
    assert gancli_generate(20, out, dcgan).exit_code == 0 and listed(out) == list(range(20))


def test_manifest_lines_parse_fast_or_as_json_and_foreign_ones_do_not():
    entry = parse_line(b'{"index": 42, "seed": 7, "file": "00000/000000042.png"}')
    assert (entry.index, entry.seed, entry.file, entry.label) == (42, 7, "00000/000000042.png", None)
    labelled = parse_line(b'{"index": 6, "seed": 2, "file": "say \\"hi\\"/000000006.png", "label": 2, "class": "say \\"hi\\""}')
    assert (labelled.file, labelled.label) == ('say "hi"/000000006.png', 2)
    assert parse_line(b'{"seed":1,"index":3,"file":"a.png"}').index == 3  # other spacing and order: JSON
    for bad in (b'{"index": -1, "seed": 0, "file": "x"}', b'{"index": true, "seed": 0, "file": "x"}',
                b'{"index": 1, "seed": 0}', b"[1, 2]", b"\xff\xfe", b'{"index": 1, "seed": 0, "file": ""}'):
        assert parse_line(bad) is None, bad


# ---- npz chunks ------------------------------------------------------------------------------------------

def write_npy_as_npz(path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))


NPZ_DAMAGE = {
    "cut off": lambda path: path.write_bytes(path.read_bytes()[:5000]),
    "empty": lambda path: path.write_bytes(b""),
    "not npz": lambda path: path.write_bytes(b"hello"),
    "an .npy": write_npy_as_npz,
    "foreign arrays": lambda path: np.savez(open(path, "wb"), x=np.arange(3)),
    "other indices": lambda path: np.savez(open(path, "wb"), images=np.zeros((2, 28, 28, 1), np.uint8),
                                           indices=np.array([5, 6])),
    "pickled": lambda path: np.savez(open(path, "wb"), images=np.array([object()], dtype=object), indices=np.arange(1)),
}


@pytest.mark.parametrize("case", list(NPZ_DAMAGE))
def test_a_damaged_npz_chunk_is_made_again(tmp_path, mlp, case):
    out = tmp_path / "out"
    generate(2_500, out, mlp, device="cpu", fmt="npz", workers=1)
    reference = (out / "00000" / "000001000.npz").read_bytes()
    NPZ_DAMAGE[case](out / "00000" / "000001000.npz")
    result = generate(2_500, out, mlp, device="cpu", fmt="npz", workers=1)
    assert (result.already, result.made) == (1_500, 1_000)
    assert (out / "00000" / "000001000.npz").read_bytes() == reference
    assert listed(out) == list(range(1_000)) + list(range(2_000, 2_500)) + list(range(1_000, 2_000))


# ---- the ONNX model --------------------------------------------------------------------------------------

def with_metadata(src: Path, dst: Path, change) -> Path:  # noqa: ANN001
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = change(prop.value)
    onnx.save(model, str(dst))
    return dst


def newer(value: str) -> str:
    return json.dumps({**json.loads(value), "format_version": 99})


def wrong_type(value: str) -> str:
    return json.dumps({**json.loads(value), "latent_dim": "8"})


MODEL_DAMAGE = {
    "empty": (lambda src, dst: dst.write_bytes(b""), "is not a loadable ONNX model"),
    "cut off": (lambda src, dst: dst.write_bytes(src.read_bytes()[:3000]), "is not a loadable ONNX model"),
    "not ONNX": (lambda src, dst: dst.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000)), "is not a loadable ONNX model"),
    "no gancli metadata": (lambda src, dst: with_metadata(src, dst, lambda v: v).write_bytes(_strip(src)),
                           "has no gancli metadata; export it with `gancli export`"),
    "newer metadata": (lambda src, dst: with_metadata(src, dst, newer), "was written by a newer gancli (gancli model "
                                                                        "metadata, format 99"),
    "metadata of the wrong type": (lambda src, dst: with_metadata(src, dst, wrong_type),
                                   "gancli metadata field 'latent_dim' is '8', not a valid value; re-export the model"),
    "metadata not JSON": (lambda src, dst: with_metadata(src, dst, lambda v: v[:20]),
                          "gancli metadata is not valid JSON of the expected form"),
}


def _strip(src: Path) -> bytes:
    model = onnx.load(str(src))
    del model.metadata_props[:]
    return model.SerializeToString()


@pytest.mark.parametrize("case", list(MODEL_DAMAGE))
def test_a_damaged_model_is_one_line_naming_it(tmp_path, dcgan, case):
    damage, message = MODEL_DAMAGE[case]
    model = tmp_path / "model.onnx"
    damage(dcgan, model)
    line = one_error_line(gancli_generate(5, tmp_path / "out", model))
    assert str(model) in line and message in line
    assert not any((tmp_path / "out").rglob("*.png"))


# ---- bounded memory: the building blocks ---------------------------------------------------------------------

def test_index_set_costs_a_bit_per_index_present_and_answers_by_block():
    found = IndexSet()
    found.add(np.array([3, 5, 999_999_999, 2 ** 20 + 1]))
    assert found.add_one(4) and not found.add_one(5)
    assert found.mask(0, 8).tolist() == [False, False, False, True, True, True, False, False]
    assert found.mask(2 ** 20 - 1, 2 ** 20 + 3).tolist() == [False, False, True, False]
    assert found.mask(999_999_990, 1_000_000_000).sum() == 1
    assert len(found._pages) == 3  # pages only where indices fell


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def test_a_billion_image_range_is_looked_up_and_listed_a_block_at_a_time(tmp_path):
    """An empty folder, 10**9 images asked for: the lookup and the manifest rebuild walk 10,000 blocks of
    100,000 indices in a few seconds without holding more than one block."""
    out = tmp_path / "out"
    (out / "00042").mkdir(parents=True)
    (out / "00042" / "000420007.png").write_bytes(b"x" * 8 + PNG_END)  # ends as a whole PNG does
    names = FileNames("png")
    on_disk = OnDisk(out, names, 0, 10 ** 9)
    manifest = Manifest(out / "manifest.jsonl", 0, "png", 0, 10 ** 9, names)
    started = time.perf_counter()
    assert manifest.rebuild(on_disk) == 1
    assert time.perf_counter() - started < 60
    assert (out / "manifest.jsonl").read_text() == '{"index": 420007, "seed": 0, "file": "00042/000420007.png"}\n'
    lo, have = next(on_disk.blocks())
    assert (lo, len(have)) == (0, 100_000)


def test_appends_cut_back_a_half_written_line(tmp_path, monkeypatch):
    manifest = Manifest(tmp_path / "manifest.jsonl", 0, "png", 0, 100)
    manifest.open()
    manifest.append([0, 1])
    real_write = os.write

    def half_then_full(fd: int, data) -> int:  # noqa: ANN001
        if len(data) > 20:
            return real_write(fd, bytes(data[:20]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(GenerateError, match="^disk full while writing .*manifest.jsonl"):
        manifest.append([2, 3])
    monkeypatch.setattr(os, "write", real_write)
    manifest.append([4])
    manifest.close()
    assert [json.loads(line)["index"] for line in (tmp_path / "manifest.jsonl").read_text().splitlines()] == [0, 1, 4]


def test_the_reservation_is_bounded_by_what_the_range_can_need(tmp_path):
    """However much is asked for, the manifest keeps allocated no more than the lines of its range can take (an
    unbounded ask took the whole free disk), and gives it back when closed; an empty range reserves nothing."""
    path = tmp_path / "manifest.jsonl"
    manifest = Manifest(path, 0, "png", 0, 10)
    manifest.open(reserve=64 << 20)
    block = os.statvfs(tmp_path).f_bsize
    assert os.stat(path).st_blocks * 512 <= max(10 * manifest.line_bytes(), block)
    manifest.append(range(10))
    manifest.close()
    assert os.stat(path).st_blocks * 512 <= -(-os.stat(path).st_size // block) * block
    empty = Manifest(tmp_path / "manifest-0-of-20.jsonl", 0, "png", 0, 0)
    empty.open(reserve=64 << 20)
    empty.close()
    assert os.stat(empty.path).st_blocks == 0
