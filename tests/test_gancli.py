"""The public Python API in gancli/__init__.py: generate, generate_array (with labels for class-conditional
models), class_names, export, evaluate."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import gancli
from gancli.cli import app


def test_import_gancli_loads_neither_torch_nor_onnxruntime():
    probe = ("import sys, gancli; print(gancli.__version__, sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('torch', 'torchvision', 'onnxruntime', 'numpy', 'cv2')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(" ", 1) == [gancli.__version__, "[]\n"]


# `pip install gancli` without the train extra: torch cannot be imported (a None entry in sys.modules is what
# `import` and find_spec treat as missing). Each call of the API that needs torch, and the command that does the same.
LIGHT_INSTALL = """
import json, sys
sys.modules["torch"] = None
import gancli
from typer.testing import CliRunner
from gancli.cli import app

calls = {
    "train": (lambda: gancli.train("mnist"), ["train"]),
    "train_config": (lambda: gancli.train_config("mnist"), ["train", "--dry-run"]),
    "export_generator": (lambda: gancli.export_generator("run"), ["export", "run"]),
    "evaluate": (lambda: gancli.evaluate("mnist-dcgan", "mnist"), ["eval", "mnist-dcgan", "--dataset", "mnist"]),
    "truncation_sweep": (lambda: gancli.truncation_sweep("mnist-dcgan", "mnist", "0.5,1"),
                         ["eval", "mnist-dcgan", "--dataset", "mnist", "--truncation-sweep", "0.5,1"]),
}
found = {}
for name, (call, args) in calls.items():
    try:
        call()
        raised = None
    except Exception as e:
        raised = [type(e).__name__, isinstance(e, gancli.MissingExtra), str(e)]
    result = CliRunner().invoke(app, args)
    found[name] = {"api": raised, "cli": [result.exit_code, result.stderr]}
walk = CliRunner().invoke(app, ["interpolate", "--model", "mnist-mlp", "--seeds", "1,2", "--frames", "2", "--device",
                                "cpu", "--out", sys.argv[1]])
print(json.dumps({"calls": found, "interpolate": [walk.exit_code, walk.output]}))
"""


def test_without_torch_the_api_raises_the_clis_one_line_error(tmp_path):
    """gancli.MissingExtra (a GancliError, at the top level so that callers can catch it by name)."""
    assert issubclass(gancli.MissingExtra, gancli.GancliError) and "MissingExtra" in gancli.__all__
    out = subprocess.run([sys.executable, "-c", LIGHT_INSTALL, str(tmp_path / "walk.gif")], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    for name, seen in found["calls"].items():
        kind, is_missing_extra, message = seen["api"] or [None, False, ""]
        assert (kind, is_missing_extra) == ("MissingExtra", True), f"gancli.{name}: {seen['api']}"
        assert seen["cli"] == [1, f"error: {message}\n"], name  # the same line as the command's
        assert "needs torch" in message and "pip install 'gancli[train]'" in message, message
        assert "(it runs generate, merge, serve and interpolate only)" in message, message
    # the message names every command the light install runs: every one but train, export and eval
    assert set(typer.main.get_command(app).commands) == {"generate", "merge", "serve", "interpolate", "train",
                                                         "export", "eval"}
    assert found["interpolate"][0] == 0, found["interpolate"]
    assert (tmp_path / "walk.gif").stat().st_size > 0


def test_generate_array_is_what_the_cli_writes(tmp_path):
    images = gancli.generate_array("mnist-mlp", 8, seed=3, device="cpu")
    assert images.shape == (8, 28, 28, 1) and images.dtype == np.uint8
    result = CliRunner().invoke(app, ["generate", "-n", "8", "--out", str(tmp_path), "--model", "mnist-mlp",
                                      "--seed", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*/*.png"))
    assert len(files) == 8
    written = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files])[..., None]
    np.testing.assert_array_equal(images, written)
    again = gancli.generate_array("mnist-mlp", 4, seed=3, device="cpu")  # image i depends on (seed, i) only
    np.testing.assert_array_equal(again, images[:4])


def test_generate_array_default_model_is_cats_dcgan():
    images = gancli.generate_array(n=2, device="cpu")
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8


def test_generate_writes_files_and_returns_its_result(tmp_path):
    result = gancli.generate(5, tmp_path, model="mnist-dcgan", device="cpu", batch_size="2", fmt="npz")
    assert (result.made, result.already, result.batch_size) == (5, 0, 2)
    assert (tmp_path / "manifest.jsonl").is_file() and list(tmp_path.glob("*/*.npz"))


@pytest.mark.parametrize("call, message", [
    (lambda tmp: gancli.generate_array("no-such-model", 4), "no model 'no-such-model'"),
    (lambda tmp: gancli.generate_array(str(tmp / "missing.onnx"), 4), "not found"),
    (lambda tmp: gancli.generate_array("mnist-mlp", 0), "positive"),
    (lambda tmp: gancli.generate_array("mnist-mlp", 4, device="tpu"), "unknown device"),
    (lambda tmp: gancli.generate(4, tmp, "mnist-mlp", batch_size="big"), "--batch-size"),
    (lambda tmp: gancli.generate(4, tmp, "mnist-mlp", shard="3/2"), "--shard"),
    (lambda tmp: gancli.export_generator(tmp / "no-run"), str("no-run")),
    (lambda tmp: gancli.evaluate("mnist-mlp", "mnist", n=1), "too few"),
])
def test_bad_input_raises_a_one_line_gancli_error(tmp_path, call, message):
    with pytest.raises(gancli.GancliError) as e:
        call(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("command, function, cli_only", [
    ("generate", gancli.generate, set()),
    ("export", gancli.export_generator, set()),
    # --no-inception is the API's inception=False; --truncation-sweep is gancli.truncation_sweep
    ("eval", gancli.evaluate, {"no_inception", "truncation_sweep"}),
])
def test_the_api_takes_every_argument_the_cli_has(command, function, cli_only):
    cli_names = {p.name for p in typer.main.get_command(app).commands[command].params} - cli_only
    missing = cli_names - set(inspect.signature(function).parameters)
    assert not missing


def test_export_generator_is_not_shadowed_by_the_export_subpackage():
    import gancli.export.api  # noqa: F401  (importing a subpackage sets gancli.export to it)

    assert callable(gancli.export_generator) and gancli.export_generator.__module__ == "gancli"


@pytest.fixture(scope="module")
def conditional_model(tmp_path_factory, export_untrained):
    return export_untrained(tmp_path_factory.mktemp("cmodel") / "generator-uint8.onnx", "mlp", 8, 1, 28, 8,
                            dataset="mnist", class_names=[str(d) for d in range(10)])


def test_generate_array_returns_labels_on_request(conditional_model, tmp_path):
    images, labels = gancli.generate_array(conditional_model, 12, seed=2, device="cpu", return_labels=True)
    assert images.shape == (12, 28, 28, 1) and labels.dtype == np.int64
    assert labels.tolist() == [i % 10 for i in range(12)]
    np.testing.assert_array_equal(gancli.generate_array(conditional_model, 12, seed=2, device="cpu"), images)
    sevens, seven_labels = gancli.generate_array(conditional_model, 4, seed=2, device="cpu", classes="7",
                                                 return_labels=True)
    assert seven_labels.tolist() == [7] * 4
    np.testing.assert_array_equal(sevens[1:2], gancli.generate_array(conditional_model, 2, seed=2, device="cpu",
                                                                     classes=[3, 7])[1:2])  # image 1: (seed, 1, 7)
    assert gancli.class_names(conditional_model) == [str(d) for d in range(10)]
    result = gancli.generate(4, tmp_path, conditional_model, device="cpu", seed=2, classes="7", file_layout="imagefolder")
    assert result.classes == ("7",) and len(list((tmp_path / "7").glob("*.png"))) == 4
    written = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in sorted((tmp_path / "7").glob("*.png"))])
    np.testing.assert_array_equal(written[..., None], sevens)


def test_unconditional_generate_array_is_unchanged():
    images = gancli.generate_array("mnist-mlp", 3, seed=1, device="cpu")
    assert isinstance(images, np.ndarray) and images.shape == (3, 28, 28, 1)
    again, labels = gancli.generate_array("mnist-mlp", 3, seed=1, device="cpu", return_labels=True)
    assert labels is None and np.array_equal(again, images)
    assert gancli.class_names("mnist-mlp") == []
    with pytest.raises(gancli.GancliError, match="unconditional model"):
        gancli.generate_array("mnist-mlp", 3, classes="7")
