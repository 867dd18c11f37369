"""Runtime: reproducible, resumable, sharded bulk generation from exported ONNX files, without torch; for
class-conditional models, labels per image index, --class, the imagefolder layout and the manifest's labels.

torch and gan appear here only to BUILD tiny test models (runtime/ itself never imports them).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from scipy import stats
from torch import nn
from typer.testing import CliRunner

from gancli import cli
from gancli.runtime import models as runtime_models
from gancli.runtime import files, pixels, writer
from gancli.export.onnx import export_onnx
from gancli.gan.artifact import GeneratorSpec
from gancli.gan.networks import build_generator
from gancli.runtime.errors import GenerateError
from gancli.runtime.generate import generate, generate_array, parse_shard, shard_range
from gancli.runtime.labels import ClassPlan, resolve_classes
from gancli.runtime.latents import latents
from gancli.runtime.metadata import OUTPUT_FLOAT_NCHW, OUTPUT_UINT8_NHWC, MetadataError
from gancli.runtime.models import resolve_model
from gancli.runtime.session import DeviceFallbackWarning, GeneratorSession
from gancli.runtime.writer import NPZ_CHUNK, relpath_for

REPO_ROOT = Path(__file__).resolve().parents[1]
LATENT = 8


# class names a folder and a JSON string must both carry: a space, a quote, a backslash-free non-ASCII name
CLASS_NAMES = ["cat", "dog", 'say "hi"', "чай"]


def calibrate_batch_norm_(G: nn.Module, latent_dim: int, num_classes: int = 0) -> None:
    """Running statistics from one seeded batch, so random weights give textured images that differ
    per z (default statistics make a random DCGAN output almost flat grey, and every file equal)."""
    for m in G.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics exactly
    G.train()
    with torch.no_grad():
        z = torch.randn(256, latent_dim, generator=torch.Generator().manual_seed(1))
        G(z, torch.arange(256) % num_classes) if num_classes else G(z)
    G.eval()


def export_tiny(path: Path, arch: str, channels: int, img_size: int, output_kind: str,
                class_names: list[str] | None = None) -> Path:
    torch.manual_seed(0)
    class_names = list(class_names or [])
    G = build_generator(arch, LATENT, channels, img_size, width=4, num_classes=len(class_names))
    if class_names:  # labels far apart, so each class looks unlike the others
        with torch.no_grad():
            G.input.embed.weight.mul_(3.0)
    calibrate_batch_norm_(G, LATENT, len(class_names))
    spec = GeneratorSpec(arch=arch, latent_dim=LATENT, channels=channels, img_size=img_size, width=4,
                         dataset="test", epochs=0, seed=0, class_names=class_names)
    export_onnx(G, spec, path, output_kind=output_kind)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny RGB DCGAN as the uint8 serving graph and a tiny grey MLP as the float graph (both kinds covered)."""
    folder = tmp_path_factory.mktemp("models")
    return {
        "dcgan": export_tiny(folder / "dcgan-uint8.onnx", "dcgan", 3, 32, OUTPUT_UINT8_NHWC),
        "mlp": export_tiny(folder / "mlp.onnx", "mlp", 1, 28, OUTPUT_FLOAT_NCHW),
    }


@pytest.fixture(scope="module")
def conditional(tmp_path_factory) -> dict[str, Path]:
    """Tiny class-conditional generators (4 classes): an RGB DCGAN uint8 graph and a grey MLP float graph."""
    folder = tmp_path_factory.mktemp("conditional")
    return {
        "dcgan": export_tiny(folder / "cdcgan-uint8.onnx", "dcgan", 3, 32, OUTPUT_UINT8_NHWC, CLASS_NAMES),
        "mlp": export_tiny(folder / "cmlp.onnx", "mlp", 1, 28, OUTPUT_FLOAT_NCHW, CLASS_NAMES),
    }


def files_of(out: Path, ext: str = "png") -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob(f"*/*.{ext}"))}


def manifest_indices(path: Path) -> list[int]:
    return [json.loads(line)["index"] for line in path.read_text().splitlines()]


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if ".tmp-" in p.name]


# ---- latents ----------------------------------------------------------------------------------

def test_latents_depend_only_on_seed_and_index():
    whole = latents(7, np.arange(50), 100)
    picked = [3, 4, 5, 17, 40, 41]  # several runs, not contiguous
    assert np.array_equal(latents(7, picked, 100), whole[picked])
    assert np.array_equal(latents(7, [17], 100)[0], whole[17])
    assert not np.allclose(latents(8, np.arange(50), 100), whole)
    odd = latents(7, np.arange(10), 7)  # an odd size draws a whole pair per value and drops one
    assert odd.shape == (10, 7) and np.array_equal(latents(7, [9], 7)[0], odd[9])


def test_latents_are_standard_normal():
    z = latents(0, np.arange(2000), 100).ravel()
    assert z.dtype == np.float32
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[0::2], z[1::2])[0, 1]) < 0.02  # Box-Muller pairs are independent


# ---- naming, shards, model resolution -----------------------------------------------------------

def test_layout_is_fixed_by_the_index():
    assert relpath_for(42, "png") == "00000/000000042.png"
    assert relpath_for(123_456, "jpg") == "00012/000123456.jpg"
    assert relpath_for(1_999, "npz") == "00000/000001000.npz"  # the chunk that holds it


@pytest.mark.parametrize("fmt", ["png", "npz"])
def test_shards_cover_the_range_without_overlap(fmt):
    n, m = 10_500, 4
    ranges = [shard_range(n, (k, m), fmt) for k in range(m)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    if fmt == "npz":
        assert all(start % NPZ_CHUNK == 0 for start, _ in ranges)


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "1/0", "0/2/3"])
def test_bad_shard_spec_is_one_clear_error(text):
    with pytest.raises(GenerateError, match="--shard"):
        parse_shard(text)


def test_model_names_resolve_to_the_uint8_serving_graph_first(tmp_path, monkeypatch, models):
    monkeypatch.setattr(runtime_models, "MODELS_DIR", tmp_path)
    (tmp_path / "mnist-dcgan").mkdir()
    for name in ("generator.onnx", "generator-uint8.onnx"):
        (tmp_path / "mnist-dcgan" / name).write_bytes(models["dcgan"].read_bytes())
    assert resolve_model("mnist-dcgan") == tmp_path / "mnist-dcgan" / "generator-uint8.onnx"
    with pytest.raises(GenerateError, match="no model 'cats-dcgan'.*shipped models: mnist-dcgan"):
        resolve_model(None)


def test_precision_picks_a_names_int8_graph_and_must_match_a_file(tmp_path, monkeypatch, models):
    monkeypatch.setattr(runtime_models, "MODELS_DIR", tmp_path)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "generator-uint8.onnx").write_bytes(models["dcgan"].read_bytes())
    with pytest.raises(GenerateError, match=r"has no int8 graph \(generator-int8-uint8.onnx\); make one with `gancli export --int8`"):
        resolve_model("cats", "int8")
    (tmp_path / "cats" / "generator-int8-uint8.onnx").write_bytes(models["dcgan"].read_bytes())
    assert resolve_model("cats", "int8") == tmp_path / "cats" / "generator-int8-uint8.onnx"
    assert resolve_model("cats", "fp32") == resolve_model("cats") == tmp_path / "cats" / "generator-uint8.onnx"
    with pytest.raises(GenerateError, match="--precision 'fp8' is not known; use one of fp32, int8"):
        resolve_model("cats", "fp8")
    with pytest.raises(GenerateError, match=r"--precision int8: .*dcgan-uint8.onnx is a fp32 graph"):
        generate(3, tmp_path / "out", models["dcgan"], device="cpu", precision="int8")
    assert not (tmp_path / "out").exists()


# ---- determinism --------------------------------------------------------------------------------

def test_same_bytes_whatever_the_batch_size_shard_or_layout(tmp_path, models):
    n = 23
    generate(n, tmp_path / "a", models["dcgan"], batch_size=5, device="cpu", seed=3, workers=1)
    reference = files_of(tmp_path / "a")
    assert len(reference) == n
    assert len(set(reference.values())) == n  # the images really differ

    generate(n, tmp_path / "b", models["dcgan"], batch_size=8, device="cpu", seed=3, layout="threads", workers=2)
    for k in range(3):
        generate(n, tmp_path / "c", models["dcgan"], batch_size=3, device="cpu", seed=3, shard=f"{k}/3", workers=1)
    assert files_of(tmp_path / "b") == reference
    assert files_of(tmp_path / "c") == reference
    assert sorted(sum((manifest_indices(p) for p in (tmp_path / "c").glob("manifest-*-of-3.jsonl")), [])) == list(range(n))

    generate(n, tmp_path / "d", models["dcgan"], batch_size=4, device="cpu", seed=4, workers=1)
    assert files_of(tmp_path / "d") != reference


def test_worker_processes_make_the_same_bytes(tmp_path, models):
    """The CPU default: one spawned process per core, each with its own 1-thread session."""
    generate(40, tmp_path / "inline", models["mlp"], batch_size=7, device="cpu", workers=1)
    result = generate(40, tmp_path / "procs", models["mlp"], batch_size=7, device="cpu", layout="processes", workers=2)
    assert (result.layout, result.workers, result.made) == ("processes", 2, 40)
    assert files_of(tmp_path / "procs") == files_of(tmp_path / "inline")
    assert sorted(manifest_indices(tmp_path / "procs" / "manifest.jsonl")) == list(range(40))


def test_float_graph_images_are_the_uint8_graphs_bytes(models, tmp_path):
    session = GeneratorSession(models["mlp"], device="cpu")
    z = latents(0, np.arange(64), LATENT)
    raw = session.run_raw(z)  # float [B, 1, 28, 28] in [-1, 1]
    expected = np.clip(np.round((raw + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(session.images(z), expected)
    # the same generator exported as the uint8 serving graph quantises inside the graph, by the same rule
    served = GeneratorSession(export_tiny(tmp_path / "mlp-uint8.onnx", "mlp", 1, 28, OUTPUT_UINT8_NHWC), device="cpu")
    assert np.array_equal(session.images(z), served.images(z))


def test_pixels_round_half_to_even_and_clamp():
    x = np.array([[[[-3.0, 0.5, 1.5, 2.5, 254.5, 300.0]]]], dtype=np.float32)  # [1, 1, 1, 6] in [0, 255]
    assert pixels.to_uint8_nhwc(x, (0.0, 255.0)).ravel().tolist() == [0, 0, 2, 2, 254, 255]
    assert pixels.to_uint8_nhwc(torch.from_numpy(x), (0.0, 255.0)).ravel().tolist() == [0, 0, 2, 2, 254, 255]


def test_grey_png_stays_one_channel_and_jpg_decodes(tmp_path, models):
    generate(3, tmp_path / "grey", models["mlp"], device="cpu", workers=1)
    grey = cv2.imread(str(tmp_path / "grey" / "00000" / "000000002.png"), cv2.IMREAD_UNCHANGED)
    assert grey.shape == (28, 28)
    generate(3, tmp_path / "jpg", models["dcgan"], device="cpu", fmt="jpg", workers=1)
    assert cv2.imread(str(tmp_path / "jpg" / "00000" / "000000001.jpg")).shape == (32, 32, 3)


def test_png_holds_exactly_the_generators_pixels(tmp_path, models):
    generate(5, tmp_path, models["dcgan"], device="cpu", seed=9, workers=1)
    session = GeneratorSession(models["dcgan"], device="cpu")
    expected = session.images(latents(9, [4], LATENT))[0]
    bgr = cv2.imread(str(tmp_path / "00000" / "000000004.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(bgr[..., ::-1], expected)  # OpenCV stores BGR; the graph gives RGB


def test_npz_chunks_hold_images_with_their_indices_and_grow_on_resume(tmp_path, models):
    out = tmp_path / "npz"
    generate(1_500, out, models["mlp"], device="cpu", fmt="npz", seed=2, workers=1)
    with np.load(out / "00000" / "000001000.npz") as data:
        partial, partial_indices = data["images"], data["indices"]
    assert partial.shape == (500, 28, 28, 1) and np.array_equal(partial_indices, np.arange(1000, 1500))

    result = generate(2_200, out, models["mlp"], device="cpu", fmt="npz", seed=2, workers=1)
    assert (result.already, result.made) == (1_500, 700)
    with np.load(out / "00000" / "000001000.npz") as data:
        assert np.array_equal(data["indices"], np.arange(1000, 2000))
        assert np.array_equal(data["images"][:500], partial)  # the remade chunk keeps the same bytes
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [e["index"] for e in lines] == list(range(2_200))
    assert lines[1_234] == {"index": 1_234, "seed": 2, "file": "00000/000001000.npz", "item": 234}


# ---- resume and interruption -------------------------------------------------------------------

def interrupt_after(batches: int):
    def on_progress(made: int, total: int) -> None:
        on_progress.calls += 1
        if on_progress.calls > batches:  # the first call (made = 0) announces the total
            raise KeyboardInterrupt
    on_progress.calls = 0
    return on_progress


def test_interrupted_run_resumes_with_no_duplicate_missing_or_partial_file(tmp_path, models):
    n, batch = 30, 4
    generate(n, tmp_path / "clean", models["dcgan"], batch_size=batch, device="cpu", workers=1)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        generate(n, out, models["dcgan"], batch_size=batch, device="cpu", workers=1, on_progress=interrupt_after(3))
    assert len(files_of(out)) == 3 * batch and not leftovers(out)
    assert manifest_indices(out / "manifest.jsonl") == list(range(3 * batch))

    # a kill could also leave a temp file and a half-written manifest line: both are repaired
    (out / "00000" / ".000000020.tmp-99999.png").write_bytes(b"partial")
    (out / "00000" / ".000000021.png.tmp-99999").write_bytes(b"partial")  # the temp name of earlier versions
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"index": 12, "se')
    result = generate(n, out, models["dcgan"], batch_size=7, device="cpu", workers=1)
    assert (result.already, result.made) == (3 * batch, n - 3 * batch)
    assert files_of(out) == files_of(tmp_path / "clean") and not leftovers(out)
    assert sorted(manifest_indices(out / "manifest.jsonl")) == list(range(n))

    assert generate(n, out, models["dcgan"], device="cpu", workers=1).made == 0
    (out / "00000" / "000000005.png").unlink()  # a deleted file is made again, listed once
    assert generate(n, out, models["dcgan"], device="cpu", workers=1).made == 1
    assert sorted(manifest_indices(out / "manifest.jsonl")) == list(range(n))


def test_ctrl_c_stops_worker_processes_cleanly(tmp_path, models, sigint_at_default):
    """A real SIGINT to the process group, as a terminal sends it, during the default process layout."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gancli.cli", "generate", "-n", "100000", "--out", str(out), "--model",
               str(models["mlp"]), "--device", "cpu", "--batch-size", "50"]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_at_default)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*/*.png"))) < 200 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    on_disk = sorted(int(p.stem) for p in out.glob("*/*.png"))
    assert 200 <= len(on_disk) < 100_000 and not leftovers(out)
    assert sorted(manifest_indices(out / "manifest.jsonl")) == on_disk


@pytest.fixture(params=["anonymous-file", "temp-and-rename"])
def write_path(request, monkeypatch):
    """Both ways a file is made atomic: O_TMPFILE + link where supported, temp name + rename elsewhere."""
    if request.param == "anonymous-file" and not files._anonymous_files.usable:
        pytest.fail("O_TMPFILE is not usable on this machine's temp folder; the fast write path is untested")
    monkeypatch.setattr(files._anonymous_files, "usable", request.param == "anonymous-file")
    return request.param


def test_atomic_write_makes_replaces_and_leaves_no_temp(tmp_path, write_path):
    path = tmp_path / "a.png"
    writer.write_bytes_atomic(path, b"first")
    writer.write_bytes_atomic(path, np.frombuffer(b"second", dtype=np.uint8))
    assert path.read_bytes() == b"second" and os.listdir(tmp_path) == ["a.png"]
    assert files._anonymous_files.usable == (write_path == "anonymous-file")  # no silent fallback
    assert oct(path.stat().st_mode & 0o777) == oct(0o644 & ~current_umask())
    with pytest.raises(GenerateError, match="cannot write"):
        writer.write_bytes_atomic(tmp_path / "missing" / "b.png", b"x")
    (tmp_path / "sub").mkdir()
    writer.write_bytes_atomic(tmp_path / "sub" / "c.png", b"c")
    shutil.rmtree(tmp_path / "sub")
    (tmp_path / "sub").mkdir()  # the same folder name, made again: a new folder
    writer.write_bytes_atomic(tmp_path / "sub" / "d.png", b"d")
    assert os.listdir(tmp_path / "sub") == ["d.png"]
    assert files._anonymous_files.usable == (write_path == "anonymous-file")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_disk_full_is_one_line_and_keeps_what_was_written(tmp_path, models, monkeypatch, write_path):
    real_write_all = files._write_all
    calls = {"n": 0}

    def fill_up(fd: int, data: memoryview) -> None:
        calls["n"] += bytes(data[:4]) == b"\x89PNG"  # images only: the header and manifest go through here too
        if calls["n"] > 10:
            os.write(fd, data[:10])  # a partial temp file, as a full disk leaves it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(fd, data)

    monkeypatch.setattr(files, "_write_all", fill_up)
    out = tmp_path / "out"
    with pytest.raises(GenerateError, match=r"^disk full while writing .*000000010\.png; free some space") as e:
        generate(30, out, models["dcgan"], batch_size=4, device="cpu", workers=1)
    assert "\n" not in str(e.value)
    assert len(files_of(out)) == 10 and not leftovers(out)
    assert manifest_indices(out / "manifest.jsonl") == list(range(10))  # the batch that failed halfway too
    monkeypatch.setattr(files, "_write_all", real_write_all)
    assert generate(30, out, models["dcgan"], batch_size=4, device="cpu", workers=1).made == 20
    assert sorted(manifest_indices(out / "manifest.jsonl")) == list(range(30))


# ---- class-conditional models --------------------------------------------------------------------

def manifest_entries(path: Path) -> dict[int, dict]:
    return {e["index"]: e for e in map(json.loads, path.read_text().splitlines())}


def expected_image(model: Path, seed: int, index: int, label: int) -> np.ndarray:
    """Image i made directly from (seed, i, its label), through a fresh session."""
    session = GeneratorSession(model, device="cpu")
    return session.images(latents(seed, [index], LATENT), np.array([label]))[0]


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image[..., None] if image.ndim == 2 else image[..., ::-1]  # OpenCV reads BGR


def test_labels_depend_only_on_the_index_and_the_class_list():
    plan = ClassPlan((3, 1), ("a", "b", "c", "d"))
    assert plan.labels(np.arange(5)).tolist() == [3, 1, 3, 1, 3]
    assert plan.labels([7, 2, 1000]).tolist() == [1, 3, 3]  # any order, any subset: the same label per index
    assert plan.requested_names == ["d", "b"] and not plan.is_all
    assert ClassPlan((0, 1, 2, 3), plan.names).is_all


def test_classes_resolve_by_name_then_index_and_refuse_what_is_not_there(conditional, models):
    meta = GeneratorSession(conditional["dcgan"], device="cpu").metadata
    assert meta.class_names == tuple(CLASS_NAMES) and meta.input_names == ["z", "label"]
    assert resolve_classes(meta, None).requested == (0, 1, 2, 3)
    assert resolve_classes(meta, "dog").requested == (1,)
    assert resolve_classes(meta, "3, cat").requested == (3, 0)  # names or indices, in the order given
    assert resolve_classes(meta, 2).requested == (2,)
    assert resolve_classes(meta, ["чай", 1]).requested == (3, 1)
    assert resolve_classes(meta, 'say "hi"').requested == (2,)
    for bad, message in [("4", "--class 4: .* has no such class; its classes are cat, dog"),
                         ("cow", "--class cow: .* has no such class"), (-1, "--class -1: .* has no such class"),
                         ("dog,1", "lists class 'dog' twice"), ("", "names no class"), ("1,", "names no class")]:
        with pytest.raises(GenerateError, match=message) as e:
            resolve_classes(meta, bad, "m.onnx")
        assert "\n" not in str(e.value)
    unconditional = GeneratorSession(models["dcgan"], device="cpu").metadata
    assert resolve_classes(unconditional, None) is None and unconditional.input_names == ["z"]
    with pytest.raises(GenerateError, match="--class 1: m.onnx is an unconditional model"):
        resolve_classes(unconditional, "1", "m.onnx")


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_conditional_image_depends_only_on_seed_index_and_label(tmp_path, conditional, arch):
    """Per-label reproducibility: batch size, shards, worker processes and a resume give the same files,
    and each file is the image of (seed, i, label i mod K)."""
    model, n = conditional[arch], 23
    generate(n, tmp_path / "b7", model, batch_size=7, device="cpu", seed=3, workers=1)
    reference = files_of(tmp_path / "b7")
    assert len(reference) == n and len(set(reference.values())) == n
    generate(n, tmp_path / "b64", model, batch_size=64, device="cpu", seed=3, workers=1)
    assert files_of(tmp_path / "b64") == reference
    for k in range(3):
        generate(n, tmp_path / "shards", model, batch_size=3, device="cpu", seed=3, shard=f"{k}/3", workers=1)
    assert files_of(tmp_path / "shards") == reference
    result = generate(n, tmp_path / "procs", model, batch_size=4, device="cpu", seed=3, layout="processes", workers=2)
    assert result.layout == "processes" and files_of(tmp_path / "procs") == reference
    with pytest.raises(KeyboardInterrupt):
        generate(n, tmp_path / "resumed", model, batch_size=5, device="cpu", seed=3, workers=1,
                 on_progress=interrupt_after(2))
    assert len(files_of(tmp_path / "resumed")) == 10
    assert generate(n, tmp_path / "resumed", model, batch_size=6, device="cpu", seed=3, workers=1).made == n - 10
    assert files_of(tmp_path / "resumed") == reference

    entries = manifest_entries(tmp_path / "b7" / "manifest.jsonl")
    assert sorted(entries) == list(range(n))
    for i in (0, 5, 22):
        assert (entries[i]["label"], entries[i]["class"]) == (i % 4, CLASS_NAMES[i % 4])
        np.testing.assert_array_equal(read_png(tmp_path / "b7" / entries[i]["file"]), expected_image(model, 3, i, i % 4))
    header = json.loads((tmp_path / "b7" / "generate.json").read_text())
    assert (header["layout"], header["classes"], header["labels"]) == ("flat", CLASS_NAMES, [0, 1, 2, 3])


def test_class_restricts_the_labels_and_keeps_each_images_bytes(tmp_path, conditional):
    """--class dog,3: image i gets [dog, чай][i mod 2]; an image with the same (seed, i, label) as in a run of
    every class is the same image."""
    model = conditional["dcgan"]
    every = tmp_path / "every"
    generate(8, every, model, device="cpu", seed=1, workers=1)
    result = generate(8, tmp_path / "two", model, device="cpu", seed=1, workers=1, classes="dog,3")
    assert result.classes == ("dog", "чай")
    entries = manifest_entries(tmp_path / "two" / "manifest.jsonl")
    assert [entries[i]["label"] for i in range(8)] == [1, 3] * 4
    assert [entries[i]["class"] for i in range(8)] == ["dog", "чай"] * 4
    assert json.loads((tmp_path / "two" / "generate.json").read_text())["classes"] == ["dog", "чай"]
    # images 3 and 7 have label 3 in both runs: the same image; the others have another label in each run
    for i in range(8):
        same = (tmp_path / "two" / relpath_for(i, "png")).read_bytes() == (every / relpath_for(i, "png")).read_bytes()
        assert same == (i in (3, 7)), i
    sevens = generate(6, tmp_path / "one", model, device="cpu", seed=1, workers=1, classes=["cat"])
    assert sevens.classes == ("cat",)
    assert {e["class"] for e in manifest_entries(tmp_path / "one" / "manifest.jsonl").values()} == {"cat"}


def test_imagefolder_layout_loads_with_torchvision_and_resumes(tmp_path, conditional):
    from torchvision.datasets import ImageFolder

    out, model, n = tmp_path / "digits", conditional["dcgan"], 30
    with pytest.raises(KeyboardInterrupt):
        generate(n, out, model, batch_size=4, device="cpu", seed=2, workers=1, file_layout="imagefolder",
                 on_progress=interrupt_after(3))
    result = generate(n, out, model, batch_size=9, device="cpu", seed=2, workers=1, file_layout="imagefolder")
    assert (result.already, result.made, result.file_layout) == (12, 18, "imagefolder")
    dataset = ImageFolder(str(out))
    assert dataset.classes == sorted(CLASS_NAMES) and len(dataset) == n
    counts = np.bincount([label for _, label in dataset.samples], minlength=4)
    assert counts.tolist() == [n // 4 + (dataset.classes[c] in CLASS_NAMES[:n % 4]) for c in range(4)]
    for path, label in dataset.samples:  # each file is in its class's folder, as the manifest says
        index = int(Path(path).stem)
        assert dataset.classes[label] == CLASS_NAMES[index % 4]
    entries = manifest_entries(out / "manifest.jsonl")
    assert sorted(entries) == list(range(n))
    assert entries[6] == {"index": 6, "seed": 2, "file": 'say "hi"/000000006.png', "label": 2, "class": 'say "hi"'}
    np.testing.assert_array_equal(read_png(out / entries[7]["file"]), expected_image(model, 2, 7, 3))
    # the same images as the flat layout, file for file
    generate(n, tmp_path / "flat", model, batch_size=64, device="cpu", seed=2, workers=1)
    flat = manifest_entries(tmp_path / "flat" / "manifest.jsonl")
    for i in range(n):
        assert (out / entries[i]["file"]).read_bytes() == (tmp_path / "flat" / flat[i]["file"]).read_bytes()
    # resume finds the files in their class folders; a deleted one is made again, listed once
    assert generate(n, out, model, device="cpu", seed=2, workers=1, file_layout="imagefolder").made == 0
    (out / entries[13]["file"]).unlink()
    assert generate(n, out, model, device="cpu", seed=2, workers=1, file_layout="imagefolder").made == 1
    assert sorted(manifest_indices(out / "manifest.jsonl")) == list(range(n))
    # with --class, ImageFolder sees only those classes
    generate(10, tmp_path / "two", model, device="cpu", seed=2, workers=1, file_layout="imagefolder", classes="чай,cat")
    two = ImageFolder(str(tmp_path / "two"))
    assert two.classes == ["cat", "чай"] and np.bincount(two.targets).tolist() == [5, 5]


def test_npz_chunks_of_a_conditional_model_hold_the_labels(tmp_path, conditional):
    out = tmp_path / "npz"
    generate(1_200, out, conditional["mlp"], device="cpu", fmt="npz", seed=4, workers=1, classes="1,2,0")
    with np.load(out / "00000" / "000001000.npz") as data:
        assert data["labels"].tolist() == [[1, 2, 0][i % 3] for i in range(1000, 1200)]
        assert np.array_equal(data["indices"], np.arange(1000, 1200))
    entries = manifest_entries(out / "manifest.jsonl")
    assert entries[1001] == {"index": 1001, "seed": 4, "file": "00000/000001000.npz", "item": 1, "label": 0,
                             "class": "cat"}
    images, labels, _ = generate_array(conditional["mlp"], 5, seed=4, device="cpu", classes="1,2,0", return_labels=True)
    assert labels.tolist() == [1, 2, 0, 1, 2]
    with np.load(out / "00000" / "000000000.npz") as data:
        np.testing.assert_array_equal(data["images"][:5], images)


def test_a_folder_refuses_other_classes_or_another_layout(tmp_path, conditional):
    out, model = tmp_path / "out", conditional["dcgan"]
    generate(4, out, model, device="cpu", workers=1, classes="dog")
    with pytest.raises(GenerateError, match=r"holds images of classes dog, not classes cat, dog, .*same --class"):
        generate(4, out, model, device="cpu", workers=1)
    with pytest.raises(GenerateError, match="holds images in the flat layout, not imagefolder; .*--layout flat"):
        generate(4, out, model, device="cpu", workers=1, classes="dog", file_layout="imagefolder")
    assert generate(4, out, model, device="cpu", workers=1, classes="1").made == 0  # index 1 is the class dog


def test_unconditional_contract_is_unchanged(tmp_path, models):
    """One input z, manifest lines without labels, no labels from generate_array, images as before."""
    session = GeneratorSession(models["dcgan"], device="cpu")
    assert [i.name for i in session.session.get_inputs()] == ["z"] and session.metadata.class_names == ()
    result = generate(3, tmp_path / "out", models["dcgan"], device="cpu", seed=5, workers=1)
    assert result.classes == () and result.file_layout == "flat"
    assert (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0] == \
        '{"index": 0, "seed": 5, "file": "00000/000000000.png"}'
    header = json.loads((tmp_path / "out" / "generate.json").read_text())
    assert (header["classes"], header["labels"], header["layout"]) == (None, None, "flat")
    images, meta = generate_array(models["dcgan"], 3, seed=5, device="cpu")
    assert np.array_equal(images, session.images(latents(5, np.arange(3), LATENT)))
    assert generate_array(models["dcgan"], 3, seed=5, device="cpu", return_labels=True)[1] is None
    # a folder written before headers named a layout or classes still resumes
    header.pop("layout"), header.pop("classes"), header.pop("labels")
    (tmp_path / "out" / "generate.json").write_text(json.dumps(header))
    assert generate(3, tmp_path / "out", models["dcgan"], device="cpu", seed=5, workers=1).made == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"classes": "9"}, "--class 9: .* has no such class; its classes are cat, dog"),
    ({"classes": "cat,cat"}, "lists class 'cat' twice"),
    ({"file_layout": "folders"}, "unknown --layout 'folders'; use flat or imagefolder"),
    ({"file_layout": "imagefolder", "fmt": "npz"}, "--layout imagefolder writes one file per image; use --format png"),
    ({"layout": "imagefolder"}, "layout='imagefolder' spreads the work .* file_layout='imagefolder'"),
])
def test_bad_labels_and_layouts_are_one_clear_error_before_any_file(tmp_path, conditional, kwargs, message):
    with pytest.raises(GenerateError, match=message) as e:
        generate(4, tmp_path / "out", conditional["dcgan"], device="cpu", **kwargs)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_a_session_refuses_labels_outside_the_classes(conditional, models):
    session = GeneratorSession(conditional["dcgan"], device="cpu")
    z = latents(0, np.arange(2), LATENT)
    with pytest.raises(GenerateError, match="label 4 is outside .* classes 0 to 3"):
        session.images(z, np.array([0, 4]))
    with pytest.raises(GenerateError, match="class-conditional; pass a label per image"):
        session.images(z)
    with pytest.raises(GenerateError, match="unconditional model; it takes no labels"):
        GeneratorSession(models["dcgan"], device="cpu").images(z, np.array([0, 1]))


@pytest.mark.parametrize("args, message", [
    (["--class", "12"], "--class 12: "),
    (["--class", "cat,bird"], "--class bird: "),
    (["--layout", "imagefolder", "--format", "npz"], "--layout imagefolder writes one file per image"),
])
def test_cli_bad_class_is_one_red_line_and_exit_1(tmp_path, conditional, args, message):
    result = CliRunner().invoke(cli.app, ["generate", "-n", "4", "--out", str(tmp_path / "o"), "--model",
                                          str(conditional["dcgan"]), "--device", "cpu", *args])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.png"))


@pytest.mark.parametrize("args, message", [
    (["--class", "7"], "is an unconditional model (it has no classes); drop --class"),
    (["--layout", "imagefolder"], "--layout imagefolder makes one folder per class, but"),
])
def test_cli_class_or_imagefolder_on_an_unconditional_model_is_refused(tmp_path, models, args, message):
    result = CliRunner().invoke(cli.app, ["generate", "-n", "4", "--out", str(tmp_path / "o"), "--model",
                                          str(models["dcgan"]), "--device", "cpu", *args])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_generates_one_class_into_an_imagefolder(tmp_path, conditional):
    args = ["generate", "-n", "12", "--out", str(tmp_path / "o"), "--model", str(conditional["mlp"]), "--device", "cpu",
            "--class", "dog", "--layout", "imagefolder"]
    result = CliRunner().invoke(cli.app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "made 12 images" in result.output and "classes dog" in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".manifest.jsonl.lock", "dog", "generate.json",
                                                                  "manifest.jsonl"]  # the lock: runtime/faults.py
    assert len(list((tmp_path / "o" / "dog").glob("*.png"))) == 12


# ---- bad input ---------------------------------------------------------------------------------

def without_metadata(src: Path, dst: Path) -> Path:
    model = onnx.load(str(src))
    del model.metadata_props[:]
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("case", ["missing", "corrupt", "no-metadata", "n=0", "n<0", "out-is-file",
                                  "out-under-file", "other-seed", "batch=0", "format"])
def test_bad_input_is_one_clear_error(tmp_path, models, case):
    model, n, out, kwargs = models["dcgan"], 5, tmp_path / "out", {}
    if case == "missing":
        model = tmp_path / "nope.onnx"
    elif case == "corrupt":
        model = tmp_path / "corrupt.onnx"
        model.write_bytes(models["dcgan"].read_bytes()[:5000])
    elif case == "no-metadata":
        model = without_metadata(models["dcgan"], tmp_path / "plain.onnx")
    elif case in ("n=0", "n<0"):
        n = 0 if case == "n=0" else -3
    elif case == "out-is-file":
        out.write_text("x")
    elif case == "out-under-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    elif case == "other-seed":
        generate(2, out, model, device="cpu", seed=1, workers=1)
        kwargs = {"seed": 2}
    elif case == "batch=0":
        kwargs = {"batch_size": 0}
    elif case == "format":
        kwargs = {"fmt": "gif"}
    expected = {"missing": "not found", "corrupt": "not a loadable ONNX model", "no-metadata": "no gancli metadata",
                "n=0": "positive", "n<0": "positive", "out-is-file": "is a file", "out-under-file": "cannot create",
                "other-seed": "another seed", "batch=0": "batch-size", "format": "unknown format"}[case]
    with pytest.raises(GenerateError, match=expected) as e:
        generate(n, out, model, device="cpu", workers=1, **kwargs)
    assert "\n" not in str(e.value)
    if case == "no-metadata":
        assert isinstance(e.value, MetadataError)


# ---- devices ------------------------------------------------------------------------------------

def cuda_session_possible() -> bool:
    return torch.cuda.is_available()


@pytest.mark.skipif(cuda_session_possible(), reason="checks the fallback of a machine without a GPU")
def test_auto_falls_back_to_cpu_with_a_warning_and_cuda_fails_clearly(models, tmp_path):
    with pytest.warns(DeviceFallbackWarning, match="generating on the CPU"):
        session = GeneratorSession(models["dcgan"], device="auto")
    assert session.device == "cpu" and session.providers == ["CPUExecutionProvider"]
    with pytest.raises(GenerateError, match="--device cuda: onnxruntime could not start CUDA"):
        GeneratorSession(models["dcgan"], device="cuda")
    result = CliRunner().invoke(cli.app, ["generate", "-n", "2", "--out", str(tmp_path / "out"), "--model",
                                          str(models["dcgan"]), "--device", "cuda"])
    assert result.exit_code == 1 and "could not start CUDA" in result.output
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.gpu
def test_cuda_makes_the_same_images_as_the_cpu(tmp_path, models):
    session = GeneratorSession(models["dcgan"], device="cuda")
    assert session.device == "cuda"
    z = latents(0, np.arange(16), LATENT)
    gpu, cpu = session.images(z), GeneratorSession(models["dcgan"], device="cpu").images(z)
    assert gpu.dtype == np.uint8 and np.abs(gpu.astype(int) - cpu).max() <= 1  # float rounding may differ by one level
    result = generate(50, tmp_path, models["dcgan"], device="cuda")
    assert (result.device, result.layout, result.made) == ("cuda", "threads", 50)


@pytest.mark.gpu
def test_cuda_feeds_labels_through_io_binding(tmp_path, conditional):
    session = GeneratorSession(conditional["dcgan"], device="cuda")
    assert session.device == "cuda"
    z, labels = latents(0, np.arange(16), LATENT), np.arange(16) % 4
    gpu = session.images(z, labels)
    cpu = GeneratorSession(conditional["dcgan"], device="cpu").images(z, labels)
    assert np.abs(gpu.astype(int) - cpu).max() <= 1
    result = generate(40, tmp_path, conditional["dcgan"], device="cuda", file_layout="imagefolder", classes="dog,cat")
    assert (result.device, result.made) == ("cuda", 40)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cat", "dog"]


# ---- CLI and imports ----------------------------------------------------------------------------

def test_cli_generate_writes_images_grid_and_closing_line(tmp_path, models):
    grid = tmp_path / "grid.png"
    args = ["generate", "-n", "70", "--out", str(tmp_path / "out"), "--model", str(models["dcgan"]),
            "--device", "cpu", "--seed", "5", "--batch-size", "16", "--grid", str(grid)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert "made 70 images in" in result.output and "images/s" in result.output
    assert len(files_of(tmp_path / "out")) == 70
    assert cv2.imread(str(grid)).shape == (8 * 34 + 2, 8 * 34 + 2, 3)  # 64 tiles of 32 px, make_grid padding 2
    again = CliRunner().invoke(cli.app, args)
    assert again.exit_code == 0 and "made 0 images" in again.output and "70 already there" in again.output


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "positive"), (["-n", "5", "--shard", "3/2"], "--shard"), (["-n", "5", "--batch-size", "big"], "--batch-size"),
    (["-n", "5", "--device", "tpu"], "unknown device"),
])
def test_cli_bad_input_is_one_red_line_and_exit_1(tmp_path, models, args, message):
    result = CliRunner().invoke(cli.app, ["generate", "--out", str(tmp_path / "o"), "--model", str(models["dcgan"]), *args])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_runtime_and_gancli_generate_load_no_torch(tmp_path, models):
    probe = f"""
import sys
import gancli, gancli.runtime, gancli.runtime.generate, gancli.runtime.session, gancli.runtime.writer, gancli.runtime.latents
from typer.testing import CliRunner
from gancli.cli import app
result = CliRunner().invoke(app, ["generate", "-n", "3", "--out", {str(tmp_path / 'o')!r}, "--model", {str(models['mlp'])!r}, "--device", "cpu"])
assert result.exit_code == 0, result.output
# the CLI builds `train`'s flags from TrainConfig, whose module is torch-free; nothing else of gan/ or export/ loads
torch_free = ("gancli.gan.training", "gancli.gan.training.config")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision") or m.startswith(("gancli.gan.", "gancli.export."))
               and not m.endswith(".errors") and m not in torch_free)
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert len(list((tmp_path / "o").glob("*/*.png"))) == 3
