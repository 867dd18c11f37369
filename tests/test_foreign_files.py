"""A stale or foreign file is never taken for the project's own (docs/faults.md): a folder's contents are gancli's
only when its own record says so (a generate folder's manifest under its generate.json, each shard's
generate-K-of-M.json, an export folder's parity.json with its one weights digest); what does not match is
made again or refused with one line, never adopted."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gancli.cli import app
from gancli.runtime.errors import GenerateError
from gancli.runtime.models import check_record, resolve_model
from gancli.runtime.session import GeneratorSession

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory, export_untrained) -> tuple[Path, Path]:
    """Two different tiny generators of one shape (other init seeds, other weights)."""
    folder = tmp_path_factory.mktemp("models")
    a = export_untrained(folder / "a.onnx", "mlp", 8, 1, 8, 4)
    b = export_untrained(folder / "b.onnx", "dcgan", 8, 1, 28, 4)
    return a, b


def generate(out: Path, model: Path, *args: str):  # noqa: ANN201
    return runner.invoke(app, ["generate", "--out", str(out), "--model", str(model), "--device", "cpu", *args])


def listed(out: Path, name: str = "manifest.jsonl") -> dict[int, dict]:
    return {(e := json.loads(line))["index"]: e for line in (out / name).read_text().splitlines()}


def images(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("0*/*.png"))}


def one_error_line(result) -> str:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    return result.output.strip()


# ---- generate: only what the manifest lists counts as made ------------------------------------------------

def damage(case: str, src: Path, out: Path) -> None:
    """Put foreign image files into `out` (a fresh folder, or a set of seed 7 made there already)."""
    if case == "copied from another seed into a fresh folder":
        shutil.copytree(src / "00000", out / "00000")
    elif case == "copied over a listed image of the set":
        shutil.copy(src / "00000" / "000000002.png", out / "00000" / "000000002.png")
        lines = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
        (out / "manifest.jsonl").write_text("".join(line for line in lines if '"index": 2,' not in line))
    elif case == "an empty file":
        (out / "00000" / "000000003.png").write_bytes(b"")
    elif case == "a cut-off file":
        path = out / "00000" / "000000004.png"
        path.write_bytes(path.read_bytes()[:40])
    elif case == "a manifest-less folder of gancli's names":
        (out / "manifest.jsonl").unlink()
        (out / "generate.json").unlink()


CASES = ["copied from another seed into a fresh folder", "copied over a listed image of the set", "an empty file",
         "a cut-off file", "a manifest-less folder of gancli's names"]


@pytest.mark.parametrize("case", CASES)
def test_generate_adopts_no_image_its_record_does_not_vouch_for(tmp_path, models, case):
    """Whatever foreign or damaged files lie in --out, the finished folder is exactly a clean run's: every image
    listed with the current seed, each byte for byte what that seed makes."""
    model = models[0]
    clean, other, out = tmp_path / "clean", tmp_path / "seed0", tmp_path / "out"
    assert generate(clean, model, "-n", "8", "--seed", "7").exit_code == 0
    assert generate(other, model, "-n", "8", "--seed", "0").exit_code == 0
    if case != "copied from another seed into a fresh folder":
        assert generate(out, model, "-n", "8", "--seed", "7").exit_code == 0
    damage(case, other, out)
    result = generate(out, model, "-n", "8", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert images(out) == images(clean)
    assert sorted(listed(out)) == list(range(8)) and {e["seed"] for e in listed(out).values()} == {7}


def test_a_refused_generate_writes_nothing(tmp_path, models):
    """Into someone's folder with a foreign manifest, or a folder of another model: refused, and the folder is as
    it was (no generate.json, no lock file); a folder the run would have made is not left behind."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "manifest.jsonl").write_text("index,seed,file\n")
    before = sorted(p.name for p in theirs.iterdir())
    one_error_line(generate(theirs, models[0], "-n", "4"))
    assert sorted(p.name for p in theirs.iterdir()) == before
    made = tmp_path / "made"
    assert generate(made, models[0], "-n", "4").exit_code == 0
    snapshot = {p: p.read_bytes() for p in made.rglob("*") if p.is_file()}
    assert "another model" in one_error_line(generate(made, models[1], "-n", "4"))
    assert {p: p.read_bytes() for p in made.rglob("*") if p.is_file()} == snapshot
    fresh = tmp_path / "fresh"
    one_error_line(generate(fresh, models[0], "-n", "4", "--layout", "imagefolder"))
    assert not fresh.exists()


# ---- merge: shards of one set only ------------------------------------------------------------------------

@pytest.mark.parametrize("second_model, args", [(1, []), (0, ["--truncation", "0.5"])], ids=["model", "truncation"])
def test_merge_refuses_shards_of_different_models_or_settings(tmp_path, models, second_model, args):
    """Shards made apart and copied together (generate.json overwritten by the copy) merge only when every
    shard's own record names the same model and settings."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert generate(a, models[0], "-n", "10", "--shard", "0/2").exit_code == 0
    assert generate(b, models[second_model], "-n", "10", "--shard", "1/2", *args).exit_code == 0
    shutil.copytree(b, a, dirs_exist_ok=True)  # b's generate.json replaces a's
    line = one_error_line(runner.invoke(app, ["merge", "-n", "10", "--out", str(a)]))
    assert "shard 1/2" in line
    assert not (a / "manifest.jsonl").exists()


def test_merge_of_shards_of_one_set_still_merges(tmp_path, models):
    out = tmp_path / "out"
    for k in range(2):
        assert generate(out, models[0], "-n", "10", "--shard", f"{k}/2").exit_code == 0
    result = runner.invoke(app, ["merge", "-n", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(listed(out)) == list(range(10))


# ---- export folders: only the graphs the export lists -----------------------------------------------------

def export_folder(folder: Path, graphs: dict[str, Path], listed_names: list[str], digest: str | None) -> Path:
    """A model folder as `gancli export` leaves it: graphs, and parity.json listing some with one digest."""
    folder.mkdir()
    for name, source in graphs.items():
        shutil.copy(source, folder / name)
    record = {"results": [{"file": name} for name in listed_names], "passed": True}
    if digest is not None:
        record["weights_sha256"] = digest
    (folder / "parity.json").write_text(json.dumps(record))
    return folder


def test_a_graph_the_export_does_not_list_is_refused(tmp_path, models):
    digest = GeneratorSession(models[0], device="cpu").metadata.weights_sha256
    folder = export_folder(tmp_path / "export", {"generator-uint8.onnx": models[0],
                                                  "generator-int8-uint8.onnx": models[1]},
                           ["generator-uint8.onnx"], digest)
    assert resolve_model(folder) == folder / "generator-uint8.onnx"
    with pytest.raises(GenerateError, match="is not among the files of the export"):
        resolve_model(folder, "int8")
    result = generate(tmp_path / "out", folder, "-n", "2", "--precision", "int8")
    assert "left by an earlier export" in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_a_listed_graph_of_other_weights_is_refused(tmp_path, models):
    folder = export_folder(tmp_path / "export", {"generator-uint8.onnx": models[1]}, ["generator-uint8.onnx"],
                           "f" * 64)
    meta = GeneratorSession(folder / "generator-uint8.onnx", device="cpu").metadata
    with pytest.raises(GenerateError, match="carries other weights"):
        check_record(dataclasses.replace(meta, weights_sha256="e" * 64), folder / "generator-uint8.onnx")


def make_artifact(folder: Path, seed: int) -> Path:
    """A tiny MLP generator artifact of `seed` (another seed: other weights, as after training on)."""
    import torch

    from gancli.gan.artifact import GeneratorSpec, save_generator
    from gancli.gan.networks import build_generator

    torch.manual_seed(seed)
    sizes = {"latent_dim": 8, "channels": 1, "img_size": 8, "width": 4}
    G = build_generator("mlp", sizes["latent_dim"], sizes["channels"], sizes["img_size"], sizes["width"])
    save_generator(G, GeneratorSpec(arch="mlp", dataset="mnist", epochs=1, seed=seed, **sizes), folder)
    return folder


def test_a_re_export_with_fewer_formats_removes_the_earlier_files(tmp_path):
    pytest.importorskip("torch")
    from gancli import export_generator

    artifact = make_artifact(tmp_path / "artifact", 0)
    out = tmp_path / "export"
    export_generator(artifact, "all", out, int8=True)
    assert (out / "generator-int8-uint8.onnx").is_file() and (out / "generator.torchscript.pt").is_file()
    first_graph = (out / "generator-uint8.onnx").read_bytes()
    make_artifact(artifact, 1)
    export_generator(artifact, "onnx", out)
    assert sorted(p.name for p in out.iterdir()) == ["generator-uint8.onnx", "generator.onnx", "parity.json"]
    record = json.loads((out / "parity.json").read_text())
    assert record["weights_sha256"] == GeneratorSession(out / "generator.onnx", device="cpu").metadata.weights_sha256
    with pytest.raises(GenerateError, match="has no int8 graph"):
        resolve_model(out, "int8")
    (out / "generator-uint8.onnx").write_bytes(first_graph)  # a listed name, the earlier weights
    assert "carries other weights" in one_error_line(generate(tmp_path / "out", out, "-n", "2"))


# ---- train --conditional: generate's class folders are class folders ---------------------------------------

def test_conditional_training_reads_generates_imagefolder_output_and_refuses_an_empty_class(tmp_path,
                                                                                           export_untrained):
    pytest.importorskip("torch")
    from gancli.gan.data import load_images
    from gancli.gan.errors import DataError
    from gancli.gan.training.config import TrainConfig

    model = export_untrained(tmp_path / "c.onnx", "mlp", 8, 1, 8, 4, class_names=["cat", "dog"])
    out = tmp_path / "set"
    assert generate(out, model, "-n", "20", "--layout", "imagefolder").exit_code == 0
    cfg = TrainConfig(dataset=str(out), img_size=8, channels=1, arch="mlp", conditional=True)
    data = load_images(cfg, download=False)
    assert data.class_names == ["cat", "dog"] and not data.skipped
    assert len(data.train) + len(data.val) == 20
    (out / "empty").mkdir()
    (out / "empty" / "notes.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="class folder 'empty' .* holds no image"):
        load_images(cfg, download=False)
