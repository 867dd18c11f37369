"""Every option and path is checked before any work and any write, in one place per command (docs/faults.md):
a bad value of any option of any command is one `error:` line naming it, exit 1, and nothing written: no run
folder, no output folder, no generate.json or lock file. Typer's own parse errors read the same way."""
from __future__ import annotations

import dataclasses
import os
import stat
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gancli.cli import app

runner = CliRunner()


def one_error_line(result, *names: str) -> str:  # noqa: ANN001
    """The run's output is one `error:` line (exit 1, no traceback), naming each of `names`."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    for name in names:
        assert name in result.output, (name, result.output)
    return result.output.strip()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---- train: every numeric option, out of range ------------------------------------------------------------

def numeric_train_options() -> list[tuple[str, str]]:
    """(flag, bad value) for every number TrainConfig declares: -1, NaN, infinities and overflow are wrong for
    each of them; the bounded ones get a value just out of their range too."""
    from gancli.gan.training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    cases = []
    for f in dataclasses.fields(TrainConfig):
        kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        if not f.metadata or kind not in (int, float):
            continue
        flag = "--" + f.name.replace("_", "-")
        cases += [(flag, value) for value in ("-1", "nan", "inf", "-inf", "1e400")]
        if f.name in ("b1", "b2", "ema_decay", "val_fraction", "g_dropout", "real_label"):
            cases.append((flag, "1.5"))
    cases += [("--seed", str(2 ** 64)), ("--seed", str(2 ** 63)), ("--lr-g", "0"), ("--out-dir", ""),
              ("--out-dir", " "), ("--device", "tpu"), ("--arch", "resnet"), ("--loss", "wgan"),
              ("--recipe", "best"), ("--diffaugment", "blur"), ("--n-epochs", "1e3")]
    return cases


@pytest.mark.parametrize("flag, value", numeric_train_options())
def test_every_bad_train_option_is_one_line_and_writes_nothing(tmp_path, monkeypatch, flag, value):
    import gancli.gan.training.loop as loop

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started"))
    one_error_line(runner.invoke(app, ["train", f"{flag}={value}"]), flag)
    assert files_under(tmp_path) == []  # no runs/, no empty run folder


def test_a_bad_train_option_with_dry_run_is_refused_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error_line(runner.invoke(app, ["train", "--dry-run", "--b2=-0.5"]), "--b2")


# ---- generate ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory, export_untrained) -> Path:
    return export_untrained(tmp_path_factory.mktemp("model") / "m.onnx", "mlp", 8, 1, 8, 4)


def generate_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    return [(["-n", "0"], "-n"), (["-n", "-5"], "-n"), (["-n", str(10 ** 9 + 1)], "-n"), (["-n", "1e3"], "-n"),
            (["--batch-size", "0"], "--batch-size"), (["--batch-size", "x"], "--batch-size"),
            (["--seed", "-1"], "--seed"), (["--seed", str(2 ** 128)], "--seed"), (["--seed", "abc"], "--seed"),
            (["--shard", "2/2"], "--shard"), (["--shard", "a"], "--shard"),
            (["--truncation", "0"], "--truncation"), (["--truncation", "1.5"], "--truncation"),
            (["--truncation", "nan"], "--truncation"), (["--format", "gif"], "format"),
            (["--layout", "tree"], "--layout"), (["--layout", "imagefolder"], "--layout"),
            (["--class", "3"], "class"), (["--precision", "int4"], "--precision"), (["--device", "tpu"], "tpu"),
            (["--model", "../nope/X"], "../nope/X"), (["--model", "missing.onnx"], "missing.onnx"),
            (["--grid", str(tmp_path)], "--grid"), (["--grid", str(tmp_path / "no" / "g.png")], "--grid"),
            (["--out", ""], "--out")]


@pytest.mark.parametrize("case", range(25))
def test_every_bad_generate_option_is_one_line_and_writes_nothing(tmp_path, model, case):
    args, name = generate_cases(tmp_path)[case]
    if "--model" not in args:
        args = [*args, "--model", str(model)]
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", "-n", "4", "--out", str(out), "--device", "cpu", *args])
    one_error_line(result, name)
    assert not out.exists()


def test_generate_cases_cover_the_list():
    assert len(generate_cases(Path("x"))) == 25


def test_generate_into_someone_elses_folder_writes_nothing_there(tmp_path, model):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "generate.json").write_text('{"not": "gancli"}')
    one_error_line(runner.invoke(app, ["generate", "-n", "4", "--out", str(theirs), "--model", str(model),
                                      "--device", "cpu"]))
    assert files_under(theirs) == ["generate.json"]


# ---- export ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    import torch

    from gancli.gan.artifact import GeneratorSpec, save_generator
    from gancli.gan.networks import build_generator

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("artifact")
    save_generator(build_generator("mlp", 8, 1, 8, 4),
                   GeneratorSpec(arch="mlp", latent_dim=8, channels=1, img_size=8, width=4, dataset="mnist",
                                 epochs=1, seed=0), folder)
    return folder


def export_cases() -> list[tuple[list[str], str]]:
    from gancli.export.onnx import MIN_OPSET, newest_opset

    return [(["--opset", str(MIN_OPSET - 1)], "--opset"), (["--opset", str(newest_opset() + 1)], "--opset"),
            (["--opset", "28"], "--opset"), (["--opset", "abc"], "--opset"), (["--format", "tflite"], "--format"),
            (["--format", "torchscript", "--fp16"], "--fp16"), (["--format", "torchscript", "--int8"], "--int8")]


@pytest.mark.parametrize("case", range(7))
def test_every_bad_export_option_is_one_line_and_writes_nothing(tmp_path, artifact, case):
    args, name = export_cases()[case]
    out = tmp_path / "out"
    one_error_line(runner.invoke(app, ["export", str(artifact), "--out", str(out), *args]), name)
    assert files_under(tmp_path) == []


def test_the_newest_opset_offered_is_one_onnxruntime_runs():
    import onnx

    from gancli.export.onnx import newest_opset

    assert 20 <= newest_opset() <= onnx.defs.onnx_opset_version()


# ---- eval: refused before any image is made ----------------------------------------------------------------

def eval_cases(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    (tmp_path / "folder").mkdir(exist_ok=True)
    return [("mnist-dcgan", ["--seed", "-1"], "--seed"), ("mnist-dcgan", ["--out", str(tmp_path / "folder")], "--out"),
            ("mnist-dcgan", ["--out", str(tmp_path / "no" / "x.json")], "--out"),
            ("mnist-dcgan", ["--out", "/proc/x.json"], "--out"), ("mnist-dcgan", ["--dataset", "cats"], "mnist"),
            ("cats-dcgan", ["--dataset", "mnist"], "mnist"),
            ("mnist-dcgan", ["--dataset", str(tmp_path / "missing")], "missing"),
            ("mnist-dcgan", ["--inception-weights", str(tmp_path / "missing.pth")], "missing.pth"),
            ("mnist-dcgan", ["-n", "5"], "-n"), ("mnist-dcgan", ["--device", "tpu"], "--device"),
            ("mnist-dcgan", ["--precision", "int4"], "--precision"), ("mnist-dcgan", ["--seed", "x"], "--seed")]


@pytest.mark.parametrize("case", range(12))
def test_every_bad_eval_option_is_refused_before_any_work(tmp_path, monkeypatch, case):
    import gancli.runtime.generate as runtime_generate

    model, args, name = eval_cases(tmp_path)[case]
    monkeypatch.setattr(runtime_generate, "generate_array", lambda *a, **k: pytest.fail("images were made"))
    if "--dataset" not in args:
        args = [*args, "--dataset", "mnist"]
    before = files_under(tmp_path)
    one_error_line(runner.invoke(app, ["eval", model, "--device", "cpu", *args]), name)
    assert files_under(tmp_path) == before


# ---- merge -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, name", [(["-n", "0"], "-n"), (["-n", "x"], "-n"), (["-n", str(10 ** 9 + 1)], "-n")])
def test_every_bad_merge_option_is_one_line_and_writes_nothing(tmp_path, args, name):
    one_error_line(runner.invoke(app, ["merge", "--out", str(tmp_path), *args]), name)
    assert files_under(tmp_path) == []


def test_a_missing_merge_folder_is_one_line(tmp_path):
    one_error_line(runner.invoke(app, ["merge", "-n", "4", "--out", str(tmp_path / "missing")]), "missing")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", [["generate", "-n", "3"], ["merge", "-n", "3"], ["train"], ["eval", "m"],
                                     ["export"]])
def test_typer_parse_errors_read_as_gancli_errors(command):
    """An unknown option, a missing value or a value of the wrong type: one error line, exit 1."""
    one_error_line(runner.invoke(app, [*command, "--no-such-option"]), "--no-such-option")


# ---- single-file outputs: regular files only ---------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["generate", "-n", "4", "--out", "{tmp}/out", "--model", "{model}", "--grid", "{fifo}.png"],
    ["eval", "mnist-dcgan", "--dataset", "mnist", "--out", "{fifo}.json"],
    ["eval", "mnist-dcgan", "--dataset", "mnist", "--truncation-sweep", "0.5,1", "--out", "{fifo}.json"],
    ["interpolate", "--model", "mnist-dcgan", "--seeds", "1,2", "--out", "{fifo}.gif"],
])
def test_an_output_file_that_is_a_fifo_is_refused_before_any_work(tmp_path, monkeypatch, model, command):
    """--grid, eval's --out and interpolate's --out replaced whatever was at the path (as root, /dev/full
    became a JSON file): a FIFO, socket or device there is one line naming it, and nothing is made or written."""
    import gancli.runtime.generate as runtime_generate
    import gancli.runtime.interpolate as runtime_interpolate

    monkeypatch.setattr(runtime_generate, "GeneratorSession", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr(runtime_generate, "generate_array", lambda *a, **k: pytest.fail("images were made"))
    monkeypatch.setattr(runtime_interpolate, "GeneratorSession", lambda *a, **k: pytest.fail("a model was loaded"))
    fifo = tmp_path / "fifo"
    args = [a.format(tmp=tmp_path, model=model, fifo=fifo) for a in command]
    fifo = Path(args[-1])
    os.mkfifo(fifo)
    one_error_line(runner.invoke(app, [*args, "--device", "cpu"]), str(fifo), "not a regular file")
    assert files_under(tmp_path) == [fifo.name] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
