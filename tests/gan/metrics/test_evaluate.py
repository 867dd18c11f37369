"""gancli.gan.metrics.evaluate: the evaluation as a whole (real data, reference figures, scores, memorisation, a model)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gancli.gan.metrics import evaluate
from gancli.gan.errors import EvalError
from gancli.gan.metrics.evaluate import evaluate_model
from gancli.gan.metrics.detectors import mnist_classifier_network
from gancli.gan.metrics.references import RealData, load_real_data
from gancli.gan.metrics.evaluate import IMAGE_SETS
from gancli.gan.metrics.references import untrained_generator_images
from gancli.runtime.errors import GenerateError


@pytest.fixture(scope="module")
def mnist(data_root) -> RealData:
    return load_real_data("mnist", data_root, (28, 28, 1), download=False)


def test_evaluate_images_reports_every_score_beside_its_references(mnist):
    real = RealData("mnist", mnist.training[:5000], mnist.test[:500], mnist.training[:5000], True, "subset")
    untrained = untrained_generator_images("dcgan", 16, 1, 28, 200, width=8, seed=0)
    generated = mnist.test[500:800]
    networks = [mnist_classifier_network()]
    result = evaluate.evaluate_images(generated, untrained, real, networks, ["a note"], kid_subsets=5,
                                      kid_subset_size=100, memorisation_sample=100)
    json.loads(json.dumps(result))  # what the CLI writes
    rows = {r["metric"]: r for r in result["scores"]}
    assert set(rows) == {"FCD", "KID", "IS", "precision", "recall", "density", "coverage"}
    assert {r["feature_network"] for r in result["scores"]} == {"mnist-classifier"}
    for row in rows.values():
        assert set(IMAGE_SETS) <= set(row)
    # real digits score near the real floor and far from the untrained generator
    assert rows["FCD"]["generated"]["value"] < 0.1 * rows["FCD"]["untrained_generator"]["value"]
    assert rows["IS"]["generated"]["value"] > 8.0 > rows["IS"]["untrained_generator"]["value"]
    # real digits lie on the real manifold (precision, recall near the floor's); the untrained generator's do not
    for metric in ("precision", "recall", "density", "coverage"):  # coverage of 300 against 5,000 stays low
        assert rows[metric]["generated"]["value"] > (0.5 if metric in ("precision", "recall") else 0.1)
        assert rows[metric]["untrained_generator"]["value"] < 0.05
        assert rows[metric]["better"] == "higher" and rows[metric]["k"] == 3
        assert rows[metric]["generated"]["n"] == 300 and rows[metric]["reference_n"] == 5000
    assert len(result["class_shares"]["generated"]) == 10
    assert result["notes"] == ["a note"]
    assert result["memorisation"]["num_flagged"] == 0


def test_generated_images_of_the_wrong_shape_are_one_clear_error(mnist):
    real = RealData("mnist", mnist.training[:100], mnist.test[:50], mnist.training[:100], True, "subset")
    wrong = np.zeros((20, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(EvalError, match=r"untrained generator images are \[28, 28, 1\] but the real ones are \[32, "):
        evaluate.evaluate_images(wrong, mnist.test[:20], real, [])
    with pytest.raises(EvalError, match="must be uint8"):
        evaluate.evaluate_images(wrong.astype(np.float32), wrong, real, [])


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory, export_untrained):
    return export_untrained(tmp_path_factory.mktemp("model") / "generator-uint8.onnx", "dcgan", 16, 1, 28, 8,
                            dataset="mnist")


def test_evaluate_model_scores_a_model_file_and_names_it(mnist_model, data_root):
    lines = []
    result = evaluate_model(mnist_model, "mnist", 200, data_root=data_root, device="cpu", log=lines.append,
                            inception=False)  # Inception over 60,000 MNIST images is hours of CPU
    rows = {(r["metric"], r["feature_network"]): r for r in result["scores"]}
    fcd = rows[("FCD", "mnist-classifier")]
    assert fcd["generated"]["value"] > 10 * fcd["real_test"]["value"]
    assert result["counts"] == {"generated": 200, "reference": 60_000, "real_test": 10_000, "untrained_generator": 200}
    assert result["model"] == {"path": str(mnist_model), "weights_sha256": "", "arch": "dcgan", "dataset": "mnist",
                               "precision": "fp32", "seed": 0, "truncation_psi": 1.0}
    assert any("memorisation" in line for line in lines)


@pytest.mark.parametrize("n", [9, 1, 0, -5])
def test_evaluate_model_refuses_too_few_images(mnist_model, n):
    with pytest.raises(EvalError, match=f"-n {n} is too few to score"):
        evaluate_model(mnist_model, "mnist", n)


def test_evaluate_model_of_a_missing_model_is_a_generate_error(tmp_path):
    with pytest.raises(GenerateError, match="not found"):
        evaluate_model(tmp_path / "nope.onnx", "mnist", 10)


def test_the_untrained_ceiling_has_the_width_and_depth_of_an_exported_model_with_nothing_beside_it(
        tmp_path, monkeypatch, export_untrained):
    """`gancli export` writes RUN/export/ with no generator.json: the width and depth come from the ONNX metadata."""
    from gancli.gan.metrics import evaluate as evaluate_module

    (tmp_path / "export").mkdir()
    model = export_untrained(tmp_path / "export" / "generator-uint8.onnx", "dcgan", 16, 1, 28, 16, dataset="mnist",
                             depth=2)
    built = {}

    def untrained(arch, latent_dim, channels, img_size, n, width, depth):
        built.update(width=width, depth=depth)
        return np.zeros((n, img_size, img_size, channels), np.uint8)

    monkeypatch.setattr(evaluate_module, "untrained_generator_images", untrained)
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *args, **kwargs: {"notes": []})
    evaluate_module.evaluate_model(model, "mnist", n=10, device="cpu", inception=False)
    assert built == {"width": 16, "depth": 2}


def test_the_api_returns_a_typed_result_that_round_trips_through_its_json(tmp_path, data_root):
    import gancli
    from gancli.gan.metrics.result import EvalResult

    result = gancli.evaluate("mnist-mlp", "mnist", n=200, device="cpu", inception=False, out=tmp_path / "e.json",
                             data_root=data_root)
    fcd = result.score("FCD")
    assert fcd.better == "lower" and fcd.generated.n == 200 and fcd.generated.value > fcd.real_test.value
    assert result.score("precision").k == 3 and 0 <= result.score("recall").generated.value <= 1
    written = json.loads((tmp_path / "e.json").read_text())
    assert result.to_dict() == written and EvalResult.from_dict(written) == result
    with pytest.raises(KeyError, match="no FID"):
        result.score("FID")
