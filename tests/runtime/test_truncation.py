"""Truncation (`gancli generate --truncation PSI`): z' = PSI z in runtime/latents.py, plumbed through generate,
generate_array, the Python API, generate.json and the CLI. Torch-free: shipped models only."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import gancli
from gancli.cli import app
from gancli.runtime.latents import latents
from gancli.runtime.models import resolve_model
from gancli.runtime.session import GeneratorSession


def read_pngs(folder):
    return np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in sorted(folder.glob("*/*.png"))])


def test_truncation_scales_each_row_alone():
    z = latents(7, np.arange(10), 100)
    half = latents(7, np.arange(10), 100, 0.5)
    np.testing.assert_array_equal(half, z * np.float32(0.5))
    np.testing.assert_array_equal(latents(7, np.arange(10), 100, 1.0), z)
    np.testing.assert_array_equal(latents(7, [3, 8], 100, 0.5), half[[3, 8]])  # whatever the batch


@pytest.mark.parametrize("psi", [0.0, -0.5, 1.5, float("nan")])
def test_latents_refuse_a_truncation_outside_0_1(psi):
    with pytest.raises(ValueError, match="truncation"):
        latents(0, [0], 8, psi)


def test_truncated_files_are_the_generator_on_psi_z(tmp_path):
    result = CliRunner().invoke(app, ["generate", "-n", "6", "--out", str(tmp_path), "--model", "mnist-cdcgan",
                                      "--seed", "4", "--device", "cpu", "--truncation", "0.6", "--class", "3,7"])
    assert result.exit_code == 0, result.output
    served = json.loads((tmp_path / "generate.json").read_text())["model"]  # the int8 graph: the CPU's default
    session = GeneratorSession(served, device="cpu")
    expected = session.images(latents(4, np.arange(6), session.metadata.latent_dim) * np.float32(0.6),
                              np.array([3, 7] * 3))
    np.testing.assert_array_equal(read_pngs(tmp_path)[..., None], expected)
    images = gancli.generate_array("mnist-cdcgan", 6, seed=4, device="cpu", classes="3,7", truncation=0.6)
    np.testing.assert_array_equal(images, expected)
    assert not np.array_equal(images, gancli.generate_array("mnist-cdcgan", 6, seed=4, device="cpu", classes="3,7"))
    assert json.loads((tmp_path / "generate.json").read_text())["truncation_psi"] == 0.6


def test_a_resume_with_another_truncation_is_refused_in_one_line(tmp_path):
    args = ["generate", "-n", "3", "--out", str(tmp_path), "--model", "mnist-mlp", "--device", "cpu"]
    assert CliRunner().invoke(app, [*args, "--truncation", "0.5"]).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--truncation", "0.5", "-n", "4"]).exit_code == 0  # same psi resumes
    result = CliRunner().invoke(app, [*args, "-n", "5"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path} holds images made with --truncation 0.5, not 1; use another --out, or --truncation 0.5 "
        f"to resume"]
    assert len(list(tmp_path.glob("*/*.png"))) == 4


def test_a_folder_from_before_truncation_resumes_untruncated(tmp_path):
    args = ["generate", "-n", "2", "--out", str(tmp_path), "--model", "mnist-mlp", "--device", "cpu"]
    assert CliRunner().invoke(app, args).exit_code == 0
    header = json.loads((tmp_path / "generate.json").read_text())
    del header["truncation_psi"]
    header["header_version"] = 1
    (tmp_path / "generate.json").write_text(json.dumps(header))
    assert CliRunner().invoke(app, [*args[:1], "-n", "3", *args[3:]]).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--truncation", "0.9"]).exit_code == 1


@pytest.mark.parametrize("psi", ["0", "1.5", "-0.1", "nan", "abc"])
def test_a_bad_truncation_is_one_error_line_and_writes_nothing(tmp_path, psi):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", "-n", "3", "--out", str(out), "--model", "mnist-mlp",
                                      "--truncation", psi])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --truncation must be a number in (0, 1]"), lines
    assert not out.exists()


def test_the_python_api_checks_truncation_too():
    with pytest.raises(gancli.GancliError, match="--truncation"):
        gancli.generate_array("mnist-mlp", 2, truncation=2)


def test_truncated_resampling_is_per_index_and_inside_its_threshold():
    from gancli.runtime.latents import resampled_latents, resampling_threshold

    z = resampled_latents(7, np.arange(2000), 100, 0.5)
    t = resampling_threshold(0.5)
    assert np.abs(z).max() <= t and abs(float(z.std()) - 0.5) < 0.01  # the same spread as psi * z
    np.testing.assert_array_equal(resampled_latents(7, [3, 1500], 100, 0.5), z[[3, 1500]])  # whatever the batch
    inside = np.abs(latents(7, np.arange(2000), 100)) <= t  # components already inside are kept
    np.testing.assert_array_equal(z[inside], latents(7, np.arange(2000), 100)[inside])
    np.testing.assert_array_equal(resampled_latents(7, np.arange(5), 100, 1.0), latents(7, np.arange(5), 100))
