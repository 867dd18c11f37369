"""The generator artifact: `generator.safetensors` + `generator.json` describing what built it.

Every later step (export, eval, shipping) calls `load_generator` and rebuilds the network from the
JSON instead of guessing flags (diffusers' config.json beside the weights; nanoGPT's model_args).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gancli.gan.errors import ArtifactError
from gancli.gan.networks import build_generator
from gancli.runtime.files import atomic_path, sha256_file, write_text_atomic

WEIGHTS_NAME = "generator.safetensors"
SPEC_NAME = "generator.json"
ARTIFACT_FORMAT = "gancli-generator"
ARTIFACT_FORMAT_VERSION = 1


def gancli_version() -> str:
    try:
        return metadata.version("gancli")
    except metadata.PackageNotFoundError:
        return "0+unknown"


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
    class_names: list[str] = field(default_factory=list)  # conditional G: label i means class_names[i]; [] otherwise
    # the in-training score this generator was kept for: {"metric", "value", "epoch", "num_images"}
    quality: dict | None = None
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
    def from_json(cls, text: str, source: str = "generator.json") -> "GeneratorSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{source} is not valid JSON ({e}); re-export the generator from its run") from e
        if not isinstance(data, dict) or data.get("format") != ARTIFACT_FORMAT:
            raise ArtifactError(f"{source} is not a gancli generator description (no format {ARTIFACT_FORMAT!r})")
        if data.get("format_version", 0) > ARTIFACT_FORMAT_VERSION:
            raise ArtifactError(f"{source} has format version {data['format_version']}; upgrade gancli to read it")
        try:
            data["value_range"] = tuple(data.get("value_range", (-1.0, 1.0)))
            return cls(**data)
        except TypeError as e:
            raise ArtifactError(f"{source} has missing or unknown fields ({e})") from e


def build_from_spec(spec: GeneratorSpec) -> nn.Module:
    return build_generator(spec.arch, spec.latent_dim, spec.channels, spec.img_size, spec.width, spec.g_dropout,
                           spec.num_classes)


def save_generator(G: nn.Module, spec: GeneratorSpec, out_dir: str | Path) -> Path:
    """Write weights, then the JSON that names their hash; each file atomically. Returns the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    weights = out_dir / WEIGHTS_NAME
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": ARTIFACT_FORMAT})
        spec.weights_sha256 = sha256_file(tmp)
    write_text_atomic(out_dir / SPEC_NAME, spec.to_json())
    return out_dir / SPEC_NAME


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
    return GeneratorSpec.from_json((folder / SPEC_NAME).read_text(), str(folder / SPEC_NAME))


def load_verified_state(weights: Path, expected_sha256: str, spec_name: str) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (no code runs), after checking its hash against `spec_name`'s."""
    if expected_sha256 and sha256_file(weights) != expected_sha256:
        raise ArtifactError(f"{weights} does not match the hash in {spec_name}; the file changed or is corrupt")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{weights} is not a readable safetensors file ({e})") from e


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], spec_name: str, weights_name: str) -> None:
    """load_state_dict(strict=True), with a mismatch told as one line naming both files."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        # torch's first line only names the class; the next one says which keys or shapes differ
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or ["shape mismatch"]
        detail = lines[min(1, len(lines) - 1)]
        detail = detail if len(detail) <= 120 else detail[:117] + "..."
        raise ArtifactError(f"{spec_name} disagrees with {weights_name} ({detail}); the two files come from different runs") from e


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, GeneratorSpec]:
    """Rebuild G from its JSON, load its weights (safetensors: no code runs), return it in eval mode."""
    folder = resolve_artifact_dir(path)
    spec = load_spec(folder)
    state = load_verified_state(folder / WEIGHTS_NAME, spec.weights_sha256, SPEC_NAME)
    G = build_from_spec(spec)
    load_state_strict(G, state, SPEC_NAME, WEIGHTS_NAME)
    return G.to(device).eval(), spec
