"""gancli.runtime.models: which graph of a model folder generate serves. On the CPU with no --precision, the
int8 graph where the folder's own evals score it within 0.5 of the fp32 one, for these weights; otherwise, and
for a folder begun with the fp32 graph, the fp32 graph."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gancli.runtime.errors import GenerateError
from gancli.runtime.generate import generate
from gancli.runtime.models import EVAL_FILES, MODELS_DIR, SERVING_FILES, resolve_model

FP32, INT8 = SERVING_FILES["fp32"][0], SERVING_FILES["int8"][0]


@pytest.fixture
def folder(tmp_path) -> Path:
    """A copy of the shipped mnist-dcgan (graphs, parity.json, eval.json and eval-int8.json)."""
    return Path(shutil.copytree(MODELS_DIR / "mnist-dcgan", tmp_path / "mnist-dcgan"))


def set_distance(folder: Path, precision: str, value: float, **model: object) -> None:
    """Give the folder's eval of `precision` this FCD (and these model fields)."""
    path = folder / EVAL_FILES[precision]
    record = json.loads(path.read_text())
    next(s for s in record["scores"] if s["metric"] == "FCD")["generated"]["value"] = value
    record["model"].update(model)
    path.write_text(json.dumps(record))


def served(folder: Path, out: Path, **options: object) -> tuple[str, str]:
    result = generate(20, out, folder, device="cpu", layout="threads", **options)
    return result.precision, Path(json.loads((out / "generate.json").read_text())["model"]).name


def test_the_cpu_serves_the_int8_graph_where_the_folders_evals_score_it_as_fp32(folder, tmp_path):
    set_distance(folder, "fp32", 1.50)
    set_distance(folder, "int8", 1.99)
    assert served(folder, tmp_path / "a") == ("int8", INT8)
    assert served(folder, tmp_path / "b", precision="fp32") == ("fp32", FP32)  # the opt-out
    assert served(folder, tmp_path / "c", precision="int8") == ("int8", INT8)


@pytest.mark.parametrize("change", ["further apart", "other weights", "other count", "truncated", "no int8 eval"])
def test_fp32_is_served_where_the_evals_do_not_measure_these_two_graphs_alike(folder, tmp_path, change):
    set_distance(folder, "fp32", 1.50)
    set_distance(folder, "int8", 1.50)
    if change == "further apart":
        set_distance(folder, "int8", 2.01)
    elif change == "other weights":  # evals left from an earlier export of other weights
        set_distance(folder, "int8", 1.50, weights_sha256="0" * 64)
        set_distance(folder, "fp32", 1.50, weights_sha256="0" * 64)
    elif change == "other count":
        path = folder / EVAL_FILES["int8"]
        record = json.loads(path.read_text())
        record["counts"]["generated"] = 500
        path.write_text(json.dumps(record))
    elif change == "truncated":
        set_distance(folder, "int8", 1.50, truncation_psi=0.7)
    else:
        (folder / EVAL_FILES["int8"]).unlink()
    assert served(folder, tmp_path / "out") == ("fp32", FP32)


def test_a_folder_begun_with_the_fp32_graph_is_finished_with_it(folder, tmp_path):
    out = tmp_path / "out"
    set_distance(folder, "fp32", 1.50)
    set_distance(folder, "int8", 1.50)
    assert served(folder, out, precision="fp32") == ("fp32", FP32)
    result = generate(40, out, folder, device="cpu", layout="threads")
    assert (result.precision, result.already, result.made) == ("fp32", 20, 20)


def test_an_onnx_file_is_served_as_it_is(folder, tmp_path):
    result = generate(20, tmp_path / "out", folder / FP32, device="cpu", layout="threads")
    assert (result.precision, result.model) == ("fp32", folder / FP32)


def test_a_bare_name_is_always_the_shipped_model_and_a_folder_needs_a_path(tmp_path, monkeypatch):
    """A folder (or file) of the working directory named like a shipped model does not replace it: generate,
    serve, interpolate and eval all resolve --model here. A path needs ./, a separator or .onnx."""
    monkeypatch.chdir(tmp_path)
    impostor = Path(shutil.copytree(MODELS_DIR / "mnist-dcgan", tmp_path / "cats-dcgan"))
    (tmp_path / "mnist-mlp").write_bytes((MODELS_DIR / "mnist-dcgan" / FP32).read_bytes())
    assert resolve_model("cats-dcgan") == MODELS_DIR / "cats-dcgan" / FP32
    assert resolve_model("mnist-mlp") == MODELS_DIR / "mnist-mlp" / FP32
    for path in ("./cats-dcgan", "cats-dcgan/", str(impostor)):
        assert resolve_model(path).resolve() == impostor / FP32, path
    assert resolve_model(Path("cats-dcgan")).resolve() == impostor / FP32  # from Python, a Path is a path
    shutil.copytree(impostor, tmp_path / "mine")
    with pytest.raises(GenerateError) as refused:
        resolve_model("mine")
    assert str(refused.value) == ("no model 'mine': no shipped model has that name (shipped models: "
                                  "cats-dcgan, mnist-cdcgan, mnist-dcgan, mnist-mlp); a folder or file needs a path, "
                                  "such as ./mine")
    assert resolve_model("./mine").resolve() == tmp_path / "mine" / FP32
