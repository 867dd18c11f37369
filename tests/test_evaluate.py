"""gancli.gan.evaluate: the evaluation as a whole (real data, reference figures, scores, memorisation, a model)."""
from __future__ import annotations

import pytest
import torch

from gancli.export.onnx import export_onnx
from gancli.gan.artifact import GeneratorSpec
from gancli.gan.errors import EvalError
from gancli.gan.evaluate import evaluate_model
from gancli.gan.networks import build_generator
from gancli.runtime.errors import GenerateError
from gancli.runtime.metadata import OUTPUT_UINT8_NHWC


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    torch.manual_seed(0)
    spec = GeneratorSpec(arch="dcgan", latent_dim=16, channels=1, img_size=28, width=8, dataset="mnist", epochs=0, seed=0)
    path = tmp_path_factory.mktemp("model") / "generator-uint8.onnx"
    export_onnx(build_generator("dcgan", 16, 1, 28, 8).eval(), spec, path, OUTPUT_UINT8_NHWC)
    return path


def test_evaluate_model_scores_a_model_file_and_names_it(mnist_model, data_root):
    lines = []
    result = evaluate_model(mnist_model, "mnist", 200, data_root=data_root, device="cpu", log=lines.append)
    rows = {(r["metric"], r["feature_network"]): r for r in result["scores"]}
    fcd = rows[("FCD", "mnist-classifier")]
    assert fcd["generated"]["value"] > 10 * fcd["real_test"]["value"]
    assert result["counts"] == {"generated": 200, "reference": 60_000, "real_test": 10_000, "untrained_generator": 200}
    assert result["model"] == {"path": str(mnist_model), "weights_sha256": "", "arch": "dcgan", "dataset": "mnist",
                               "precision": "fp32", "seed": 0}
    assert "targets" not in result  # the project's own targets are not part of the public result
    assert any("memorisation" in line for line in lines)


@pytest.mark.parametrize("n", [1, 0, -5])
def test_evaluate_model_refuses_too_few_images(mnist_model, n):
    with pytest.raises(EvalError, match=f"-n {n} is too few to score"):
        evaluate_model(mnist_model, "mnist", n)


def test_evaluate_model_of_a_missing_model_is_a_generate_error(tmp_path):
    with pytest.raises(GenerateError, match="not found"):
        evaluate_model(tmp_path / "nope.onnx", "mnist", 10)
