"""gan/artifact.py: generator.json + generator.safetensors written as a pair, read back or refused with
one line naming the file and the way out (truncated, empty, foreign, newer, inconsistent)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from gancli import cli
from gancli.gan.artifact import (ARTIFACT_FORMAT_VERSION, SPEC_NAME, WEIGHTS_NAME, GeneratorSpec, load_generator,
                                 save_generator)
from gancli.gan.errors import ArtifactError
from gancli.gan.networks import build_generator

WAY_OUT = "copy generator.json and generator.safetensors again, together, from the run that wrote them"


@pytest.fixture
def artifact(tmp_path) -> Path:
    torch.manual_seed(0)
    G = build_generator("dcgan", 16, 1, 28, 8)
    save_generator(G, GeneratorSpec(arch="dcgan", latent_dim=16, channels=1, img_size=28, width=8, dataset="mnist",
                                    epochs=1, seed=0), tmp_path / "artifact")
    return tmp_path / "artifact"


def test_save_and_load_round_trip(artifact):
    G, spec = load_generator(artifact)
    assert (spec.latent_dim, spec.image_shape, spec.value_range) == (16, (1, 28, 28), (-1.0, 1.0))
    assert len(spec.weights_sha256) == 64
    assert sorted(p.name for p in artifact.iterdir()) == [SPEC_NAME, WEIGHTS_NAME], "a temp file was left"
    assert G(torch.zeros(2, 16)).shape == (2, 1, 28, 28)


def edit_spec(**changes):
    def damage(folder: Path) -> None:
        data = json.loads((folder / SPEC_NAME).read_text())
        for key, value in changes.items():
            if value is KeyError:
                del data[key]
            else:
                data[key] = value
        (folder / SPEC_NAME).write_text(json.dumps(data))
    return damage


def write(name: str, content: bytes):
    return lambda folder: (folder / name).write_bytes(content)


def truncate(name: str):
    return lambda folder: (folder / name).write_bytes((folder / name).read_bytes()[:(folder / name).stat().st_size // 2])


def foreign_weights(folder: Path) -> None:
    """Another model's safetensors, with generator.json's hash updated to match it."""
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(folder / WEIGHTS_NAME))
    from gancli.runtime.files import sha256_file
    edit_spec(weights_sha256=sha256_file(folder / WEIGHTS_NAME))(folder)


DAMAGES = {
    # generator.json
    "json truncated": (truncate(SPEC_NAME), SPEC_NAME, "is not valid JSON"),
    "json empty": (write(SPEC_NAME, b""), SPEC_NAME, "is empty"),
    "json binary": (write(SPEC_NAME, bytes(range(256))), SPEC_NAME, "is not a text file"),
    "json list": (write(SPEC_NAME, b"[1, 2]"), SPEC_NAME, "holds a JSON list"),
    "json foreign": (write(SPEC_NAME, b'{"model_type": "gpt2"}'), SPEC_NAME, "is not a gancli generator description"),
    "json newer": (edit_spec(format_version=ARTIFACT_FORMAT_VERSION + 1), SPEC_NAME, "was written by a newer gancli"),
    "json wrong type": (edit_spec(latent_dim="16"), SPEC_NAME, 'is damaged: latent_dim is "16", not an integer'),
    "json missing field": (edit_spec(arch=KeyError), SPEC_NAME, "has missing or unknown fields (missing arch)"),
    "json unknown arch": (edit_spec(arch="resnet"), SPEC_NAME, "describes a generator this gancli cannot build"),
    # generator.safetensors
    "weights truncated": (truncate(WEIGHTS_NAME), WEIGHTS_NAME, "does not match the hash in generator.json"),
    "weights empty": (write(WEIGHTS_NAME, b""), WEIGHTS_NAME, "is empty"),
    "weights text, no hash": (lambda f: (write(WEIGHTS_NAME, b"hello")(f), edit_spec(weights_sha256="")(f)),
                              WEIGHTS_NAME, "is not a readable safetensors file"),
    "weights foreign": (foreign_weights, SPEC_NAME, "disagrees with generator.safetensors"),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_a_damaged_artifact_is_one_line_naming_the_file_and_the_way_out(artifact, case):
    damage, name, expected = DAMAGES[case]
    damage(artifact)
    with pytest.raises(ArtifactError) as error:
        load_generator(artifact)
    message = str(error.value)
    assert "\n" not in message and expected in message
    assert name in message
    assert ("upgrade gancli" if "newer" in case else "copy both" if "foreign" in case and "weights" in case
            else WAY_OUT) in message

    result = CliRunner().invoke(cli.app, ["export", str(artifact), "--format", "torchscript"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert sorted(p.name for p in artifact.iterdir()) == [SPEC_NAME, WEIGHTS_NAME], "export wrote something"
