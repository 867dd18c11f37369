"""`gancli eval` end to end on a small n, through the runtime and the shipped MNIST classifier."""
from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from gancli.cli import app
from gancli.export.onnx import export_onnx
from gancli.gan.artifact import GeneratorSpec
from gancli.gan.networks import build_generator
from gancli.runtime.metadata import OUTPUT_UINT8_NHWC

runner = CliRunner()


def test_eval_scores_a_generator_against_mnist(data_root, tmp_path):
    torch.manual_seed(0)
    spec = GeneratorSpec(arch="dcgan", latent_dim=16, channels=1, img_size=28, width=8, dataset="mnist", epochs=0, seed=0)
    model = tmp_path / "generator-uint8.onnx"
    export_onnx(build_generator("dcgan", 16, 1, 28, 8).eval(), spec, model, OUTPUT_UINT8_NHWC)
    out = tmp_path / "scores.json"
    result = runner.invoke(app, ["eval", str(model), "--dataset", "mnist", "-n", "200", "--data-root", str(data_root),
                                 "--device", "cpu", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    rows = {(r["metric"], r["feature_network"]): r for r in scores["scores"]}
    fcd = rows[("FCD", "mnist-classifier")]
    # an untrained generator is far from real digits; real test digits are close to real train digits
    assert fcd["generated"]["value"] > 10 * fcd["real_test"]["value"]
    assert rows[("IS", "mnist-classifier")]["real_test"]["value"] > 9.0
    assert scores["counts"]["generated"] == 200
    assert scores["targets"]["passed"] is False
    assert "no Inception weights found" in result.output
    assert "target classifier_is: FAIL" in result.output


def test_eval_of_a_missing_model_is_one_line(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "nope.onnx"), "--dataset", "mnist", "-n", "10"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "not found" in result.output
