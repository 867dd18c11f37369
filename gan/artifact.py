"""The generator artifact: `generator.safetensors` + `generator.json` describing what built it.

Every later step (export, eval, shipping) calls `load_generator` and rebuilds the network from the
JSON instead of guessing flags (diffusers' config.json beside the weights; nanoGPT's model_args).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from gancli.gan.errors import ArtifactError
from gancli.runtime.jsonfile import check_format, read_json_object, wrong_field
from gancli.gan.networks import build_generator
from gancli.runtime.files import atomic_path, sha256_file

WEIGHTS_NAME = "generator.safetensors"
SPEC_NAME = "generator.json"
ARTIFACT_FORMAT = "gancli-generator"
ARTIFACT_FORMAT_VERSION = 1
ARTIFACT_WAY_OUT = f"copy {SPEC_NAME} and {WEIGHTS_NAME} again, together, from the run that wrote them"


def gancli_version() -> str:
    import gancli

    return gancli.__version__


@dataclass
class GeneratorSpec:
    """Everything needed to rebuild G and to interpret its output."""

    arch: str
    latent_dim: int
    channels: int
    img_size: int
    width: int
    dataset: str
    epochs: int
    seed: int
    g_dropout: float = 0.0  # training-time only: eval and export run G without dropout
    g_depth: int = 1  # convolutions per resolution (older generator.json files have none: 1)
    class_names: list[str] = field(default_factory=list)  # conditional G: label i means class_names[i]; [] otherwise
    # the in-training score this generator was kept for: {"metric", "value", "epoch", "num_images"}
    quality: dict | None = None
    # where training started (--init-from) and the images its weights have seen in all: {"init_from",
    # "weights_sha256", "images_seen_before", "images_this_run", "images_seen"}
    lineage: dict | None = None
    # images are (x - mean) / std with mean = std = 0.5 per channel, so G's Tanh range [-1, 1] maps to [0, 1]
    normalization: dict = field(default_factory=lambda: {"mean": 0.5, "std": 0.5})
    value_range: tuple[float, float] = (-1.0, 1.0)
    gancli_version: str = field(default_factory=gancli_version)
    weights_sha256: str = ""
    format: str = ARTIFACT_FORMAT
    format_version: int = ARTIFACT_FORMAT_VERSION

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.img_size, self.img_size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "generator.json") -> "GeneratorSpec":
        """The spec in `data`; one ArtifactError line naming `source` when it is foreign, from a newer
        gancli, or has a field missing, unknown or of the wrong type."""
        return cls(**spec_fields(cls, data, source, ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION,
                                 "a gancli generator description", ARTIFACT_WAY_OUT))


def spec_fields(cls: type, data: Any, source: str, fmt: str, version: int, what: str, way_out: str) -> dict[str, Any]:
    """The fields of a JSON description (generator.json, classifier.json) checked against dataclass `cls`:
    its `fmt` and a format version this gancli reads, no missing or unknown field, each of its type."""
    if not isinstance(data, dict):
        raise ArtifactError(f"{source} is not {what}; {way_out}")
    check_format(data, source, fmt, version, ArtifactError, way_out, what)
    declared = {f.name: f for f in dataclasses.fields(cls)}
    required = {name for name, f in declared.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing, unknown = sorted(required - set(data)), sorted(set(data) - set(declared))
    if missing or unknown:
        detail = "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                           + ([f"unknown {', '.join(unknown)}"] if unknown else []))
        raise ArtifactError(f"{source} has missing or unknown fields ({detail}); {way_out}")
    wrong = wrong_field(cls, data)
    if wrong:
        raise ArtifactError(f"{source} is damaged: {wrong}; {way_out}")
    # JSON has lists where the dataclass has tuples
    return {name: tuple(value) if isinstance(declared[name].default, tuple) else value for name, value in data.items()}


def build_from_spec(spec: GeneratorSpec) -> nn.Module:
    return build_generator(spec.arch, spec.latent_dim, spec.channels, spec.img_size, spec.width, spec.g_dropout,
                           spec.num_classes, spec.g_depth)


def save_generator(G: nn.Module, spec: GeneratorSpec, out_dir: str | Path) -> Path:
    """Write the weights and the JSON that names their hash as one pair (write_pair). Returns the JSON path.

    An OSError (a full disk) leaves the previous pair in place."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = weights_bytes(G, ARTIFACT_FORMAT)
    spec.weights_sha256 = hashlib.sha256(weights).hexdigest()
    write_pair(out_dir / WEIGHTS_NAME, weights, out_dir / SPEC_NAME, spec.to_json())
    return out_dir / SPEC_NAME


def weights_bytes(module: nn.Module, fmt: str) -> bytes:
    """The safetensors file of `module`'s state, in memory: written by Python, so a failed write is an
    OSError (safetensors' own writer raises SafetensorError)."""
    return state_bytes(module.state_dict(), fmt)


def state_bytes(state: dict[str, torch.Tensor], fmt: str) -> bytes:
    """weights_bytes of a state dict."""
    return safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata={"format": fmt})


def write_pair(weights_path: Path, weights: bytes, spec_path: Path, spec_json: str) -> None:
    """Both files go to temp names first and are renamed only once both are complete (weights, then
    JSON), so a full disk never leaves new weights beside the old JSON, or the reverse."""
    with contextlib.ExitStack() as stack:  # left in reverse: the weights' rename happens first
        spec_tmp = stack.enter_context(atomic_path(spec_path))
        weights_tmp = stack.enter_context(atomic_path(weights_path))
        weights_tmp.write_bytes(weights)
        spec_tmp.write_text(spec_json)


def resolve_artifact_dir(path: str | Path) -> Path:
    """Accept an artifact folder, a run folder, or the path of either artifact file."""
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_NAME, SPEC_NAME):
        path = path.parent
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; pass a run directory or a folder with {SPEC_NAME}")
    if not (path / SPEC_NAME).is_file():
        raise ArtifactError(f"{path} has no {SPEC_NAME}; pass a run directory of `gancli train` or a generator folder")
    if not (path / WEIGHTS_NAME).is_file():
        raise ArtifactError(f"{path} has {SPEC_NAME} but no {WEIGHTS_NAME}; copy both files together")
    return path


def load_spec(path: str | Path) -> GeneratorSpec:
    folder = resolve_artifact_dir(path)
    source = folder / SPEC_NAME
    data = read_json_object(source, "a gancli generator description (a JSON object)", ArtifactError, ARTIFACT_WAY_OUT)
    return GeneratorSpec.from_dict(data, str(source))


def load_verified_state(weights: Path, expected_sha256: str, spec_name: str,
                        way_out: str = ARTIFACT_WAY_OUT) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (no code runs), after checking its hash against `spec_name`'s."""
    try:
        if expected_sha256 and sha256_file(weights) != expected_sha256:
            size = weights.stat().st_size
            state = "is empty" if size == 0 else f"does not match the hash in {spec_name} (truncated, changed or corrupt)"
            raise ArtifactError(f"{weights} {state}; {way_out}")
        return load_file(str(weights))
    except OSError as e:
        raise ArtifactError(f"cannot read {weights} ({e.strerror or e}); {way_out}") from e
    except SafetensorError as e:
        raise ArtifactError(f"{weights} is not a readable safetensors file ({e}); {way_out}") from e


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], spec_name: str, weights_name: str) -> None:
    """load_state_dict(strict=True), with a mismatch told as one line naming both files."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        # torch's first line only names the class; the next one says which keys or shapes differ
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or ["shape mismatch"]
        detail = lines[min(1, len(lines) - 1)]
        detail = detail if len(detail) <= 120 else detail[:117] + "..."
        raise ArtifactError(f"{spec_name} disagrees with {weights_name} ({detail}); the two files come from different "
                            f"runs: copy both from one") from e


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, GeneratorSpec]:
    """Rebuild G from its JSON, load its weights (safetensors: no code runs), return it in eval mode."""
    folder = resolve_artifact_dir(path)
    spec = load_spec(folder)
    state = load_verified_state(folder / WEIGHTS_NAME, spec.weights_sha256, SPEC_NAME)
    try:
        G = build_from_spec(spec)
    except (ValueError, RuntimeError) as e:  # e.g. an unknown arch, or sizes no network has
        raise ArtifactError(f"{folder / SPEC_NAME} describes a generator this gancli cannot build "
                            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); {ARTIFACT_WAY_OUT}") from e
    load_state_strict(G, state, SPEC_NAME, WEIGHTS_NAME)
    return G.to(device).eval(), spec
