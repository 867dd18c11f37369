"""Export: ONNX and TorchScript files with the fixed contract, embedded metadata and parity with eager G;
class-conditional generators take (z, label) in every format and route each label as eager G does."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gancli import cli
from gancli.export import parity
from gancli.export.api import export_generator
from gancli.export.errors import ParityError
from gancli.export.int8 import Calibration, subpixel_generator
from gancli.export.onnx import export_onnx
from gancli.export.parity import check_parity
from gancli.gan.artifact import GeneratorSpec, load_generator, save_generator
from gancli.gan.errors import ArtifactError
from gancli.gan.networks import build_generator
from gancli.runtime.metadata import METADATA_KEY, OUTPUT_FLOAT_NCHW, OUTPUT_UINT8_NHWC, ModelMetadata
from gancli.runtime.session import GeneratorSession

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

# Tiny generators keep batch-256 parity cheap; both archs carry batch norm that the exporter folds.
TINY = {
    "mlp": dict(latent_dim=16, channels=1, img_size=8, width=8),
    "dcgan": dict(latent_dim=16, channels=3, img_size=32, width=8),
}
ALL_FILES = {
    # name: (output kind, precision)
    "generator.onnx": (OUTPUT_FLOAT_NCHW, "fp32"),
    "generator-uint8.onnx": (OUTPUT_UINT8_NHWC, "fp32"),
    "generator-fp16.onnx": (OUTPUT_FLOAT_NCHW, "fp16"),
    "generator-fp16-uint8.onnx": (OUTPUT_UINT8_NHWC, "fp16"),
    "generator-int8-uint8.onnx": (OUTPUT_UINT8_NHWC, "int8"),
    "generator.torchscript.pt": (OUTPUT_FLOAT_NCHW, "fp32"),
}


def randomize_weights_(G: nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine terms, so folding BN into the layers is really tested.

    The other layers first get PyTorch's default initialisation (seeded): with DCGAN's N(0, 0.02) weights
    these statistics would make the images almost flat, and an int8 graph would then move no pixel."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                m.reset_parameters()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(1.0 + torch.randn(m.num_features, generator=gen) * 0.2)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)


CLASS_NAMES = ["zero", "one", "two"]


def make_artifact(folder: Path, arch: str, seed: int = 0, class_names: list[str] | None = None) -> Path:
    torch.manual_seed(seed)
    sizes = TINY[arch]
    G = build_generator(arch, sizes["latent_dim"], sizes["channels"], sizes["img_size"], sizes["width"], dropout=0.1,
                        num_classes=len(class_names or []))
    randomize_weights_(G, seed)
    spec = GeneratorSpec(arch=arch, dataset="cats" if sizes["channels"] == 3 else "mnist", epochs=1, seed=seed,
                         g_dropout=0.1, class_names=list(class_names or []), **sizes)
    save_generator(G, spec, folder)
    return folder


@pytest.fixture(scope="module", params=["mlp", "dcgan"])
def artifact(request, tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def exported(artifact, tmp_path_factory):
    """Every format, fp16 and int8 included, exported once per arch (the expensive part of this file)."""
    return export_generator(artifact, "all", tmp_path_factory.mktemp("out") / "export", fp16=True, int8=True)


@pytest.fixture
def small_artifact(tmp_path) -> Path:
    return make_artifact(tmp_path / "artifact", "mlp")


@pytest.fixture(scope="module", params=["mlp", "dcgan"])
def conditional_artifact(request, tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp(f"c{request.param}"), request.param, class_names=CLASS_NAMES)


@pytest.fixture(scope="module")
def conditional_exported(conditional_artifact, tmp_path_factory):
    """A class-conditional G in every format, fp16 and int8 included."""
    return export_generator(conditional_artifact, "all", tmp_path_factory.mktemp("cout") / "export", fp16=True,
                            int8=True)


def eager(G: nn.Module, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    with torch.no_grad():
        if labels is None:
            return G.eval()(torch.from_numpy(z)).numpy()
        return G.eval()(torch.from_numpy(z), torch.from_numpy(labels)).numpy()


def run_onnx(path: Path, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"z": z} if labels is None else {"z": z, "label": labels})[0]


def as_levels(x: np.ndarray) -> np.ndarray:
    """Eager float NCHW output as the uint8 graphs quantise it, NHWC."""
    return np.clip(np.round((x + 1) / 2 * 255), 0, 255).transpose(0, 2, 3, 1)


def fresh_z(seed: int, batch: int, latent_dim: int) -> np.ndarray:
    return np.random.default_rng(1000 + seed).standard_normal((batch, latent_dim), dtype=np.float32)


def invoke(*args: str):
    return CliRunner().invoke(cli.app, ["export", *map(str, args)])


def leftovers(artifact: Path) -> list[Path]:
    """Everything beside and inside the artifact folder that it did not hold before an export."""
    own = {artifact, artifact / "generator.json", artifact / "generator.safetensors"}
    return sorted(set(artifact.parent.rglob("*")) - own)


# --- parity and file contents -------------------------------------------------------------------

def test_every_format_passes_parity_within_its_bar(exported):
    assert sorted(p.name for p in exported.files) == sorted([*ALL_FILES, "parity.json"])
    bars = {(OUTPUT_FLOAT_NCHW, "fp32"): 1e-4, (OUTPUT_FLOAT_NCHW, "fp16"): 2e-2,
            (OUTPUT_UINT8_NHWC, "fp32"): 1.0, (OUTPUT_UINT8_NHWC, "fp16"): 4.0, (OUTPUT_UINT8_NHWC, "int8"): 255.0}
    results = {r.file: r for r in exported.report.results}  # CPU only here: one result per file
    assert set(results) == set(ALL_FILES)
    for name, (kind, precision) in ALL_FILES.items():
        r = results[name]
        assert (r.output_kind, r.precision) == (kind, precision)
        assert r.bar == bars[kind, precision]
        assert 0.0 <= r.max_error <= r.bar, name
        if precision == "int8":  # its bar is on the distribution of errors
            assert (r.mean_bar, r.p99_bar) == (1.5, 12.0)
            assert 0.0 < r.mean_error <= r.mean_bar and r.mean_error <= r.p99_error <= r.p99_bar
        else:
            assert r.mean_bar is None
    assert exported.report.batch_sizes == [1, 7, 256] and len(exported.report.seeds) >= 3
    on_disk = json.loads((exported.out_dir / "parity.json").read_text())
    assert on_disk["passed"] is True
    assert {row["file"]: row["max_error"] for row in on_disk["results"]} == {n: r.max_error for n, r in results.items()}


def test_onnx_float_graph_matches_eager_at_any_batch(exported, artifact):
    G, spec = load_generator(artifact)
    for batch in (1, 3, 64):
        z = fresh_z(batch, batch, spec.latent_dim)
        out = run_onnx(exported.out_dir / "generator.onnx", z)
        assert out.dtype == np.float32 and out.shape == (batch, *spec.image_shape)
        assert np.abs(out - eager(G, z)).max() <= 1e-4


def test_onnx_graph_contract_and_folded_batch_norm(exported):
    model = onnx.load(str(exported.out_dir / "generator.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["z"] and [o.name for o in model.graph.output] == ["images"]
    z_dims = model.graph.input[0].type.tensor_type.shape.dim
    assert z_dims[0].dim_param and not z_dims[0].HasField("dim_value")  # batch is symbolic
    assert z_dims[1].dim_value == 16  # the rest is fixed
    assert all(d.HasField("dim_value") for d in model.graph.output[0].type.tensor_type.shape.dim[1:])
    assert {op.version for op in model.opset_import if op.domain in ("", "ai.onnx")} == {20}
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    assert "Dropout" not in {n.op_type for n in model.graph.node}


def test_uint8_graph_gives_eager_output_quantised_as_nhwc_bytes(exported, artifact):
    G, spec = load_generator(artifact)
    z = fresh_z(0, 9, spec.latent_dim)
    out = run_onnx(exported.out_dir / "generator-uint8.onnx", z)
    assert out.dtype == np.uint8 and out.shape == (9, spec.img_size, spec.img_size, spec.channels)
    expected = np.clip(np.round((eager(G, z) + 1) / 2 * 255), 0, 255).transpose(0, 2, 3, 1)
    assert np.abs(out.astype(np.int16) - expected.astype(np.int16)).max() <= 1
    assert len(np.unique(out)) > 10, "a constant image would pass a loose check; G's output must vary"


def test_fp16_graph_has_half_weights_and_float32_io(exported, artifact):
    G, spec = load_generator(artifact)
    model = onnx.load(str(exported.out_dir / "generator-fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = [t for t in model.graph.initializer if len(t.dims) >= 2]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    z = fresh_z(1, 5, spec.latent_dim)
    out = run_onnx(exported.out_dir / "generator-fp16.onnx", z)
    assert out.dtype == np.float32 and np.abs(out - eager(G, z)).max() <= 2e-2


def test_torchscript_loads_alone_and_matches_eager(exported, artifact):
    G, spec = load_generator(artifact)
    extra = {METADATA_KEY: ""}
    module = torch.jit.load(str(exported.out_dir / "generator.torchscript.pt"), _extra_files=extra)
    z = fresh_z(2, 7, spec.latent_dim)
    with torch.no_grad():
        out = module(torch.from_numpy(z)).numpy()
    assert np.abs(out - eager(G, z)).max() <= 1e-4
    assert ModelMetadata.from_json(extra[METADATA_KEY]).output_kind == OUTPUT_FLOAT_NCHW


def test_metadata_round_trips_through_onnxruntime_alone(exported, artifact):
    """A runtime reads everything it needs from the file; it agrees with generator.json."""
    spec = json.loads((artifact / "generator.json").read_text())
    for name, (kind, precision) in ALL_FILES.items():
        path = exported.out_dir / name
        if path.suffix == ".onnx":
            props = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
        else:
            props = {METADATA_KEY: ""}
            torch.jit.load(str(path), _extra_files=props)
        data = json.loads(props[METADATA_KEY])
        for key in ("latent_dim", "channels", "img_size", "dataset", "arch", "weights_sha256", "gancli_version"):
            assert data[key] == spec[key], (name, key)
        assert data["value_range"] == list(spec["value_range"])
        assert (data["output_kind"], data["precision"]) == (kind, precision)
        assert ModelMetadata.from_props(props).image_shape == (spec["channels"], spec["img_size"], spec["img_size"])
        # an unconditional model has no class_names; format 4 gives the width and depth the untrained ceiling needs
        assert "class_names" not in data and data["format_version"] == 4
        assert (data["width"], data["g_depth"]) == (spec["width"], spec["g_depth"])
    assert len(spec["weights_sha256"]) == 64


@pytest.mark.parametrize("img_size", [28, 32, 64])
@pytest.mark.parametrize("depth", [1, 2])
def test_subpixel_rewrite_is_the_same_generator(img_size, depth):
    """The projection as a Linear, each stride-2 ConvTranspose + BN + ReLU as 4 phase convolutions + pixel
    shuffle, the 3x3 convolutions of a deeper G left as they are: the same function."""
    torch.manual_seed(img_size)
    G = build_generator("dcgan", 16, 3, img_size, width=8, dropout=0.1, depth=depth)
    randomize_weights_(G, img_size)
    rewritten = subpixel_generator(G)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in rewritten.modules())
    z = torch.randn(5, 16)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(z), G.eval()(z), atol=1e-5, rtol=0)


def test_int8_graph_runs_in_int8_kernels(exported, artifact):
    """What makes it fast: no float ConvTranspose, and no float Gemm but the input and output layers', is left."""
    ops = {n.op_type for n in onnx.load(str(exported.out_dir / "generator-int8-uint8.onnx")).graph.node}
    spec = json.loads((artifact / "generator.json").read_text())
    if spec["arch"] == "dcgan":
        assert "ConvTranspose" not in ops and {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    else:
        nodes = onnx.load(str(exported.out_dir / "generator-int8-uint8.onnx")).graph.node
        float_matmuls = [n for n in nodes if n.op_type in ("Gemm", "MatMul")]
        assert "MatMulInteger" in ops and len(float_matmuls) == 2  # the input and output layers stay float
    G, spec = load_generator(artifact)
    z = fresh_z(3, 64, spec.latent_dim)
    out = run_onnx(exported.out_dir / "generator-int8-uint8.onnx", z)
    expected = np.clip(np.round((eager(G, z) + 1) / 2 * 255), 0, 255).transpose(0, 2, 3, 1)
    assert out.dtype == np.uint8 and out.shape == expected.shape
    assert np.abs(out.astype(np.int16) - expected).mean() <= 1.5


def test_int8_parity_bar_fails_and_keeps_no_file(small_artifact, tmp_path, monkeypatch):
    monkeypatch.setattr(parity, "INT8_P99_LEVELS", -1)  # no graph can be under it
    with pytest.raises(ParityError, match=r"generator-int8-uint8\.onnx .*99th percentile"):
        export_generator(small_artifact, "onnx", tmp_path / "out", int8=True)
    assert leftovers(small_artifact) == []


def test_export_onnx_leaves_callers_generator_alone(small_artifact, tmp_path):
    G, spec = load_generator(small_artifact)
    G.train()
    out = tmp_path / "out"
    out.mkdir()
    meta = export_onnx(G, spec, out / "g.onnx", fp16=True)
    assert meta.precision == "fp16" and (out / "g.onnx").is_file()
    assert G.training and all(p.dtype == torch.float32 for p in G.parameters())
    assert [p.name for p in out.iterdir()] == ["g.onnx"], "the temp file of the atomic write was left behind"


# --- class-conditional generators ------------------------------------------------------------------

def test_conditional_graph_takes_z_and_an_int64_label_on_one_batch_axis(conditional_exported):
    for name in ALL_FILES:
        if not name.endswith(".onnx"):
            continue
        model = onnx.load(str(conditional_exported.out_dir / name))
        assert [i.name for i in model.graph.input] == ["z", "label"], name
        assert [o.name for o in model.graph.output] == ["images"]
        z, label = (i.type.tensor_type for i in model.graph.input)
        assert (z.elem_type, label.elem_type) == (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
        assert len(label.shape.dim) == 1 and z.shape.dim[1].dim_value == 16
        assert z.shape.dim[0].dim_param and label.shape.dim[0].dim_param == z.shape.dim[0].dim_param, name


def test_every_format_routes_each_label_as_eager_g_does(conditional_exported, conditional_artifact):
    """Label routing: the graph run with label k gives what G(z, k) gives, for every class, in every file."""
    G, spec = load_generator(conditional_artifact)
    z = fresh_z(4, 32, spec.latent_dim)
    by_label = {}
    for k in range(len(CLASS_NAMES)):
        labels = np.full(len(z), k, dtype=np.int64)
        reference = eager(G, z, labels)
        by_label[k] = reference
        for name, (kind, precision) in ALL_FILES.items():
            path = conditional_exported.out_dir / name
            if path.suffix == ".onnx":
                out = run_onnx(path, z, labels)
            else:
                with torch.no_grad():
                    out = torch.jit.load(str(path))(torch.from_numpy(z), torch.from_numpy(labels)).numpy()
            if kind == OUTPUT_FLOAT_NCHW:
                assert np.abs(out - reference).max() <= (2e-2 if precision == "fp16" else 1e-4), (name, k)
            else:
                errors = np.abs(out.astype(np.int16) - as_levels(reference))
                bar = {"fp32": (1, 1), "fp16": (4, 4), "int8": (1.5, 255)}[precision]  # (mean, max) in levels
                assert errors.mean() <= bar[0] and errors.max() <= bar[1], (name, k)
    # the label matters: the same z with another label is another image
    assert np.abs(by_label[0] - by_label[1]).mean() > 1e-3 and np.abs(by_label[1] - by_label[2]).mean() > 1e-3


def test_one_batch_of_mixed_labels_is_each_image_with_its_own_label(conditional_exported, conditional_artifact):
    """A conditional model run per label and on mixed labels agree image for image (through the runtime's
    session, as `gancli generate` runs it)."""
    session = GeneratorSession(conditional_exported.out_dir / "generator-uint8.onnx", device="cpu")
    assert session.metadata.class_names == tuple(CLASS_NAMES)
    z = fresh_z(5, 12, session.metadata.latent_dim)
    mixed = np.arange(12, dtype=np.int64) % 3
    together = session.images(z, mixed)
    for k in range(3):
        alone = session.images(z[mixed == k], np.full(int(np.sum(mixed == k)), k, dtype=np.int64))
        np.testing.assert_array_equal(together[mixed == k], alone)


def test_conditional_parity_covers_every_class(conditional_exported):
    assert (conditional_exported.report.classes, conditional_exported.report.classes_checked) == (3, 3)
    on_disk = json.loads((conditional_exported.out_dir / "parity.json").read_text())
    assert on_disk["passed"] is True and (on_disk["classes"], on_disk["classes_checked"]) == (3, 3)
    assert parity.parity_labels(0, 7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert parity.parity_labels(1, 2, 3).tolist() == [1, 2] and parity.parity_labels(0, 5, 0) is None


def test_conditional_metadata_lists_the_class_names(conditional_exported, conditional_artifact):
    spec = json.loads((conditional_artifact / "generator.json").read_text())
    for name in ALL_FILES:
        path = conditional_exported.out_dir / name
        if path.suffix == ".onnx":
            props = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
        else:
            props = {METADATA_KEY: ""}
            torch.jit.load(str(path), _extra_files=props)
        data = json.loads(props[METADATA_KEY])
        assert data["class_names"] == spec["class_names"] == CLASS_NAMES and data["format_version"] == 4, name
        meta = ModelMetadata.from_props(props)
        assert (meta.num_classes, meta.input_names) == (3, ["z", "label"])


def test_metadata_of_older_files_still_reads_and_newer_is_refused():
    old = {"arch": "dcgan", "channels": 1, "dataset": "mnist", "format_version": 1, "gancli_version": "0.1.0",
           "img_size": 28, "latent_dim": 100, "output_kind": "uint8_nhwc", "precision": "fp32",
           "value_range": [-1.0, 1.0], "weights_sha256": "ab"}
    meta = ModelMetadata.from_json(json.dumps(old))
    assert (meta.class_names, meta.conditional, meta.input_names) == ((), False, ["z"])
    assert json.loads(meta.to_json()) == old  # written back key for key
    width_only = ModelMetadata.from_json(json.dumps({**old, "format_version": 3, "width": 32}))
    assert (width_only.width, width_only.g_depth) == (32, None)  # format 3 had no g_depth: its G had 1
    with pytest.raises(Exception, match="written by a newer gancli"):
        ModelMetadata.from_json(json.dumps({**old, "format_version": 5}))
    with pytest.raises(Exception, match="empty or repeated"):
        ModelMetadata.from_json(json.dumps({**old, "format_version": 2, "class_names": ["a", "a"]}))


def test_conditional_subpixel_rewrite_keeps_the_label_input():
    """The int8 rewrite changes G.net only; the label embedding before it stays, so G(z, y) is unchanged."""
    torch.manual_seed(0)
    G = build_generator("dcgan", 16, 1, 28, width=8, num_classes=4)
    randomize_weights_(G, 0)
    rewritten = subpixel_generator(G)
    z, y = torch.randn(8, 16), torch.arange(8) % 4
    with torch.no_grad():
        torch.testing.assert_close(rewritten(z, y), G.eval()(z, y), atol=1e-5, rtol=0)
    batch = Calibration.batch(np.arange(6), 16, 4)  # calibration feeds labels of every class with its z
    assert sorted(batch) == ["label", "z"] and batch["label"].tolist() == [0, 1, 2, 3, 0, 1]
    assert sorted(Calibration.batch(np.arange(6), 16, 0)) == ["z"]


# --- failures: one line, exit 1, nothing written ---------------------------------------------------

@pytest.mark.parametrize("corruption", [1e-3, float("nan")])
def test_failed_parity_raises_and_keeps_no_file(small_artifact, tmp_path, monkeypatch, corruption):
    true_reference = parity.eager_images
    monkeypatch.setattr(parity, "eager_images", lambda G, z, labels=None: true_reference(G, z, labels) + corruption)
    with pytest.raises(ParityError, match=r"generator\.torchscript\.pt \(torchscript\)"):
        export_generator(small_artifact, "torchscript", tmp_path / "out")
    assert leftovers(small_artifact) == []


def test_failed_parity_through_the_cli_is_one_line_and_keeps_no_file(small_artifact, monkeypatch):
    monkeypatch.setattr(parity, "FP32_MAX_ABS_ERROR", -1.0)  # no error can be under it
    result = invoke(small_artifact, "--format", "torchscript")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "parity failed" in result.output
    assert leftovers(small_artifact) == []


def test_parity_error_names_the_uint8_graph_that_is_off(exported, artifact):
    G, _ = load_generator(artifact)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in G.parameters():  # eager now computes something else than the exported graph
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    with pytest.raises(ParityError, match="generator-uint8.onnx"):
        check_parity(G, [exported.out_dir / "generator-uint8.onnx"], batch_sizes=(7,), seeds=(0,))


@pytest.mark.parametrize("damage, expected", [
    ("missing", "does not exist"),
    ("bad_json", "generator.json is not valid JSON"),
    ("weights_changed", "does not match the hash"),
    ("json_disagrees", "disagrees with generator.safetensors"),
])
def test_bad_source_is_one_line_and_writes_nothing(small_artifact, tmp_path, damage, expected):
    source = small_artifact
    if damage == "missing":
        source = tmp_path / "no-such-run"
    elif damage == "bad_json":
        (source / "generator.json").write_text("{ not json")
    elif damage == "weights_changed":
        data = bytearray((source / "generator.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (source / "generator.safetensors").write_bytes(bytes(data))
    elif damage == "json_disagrees":
        spec = json.loads((source / "generator.json").read_text())
        spec["img_size"] = 16  # the weights were saved for 8x8 images; the hash still matches them
        (source / "generator.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match=expected):
        export_generator(source, "all")
    result = invoke(source)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and expected in result.output
    assert leftovers(small_artifact) == []


@pytest.mark.parametrize("options, expected", [
    (["--format", "tflite"], "--format 'tflite' is not known; use one of onnx, torchscript, all"),
    (["--opset", "9"], "--opset 9 is not supported; use 18 to"),
    (["--format", "torchscript", "--fp16"], "--fp16 adds ONNX graphs; use it with --format onnx or all"),
    (["--format", "torchscript", "--int8"], "--int8 adds ONNX graphs; use it with --format onnx or all"),
])
def test_bad_option_is_one_line_and_writes_nothing(small_artifact, options, expected):
    result = invoke(small_artifact, *options)
    assert result.exit_code == 1 and result.output.count("\n") == 1 and expected in result.output
    assert leftovers(small_artifact) == []


@pytest.mark.parametrize("out", ["generator.json", "generator.json/sub"])
def test_unwritable_output_folder_is_one_line(small_artifact, out):
    result = invoke(small_artifact, "--format", "torchscript", "--out", small_artifact / out)
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "--out" in result.output
    assert leftovers(small_artifact) == []


# --- the command ------------------------------------------------------------------------------------

def test_cli_exports_into_source_export_folder_by_default(small_artifact):
    result = invoke(small_artifact, "--format", "torchscript")
    assert result.exit_code == 0, result.output
    out = small_artifact / "export"
    assert sorted(p.name for p in out.iterdir()) == ["generator.torchscript.pt", "parity.json"]
    assert "generator.torchscript.pt" in result.output and "torchscript" in result.output
    assert json.loads((out / "parity.json").read_text())["passed"] is True
    assert not [p for p in small_artifact.parent.rglob("*") if ".tmp-" in p.name]


def test_cli_onnx_with_out_and_opset(small_artifact, tmp_path):
    result = invoke(small_artifact, "--format", "onnx", "--out", tmp_path / "models", "--opset", "18")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["generator-uint8.onnx", "generator.onnx", "parity.json"]
    model = onnx.load(str(tmp_path / "models" / "generator.onnx"))
    assert {op.version for op in model.opset_import if op.domain in ("", "ai.onnx")} == {18}


# --- a full disk: one line, nothing left behind ----------------------------------------------------

def test_a_full_disk_is_one_line_and_leaves_nothing(small_artifact, monkeypatch):
    def save_half_then_fail(model, path, *args, **kwargs):  # what onnx.save_model does when the disk fills
        data = model.SerializeToString()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(onnx, "save_model", save_half_then_fail)
    result = invoke(small_artifact, "--format", "onnx")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write the exported files beside --out {small_artifact / 'export'} (No space left on device); "
        f"nothing was written to {small_artifact / 'export'}; free some space or pass another --out"]
    assert leftovers(small_artifact) == []


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_really_full_disk_is_one_line_and_leaves_nothing(small_tmpfs, fill_disk, fmt):
    source = make_artifact(small_tmpfs / "artifact", "dcgan")  # 78 KB of weights: room for its export in 4 MB
    filler = fill_disk(small_tmpfs, 16)
    # in a subprocess: a writer that aborts on a full disk (torch.jit.save given a path does) must not
    # take the test session down with it
    command = [sys.executable, "-m", "gancli.cli", "export", str(source), "--format", fmt]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "(No space left on device); nothing was written to" in lines[0], result.stderr[-3000:]
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["artifact", "filler"], "a staging folder was left"
    assert sorted(p.name for p in source.iterdir()) == ["generator.json", "generator.safetensors"]
    filler.unlink()
    assert subprocess.run(command, capture_output=True, timeout=300, env=env).returncode == 0


def test_a_staging_folder_a_killed_export_left_is_removed(small_artifact):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = small_artifact / f".export.tmp-{int(dead.stdout)}-abcd1234"
    stale.mkdir()
    (stale / "generator.onnx").write_bytes(b"half a model")
    mine = small_artifact / f".export.tmp-{os.getpid()}-abcd1234"  # a live process's: left alone
    mine.mkdir()
    export_generator(small_artifact, "torchscript")
    assert not stale.exists() and mine.is_dir()


def test_cli_export_of_a_conditional_generator_names_the_classes_checked(tmp_path):
    artifact = make_artifact(tmp_path / "artifact", "mlp", class_names=CLASS_NAMES)
    result = CliRunner().invoke(cli.app, ["export", str(artifact), "--format", "torchscript"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "labels of 3 of 3 classes" in result.output
