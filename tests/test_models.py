"""Every generator shipped in models/ loads, carries valid metadata and passes parity."""
from __future__ import annotations

import json

import pytest

from gancli.export.parity import check_parity
from gancli.gan.artifact import load_generator
from gancli.models import models_dir
from gancli.runtime.models import resolve_model
from gancli.runtime.session import GeneratorSession

MODELS_DIR = models_dir()
SHIPPED = sorted(p.parent.name for p in MODELS_DIR.glob("*/generator.json"))


def test_the_default_model_is_shipped():
    assert "cats-dcgan" in SHIPPED
    assert resolve_model(None) == MODELS_DIR / "cats-dcgan" / "generator-uint8.onnx"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_with_valid_metadata_and_parity(name):
    folder = MODELS_DIR / name
    G, spec = load_generator(folder)  # checks the weights hash against generator.json
    onnx_files = [folder / "generator.onnx", folder / "generator-uint8.onnx", folder / "generator-int8-uint8.onnx"]
    for path in onnx_files:
        meta = GeneratorSession(path, device="cpu").metadata
        assert (meta.latent_dim, meta.channels, meta.img_size) == (spec.latent_dim, spec.channels, spec.img_size)
        assert meta.weights_sha256 == spec.weights_sha256 and meta.arch == spec.arch
    check_parity(G, onnx_files, batch_sizes=(1, 7, 64), seeds=(0, 1, 2))  # raises ParityError on a miss
    for extra in ("samples.png", "loss.png", "eval.json", "eval-int8.json", "parity.json"):
        assert (folder / extra).is_file(), f"{name} ships no {extra}"
    scores = json.loads((folder / "eval.json").read_text())
    assert scores["model"]["weights_sha256"] == spec.weights_sha256, "eval.json scored other weights"


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.startswith("mnist-")])
def test_int8_graph_keeps_the_image_quality(name):
    """int8 is offered for speed only if the scores `gancli eval` gives its images stay those of fp32."""
    fp32, int8 = (json.loads((MODELS_DIR / name / f).read_text()) for f in ("eval.json", "eval-int8.json"))
    assert (fp32["model"]["precision"], int8["model"]["precision"]) == ("fp32", "int8")
    assert fp32["model"]["weights_sha256"] == int8["model"]["weights_sha256"]
    value = {(run, row["metric"]): row["generated"]["value"]
             for run, scores in (("fp32", fp32), ("int8", int8)) for row in scores["scores"]}
    assert abs(value["int8", "IS"] - value["fp32", "IS"]) <= 0.02 * value["fp32", "IS"]
    # within the spread of FCD itself: real test vs train scores ~0.14 on this classifier
    assert abs(value["int8", "FCD"] - value["fp32", "FCD"]) <= max(0.05 * value["fp32", "FCD"], 0.15)
    for fp32_share, int8_share in zip(fp32["class_shares"]["generated"], int8["class_shares"]["generated"]):
        assert abs(int8_share - fp32_share) <= 0.005


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_name_no_path_of_the_machine_that_made_them(name):
    for path in (MODELS_DIR / name).iterdir():
        if path.is_file() and path.suffix in (".onnx", ".json"):
            data = path.read_bytes()
            assert not any(root in data for root in (b"/work/", b"/root/", b"/home/", b"/tmp/")), path
