"""Every generator shipped in models/ loads, carries valid metadata and passes parity."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.parity import check_parity
from gan.artifact import load_generator
from runtime.generate import resolve_model
from runtime.session import GeneratorSession

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
SHIPPED = sorted(p.parent.name for p in MODELS_DIR.glob("*/generator.json"))


def test_the_default_model_is_shipped():
    assert "cats-dcgan" in SHIPPED
    assert resolve_model(None) == MODELS_DIR / "cats-dcgan" / "generator-uint8.onnx"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_with_valid_metadata_and_parity(name):
    folder = MODELS_DIR / name
    G, spec = load_generator(folder)  # checks the weights hash against generator.json
    onnx_files = [folder / "generator.onnx", folder / "generator-uint8.onnx"]
    for path in onnx_files:
        meta = GeneratorSession(path, device="cpu").metadata
        assert (meta.latent_dim, meta.channels, meta.img_size) == (spec.latent_dim, spec.channels, spec.img_size)
        assert meta.weights_sha256 == spec.weights_sha256 and meta.arch == spec.arch
    check_parity(G, onnx_files, batch_sizes=(1, 7, 64), seeds=(0, 1, 2))  # raises ParityError on a miss
    for extra in ("samples.png", "loss.png", "eval.json", "parity.json"):
        assert (folder / extra).is_file(), f"{name} ships no {extra}"
    scores = json.loads((folder / "eval.json").read_text())
    assert scores["model"]["weights_sha256"] == spec.weights_sha256, "eval.json scored other weights"
