"""`gancli interpolate` (runtime/interpolate.py): slerp walks through the seeds' z and class morphs, as MP4 and
GIF, torch-free; every bad input is one line, exit 1, and no file."""
from __future__ import annotations

import subprocess
import sys
import tracemalloc

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image, ImageSequence
from typer.testing import CliRunner

import gancli
from gancli.cli import app
from gancli.runtime import interpolate as walks
from gancli.runtime.interpolate import (EMBEDDING_INITIALIZER, read_float_initializer, seed_walk, slerp,
                                        video_frames)
from gancli.runtime.latents import latents
from gancli.runtime.models import resolve_model


def gif_frames(path):
    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]


def test_slerp_runs_from_a_to_b_along_the_sphere():
    a, b = latents(1, [0], 100)[0], latents(2, [0], 100)[0]
    path = slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], a, atol=1e-5)
    np.testing.assert_allclose(path[-1], b, atol=1e-5)
    norms = np.linalg.norm(path, axis=1)  # no dip toward the origin, as a straight line would make
    assert norms.min() > 0.95 * min(np.linalg.norm(a), np.linalg.norm(b))


def test_the_walk_loops_through_image_0_of_each_seed():
    z = np.concatenate(list(seed_walk([4, 9, 2], 5, 100, batch=3)))  # batches of 3 frames, within each step
    assert z.shape == (15, 100)
    for k, seed in enumerate([4, 9, 2]):
        np.testing.assert_allclose(z[5 * k], latents(seed, [0], 100)[0], atol=1e-5)


def test_a_gif_walk_shows_generate_s_image_0_at_each_seed(tmp_path):
    walk = gancli.interpolate("mnist-dcgan", "1,2,3", tmp_path / "walk.gif", frames=4, device="cpu")
    frames = gif_frames(walk.path)
    assert walk.frames == len(frames) == 12 and walk.kind == "seeds"
    for k, seed in enumerate([1, 2, 3]):
        # interpolate serves the fp32 graph (a class morph reads its float embedding), not the CPU's int8 default
        expected = video_frames(gancli.generate_array("mnist-dcgan", 1, seed=seed, device="cpu", precision="fp32"))[0]
        np.testing.assert_array_equal(frames[4 * k], expected)  # grey GIF frames are exact


def test_an_mp4_walk_is_h264_video_of_every_frame(tmp_path):
    walk = gancli.interpolate("cats-dcgan", [1, 2], tmp_path / "walk.mp4", frames=6, fps=12, device="cpu")
    reader = imageio.get_reader(walk.path)
    frames = [f for f in reader]
    assert len(frames) == 12 and frames[0].shape == (256, 256, 3)
    assert reader.get_meta_data()["codec"] == "h264" and reader.get_meta_data()["fps"] == 12
    assert [p.name for p in tmp_path.iterdir()] == ["walk.mp4"]  # no temp file left


def test_a_class_morph_starts_at_the_first_class_and_reaches_the_second(tmp_path):
    walk = gancli.interpolate("mnist-cdcgan", "5", tmp_path / "morph.gif", frames=6, classes="3,8", device="cpu")
    frames = gif_frames(walk.path)
    assert walk.kind == "classes" and walk.stops == ["3", "8"] and len(frames) == 12
    for k, digit in enumerate("38"):
        expected = gancli.generate_array("mnist-cdcgan", 1, seed=5, classes=digit, device="cpu", precision="fp32")
        np.testing.assert_array_equal(frames[6 * k], video_frames(expected)[0])


def test_the_embedding_table_is_read_from_the_onnx_file_without_onnx():
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    path = resolve_model("mnist-cdcgan")
    ours = read_float_initializer(path, EMBEDDING_INITIALIZER)
    theirs = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
              if t.name == EMBEDDING_INITIALIZER][0]
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1"], "at least two seeds"),
    (["--seeds", "1,2", "--frames", "1"], "--frames must be an integer >= 2"),
    (["--seeds", "1,2", "--out", "{tmp}/walk.avi"], "as .mp4 or .gif"),
    (["--seeds", "1,2", "--out", "{tmp}/missing/walk.mp4"], "does not exist"),
    (["--seeds", "1,2", "--out", "/proc/walk.mp4"], "cannot be written"),
    (["--seeds", "1,x"], "--seeds takes integers"),
    (["--classes", "3,8"], "unconditional model"),
    (["--model", "mnist-cdcgan", "--seeds", "1,2", "--classes", "3,8"], "one seed"),
    (["--model", "mnist-cdcgan", "--classes", "3,cat"], "no such class"),
])
def test_bad_input_is_one_line_exit_1_and_no_file(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "walk.mp4")]
    if "--model" not in args:
        args += ["--model", "mnist-dcgan"]
    result = CliRunner().invoke(app, ["interpolate", "--device", "cpu", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.count("error:") == 1
    assert list(tmp_path.rglob("*")) == []


def test_interpolate_never_loads_torch(tmp_path):
    code = ("import sys, gancli; gancli.interpolate('mnist-dcgan', '1,2', sys.argv[1], frames=2, device='cpu'); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.gif")], check=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, export_untrained):
    return export_untrained(tmp_path_factory.mktemp("model") / "tiny.onnx", "dcgan", 8, 1, 32, 4)


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_frames_stream_to_the_file_in_bounded_memory(tmp_path, tiny, suffix):
    """Each frame goes to the encoder as it is made: a walk of 5x the frames peaks at about the same Python
    memory, numpy's arrays included (every enlarged frame was held at once: 14.6 GiB for --frames 100000). Both
    walks fill whole batches of 64, the most a batch holds."""
    def peak(frames: int) -> int:
        tracemalloc.start()
        walk = gancli.interpolate(tiny, "1,2", tmp_path / f"walk-{frames}{suffix}", frames=frames, device="cpu")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert walk.frames == 2 * frames
        return peak

    peak(2)  # imports and first-use caches, outside the comparison
    few, many = peak(64), peak(320)
    assert many < 1.2 * few, (few, many)
    if suffix == ".gif":
        assert len(gif_frames(tmp_path / "walk-320.gif")) == 640


def test_absurd_frames_are_one_line_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(walks, "GeneratorSession", lambda *a, **k: pytest.fail("the model was loaded"))
    result = CliRunner().invoke(app, ["interpolate", "--model", "mnist-dcgan", "--seeds", "1,2", "--frames", "100000",
                                      "--out", str(tmp_path / "walk.gif"), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: --frames 100,000") and result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
