"""gancli's command line (cli.py) as users meet it: help at 80 columns, --version, one-line errors and
warnings, and train / eval (class-conditional models too) / merge end to end through Typer's CliRunner
(generate: test_runtime.py, shards: test_shards.py)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import pytest
import torch
import typer
from typer.core import TyperOption
from typer.testing import CliRunner

import gancli
from gancli import cli
from gancli.cli import app
from gancli.runtime.session import DeviceFallbackWarning

runner = CliRunner()
COMMANDS = ["train", "export", "generate", "interpolate", "merge", "eval"]


def help_text(*command: str, columns: int = 80) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": str(columns)}, terminal_width=columns)
    assert result.exit_code == 0, result.output
    return result.output


# ---- help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=["gancli", *COMMANDS])
def test_help_reads_well_at_80_columns(command):
    text = help_text(*command)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert not re.search(r"<[a-z]+>", text), "a <type> placeholder is shown"
    assert "…" not in text, "something is cut off"
    examples = [line.strip() for line in text.split("Examples", 1)[1].splitlines() if line.strip().startswith("gancli ")]
    assert 2 <= len(examples) <= 4, examples
    # the help column (where defaults are shown) is at least 34 characters wide everywhere
    starts = [line.index("[default:") for line in lines if "[default:" in line]
    assert all(80 - 2 - start >= 34 for start in starts), (command, starts)


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=["gancli", *COMMANDS])
def test_help_paragraphs_are_not_wrapped_by_hand(command):
    """On a wide terminal every paragraph of a command's description is one line: no line breaks in the source."""
    text = help_text(*command, columns=1000)
    description = text.split("Usage:", 1)[1].split("╭", 1)[0]
    paragraphs = [p for p in re.split(r"\n\s*\n", description.split("\n", 1)[1]) if p.strip()]
    assert paragraphs
    assert all(p.strip().count("\n") == 0 for p in paragraphs), paragraphs


def test_generate_help_says_what_the_readme_says():
    text = " ".join(help_text("generate", columns=400).split())
    assert "O_TMPFILE linked into place where the file system supports it, else a temp name and a rename" in text
    assert "a model folder" in text and ".onnx file" in text
    assert all(name in text for name in ("cats-dcgan", "mnist-cdcgan", "mnist-dcgan", "mnist-mlp"))
    assert "mnist-classifier" not in text
    assert "--merge-manifests" not in text


def test_train_help_lists_every_flag_and_every_value_flag_with_its_default():
    command = typer.main.get_command(app).commands["train"]
    text = help_text("train", columns=250)
    for option in command.params:
        if not isinstance(option, TyperOption) or option.hidden:
            continue
        flag = option.opts[0]
        line = next((ln for ln in text.splitlines() if ln.startswith("│") and f" {flag} " in ln), None)
        assert line is not None, f"{flag} missing from --help"
        if not option.is_flag:
            block = text[text.index(line):].split("\n│ --")[0]
            assert "[default:" in block, f"{flag} shows no default"


def test_train_has_a_flag_for_every_config_field_and_a_field_for_every_flag():
    """Each training option is declared once, in TrainConfig; the command is built from it."""
    from dataclasses import fields

    from gancli.gan.training.config import TrainConfig

    command = typer.main.get_command(app).commands["train"]
    flags = {param.name.removeprefix("no_") for param in command.params if param.name != "help"}
    options = {f.name for f in fields(TrainConfig) if f.metadata}
    assert flags == options | {"resume", "dry_run"}
    assert {f.name for f in fields(TrainConfig)} - options == {"lineage"}  # written by gancli, not an option


def test_version_prints_the_version_without_loading_torch():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"gancli {gancli.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", gancli.__version__)
    probe = """
import sys
from typer.testing import CliRunner
from gancli.cli import app
for args in (["--version"], ["--help"], *([c, "--help"] for c in ("train", "export", "generate", "merge", "eval"))):
    assert CliRunner().invoke(app, args).exit_code == 0, args
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "onnxruntime")))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- one-line errors and warnings ---------------------------------------------------------------

def test_gancli_errors_are_one_red_line_and_exit_1():
    with pytest.raises(typer.Exit) as e, cli.terminal_edge():
        raise gancli.GancliError("something is wrong; do this")
    assert e.value.exit_code == 1


def test_the_cuda_fallback_is_one_short_line_once(capsys):
    with cli.terminal_edge():
        for _ in range(3):
            warnings.warn("CUDA unavailable (no usable NVIDIA GPU, driver, ...); generating on the CPU",
                          DeviceFallbackWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) <= 80, err
    assert "warning: no usable CUDA GPU; running on the CPU" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a machine without a GPU")
def test_a_cpu_only_generate_warns_once_without_a_source_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gancli.cli", "generate", "-n", "3", "--out", str(tmp_path / "o"),
                          "--model", "mnist-mlp"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["warning: no usable CUDA GPU; running on the CPU (--device cpu skips this check)"]


# ---- train --------------------------------------------------------------------------------------

def test_dry_run_prints_the_resolved_preset_with_overrides(tmp_path):
    result = runner.invoke(app, ["train", "--dataset", "cats", "--lr-d", "0.001", "--no-spectral-norm", "--dry-run",
                                 "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.output)
    assert (cfg["img_size"], cfg["channels"], cfg["lr_d"], cfg["dataset"]) == (64, 3, 0.001, "cats")
    assert (cfg["recipe"], cfg["diffaugment"], cfg["lr_g"]) == ("sngan-diffaugment", "color,translation,cutout", 2e-4)
    assert (cfg["spectral_norm"], cfg["d_depth"]) == (False, 2)
    assert cfg["amp"] is torch.cuda.is_available()  # mixed precision only where it trains on CUDA
    classic = json.loads(runner.invoke(app, ["train", "--recipe", "classic", "--dry-run"]).output)
    assert (classic["loss"], classic["d_batch_norm"], classic["real_label"], classic["batch_size"]) == ("bce", True, 0.9, 128)
    assert classic["d_depth"] == 1
    shallow = json.loads(runner.invoke(app, ["train", "--d-depth", "1", "--dry-run"]).output)
    assert (shallow["recipe"], shallow["d_depth"]) == ("sngan", 1)
    assert not any(tmp_path.iterdir()), "--dry-run must not create a run directory"


def test_bad_option_is_one_line_and_exit_1():
    result = runner.invoke(app, ["train", "--arch", "resnet", "--dry-run"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "--arch 'resnet' is not known; use one of mlp, dcgan" in result.output


def test_missing_data_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.MNIST.download", _offline)
    result = runner.invoke(app, ["train", "--data-root", str(tmp_path), "--out-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert str(tmp_path / "mnist") in result.output


def _offline(self):
    raise OSError("no network")


def test_cli_short_real_run_and_resume(data_root, tmp_path):
    args = ["train", "--dataset", "mnist", "--arch", "mlp", "--n-epochs", "1", "--limit", "64", "--batch-size", "32",
            "--device", "cpu", "--out-dir", str(tmp_path)]
    result = runner.invoke(app, args, env={"GANCLI_DATA_ROOT": str(data_root)})
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "00000-mnist-mlp"
    assert (run_dir / "generator.json").is_file()
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--n-epochs", "2"],
                           env={"GANCLI_DATA_ROOT": str(data_root)})
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "generator.json").read_text())["epochs"] == 2


# ---- eval ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def evaluated(data_root, tmp_path_factory, export_untrained):
    """One real `gancli eval --out` of an untrained DCGAN on 200 MNIST-sized images, run from an empty folder."""
    model = export_untrained(tmp_path_factory.mktemp("model") / "generator-uint8.onnx", "dcgan", 16, 1, 28, 8,
                             dataset="mnist")
    cwd, out = tmp_path_factory.mktemp("cwd"), tmp_path_factory.mktemp("out") / "scores.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        result = runner.invoke(app, ["eval", str(model), "--dataset", "mnist", "-n", "200", "--data-root", str(data_root),
                                     "--device", "cpu", "--no-inception", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert not any(cwd.iterdir()), "eval wrote into the current folder"
    return result.output, json.loads(out.read_text()), model


def test_eval_scores_a_generator_against_mnist(evaluated):
    output, scores, model = evaluated
    rows = {(r["metric"], r["feature_network"]): r for r in scores["scores"]}
    fcd = rows[("FCD", "mnist-classifier")]
    # an untrained generator is far from real digits; real test digits are close to real train digits
    assert fcd["generated"]["value"] > 10 * fcd["real_test"]["value"]
    assert rows[("IS", "mnist-classifier")]["real_test"]["value"] > 9.0
    assert scores["counts"]["generated"] == 200
    assert scores["model"]["path"] == str(model) and scores["model"]["arch"] == "dcgan"
    # --no-inception (Inception over MNIST's 60,000 training images is test_evaluate's business): a note says so
    assert not any(r["feature_network"].startswith("inception") for r in scores["scores"])
    assert any("Inception" in note for note in scores["notes"]) and "note:" in output
    assert "digit shares:" in output and "results written to" in output


def test_eval_writes_json_only_when_asked(evaluated, tmp_path, monkeypatch):
    _, scores, model = evaluated
    calls = []
    from gancli.gan.metrics.result import EvalResult

    monkeypatch.setattr(gancli, "evaluate", lambda *args, **kwargs: calls.append((args, kwargs))
                        or EvalResult.from_dict(scores))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["eval", str(model), "--dataset", "mnist", "-n", "200"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert calls and calls[0][0] == (str(model), "mnist", 200)
    assert "results written" not in result.output
    assert not any(tmp_path.iterdir())


def test_eval_of_a_missing_model_is_one_line(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "nope.onnx"), "--dataset", "mnist", "-n", "10"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "not found" in result.output


@pytest.fixture(scope="module")
def evaluated_conditional(data_root, tmp_path_factory, export_untrained):
    """`gancli eval --out` of an untrained class-conditional DCGAN (the ten digits), 200 images, scored by the MNIST
    classifier alone (Inception is test_evaluate's business)."""
    from gancli.gan.metrics import evaluate as evaluate_module
    from gancli.gan.metrics.detectors import mnist_classifier_network

    model = export_untrained(tmp_path_factory.mktemp("cmodel") / "generator-uint8.onnx", "dcgan", 16, 1, 28, 8,
                             dataset="mnist", class_names=[str(d) for d in range(10)])
    out = tmp_path_factory.mktemp("cout") / "scores.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_module, "feature_networks",
                   lambda dataset, *args, device="cpu", **kwargs: ([mnist_classifier_network(device)], []))
        result = runner.invoke(app, ["eval", str(model), "--dataset", "mnist", "-n", "200", "--data-root", str(data_root),
                                     "--device", "cpu", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out.read_text())


def test_eval_of_a_conditional_model_adds_label_accuracy_per_class_fcd_and_cas(evaluated_conditional):
    output, scores = evaluated_conditional
    conditional = scores["conditional"]
    assert conditional["class_names"] == [str(d) for d in range(10)] and conditional["images_per_class"] == [20] * 10
    assert scores["model"]["class_names"] == conditional["class_names"]
    accuracy, fcd, cas = conditional["label_accuracy"], conditional["fcd_per_class"], conditional["cas"]
    # an untrained generator draws no digit it is asked for; real digits are what the classifier knows
    assert accuracy["generated"] < 0.5 < 0.98 < accuracy["real_test"]
    assert len(accuracy["per_class"]["generated"]) == len(fcd["generated"]["per_class"]) == 10
    assert fcd["generated"]["mean"] > 10 * fcd["real_test"]["mean"]
    assert (cas["train_images"], cas["test_images"], cas["epochs"]) == (200, 10_000, 5)
    assert 0.0 <= cas["generated"] <= 1.0 and cas["real_train"] > 0.5
    for text in ("class-conditional: 200 images of 10 classes", "label accuracy", "FCD per class, mean",
                 "CAS (200 images, 5 epochs)", "(trained on real)", "per class (label accuracy / FCD): 0:"):
        assert text in output, text


def test_eval_of_an_unconditional_model_has_no_conditional_scores(evaluated):
    output, scores, _ = evaluated
    assert "conditional" not in scores and "label accuracy" not in output


# ---- merge --------------------------------------------------------------------------------------

def test_merge_of_a_folder_without_shards_or_a_bad_n_is_one_line(tmp_path):
    result = runner.invoke(app, ["merge", "-n", "10", "--out", str(tmp_path)])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert "holds no manifest-K-of-M.jsonl" in result.output
    result = runner.invoke(app, ["merge", "-n", "0", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "-n must be a number of images from 1" in result.output


def test_generate_has_no_merge_flag_any_more(tmp_path):
    result = runner.invoke(app, ["generate", "-n", "3", "--out", str(tmp_path), "--merge-manifests"])
    assert result.exit_code == 1 and result.output.startswith("error: No such option")


def test_ctrl_c_twice_in_train_points_to_resume_and_exits_130(monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("gancli.gan.training.loop.train", interrupted)
    result = runner.invoke(app, ["train", "--out-dir", str(tmp_path)])
    assert result.exit_code == 130
    assert "gancli train --resume RUN_DIR" in result.output and result.output.strip().count("\n") == 0
