"""The models a server serves, named at start: a request names one of them and never reaches the file system.

`--model` takes what `gancli generate --model` takes (a shipped name, a model folder or an .onnx file),
optionally as NAME=MODEL to choose the name in URLs; a path is otherwise named after its last part
(without .onnx). Without --model, every shipped generator is served. A name or folder served from the CPU
gets the graph generate would use there (models.cpu_default_session), so both make the same pixels.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gancli.models import shipped_generators
from gancli.runtime.errors import GenerateError
from gancli.runtime.files import sha256_file
from gancli.runtime.models import cpu_default_session, resolve_model
from gancli.runtime.session import GeneratorSession

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # one URL path segment, nothing to escape


@dataclass(frozen=True)
class ServedModel:
    name: str
    path: Path
    sha256: str  # of the graph file: part of every image's ETag
    session: GeneratorSession

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C): the layout of the images served (and of an npz's images)."""
        meta = self.session.metadata
        return (meta.img_size, meta.img_size, meta.channels)

    def describe(self) -> dict:
        """What GET /v1/models tells about it."""
        meta = self.session.metadata
        return {"name": self.name, "image_shape": list(self.image_shape), "classes": list(meta.class_names),
                "latent_dim": meta.latent_dim, "precision": meta.precision, "arch": meta.arch,
                "dataset": meta.dataset, "device": self.session.device}


def split_spec(spec: str) -> tuple[str, str]:
    """'NAME=MODEL' -> (NAME, MODEL); 'MODEL' -> (its name, MODEL)."""
    name, sep, model = spec.partition("=")
    if sep and name and model:
        return name, model
    path = Path(spec)
    return (path.stem if path.suffix == ".onnx" else path.name), spec


def load_models(specs: list[str] | None, device: str) -> dict[str, ServedModel]:
    """Every model loaded into its onnxruntime session (one intra-op thread per core), by name; a bad or a
    repeated name (checked first) or a model that cannot be found or loaded is one GenerateError, before
    anything listens."""
    named: dict[str, str] = {}
    for spec in specs or shipped_generators():
        name, model = split_spec(spec)
        if not NAME_PATTERN.match(name):
            raise GenerateError(f"--model {spec}: {name!r} cannot name a model in URLs (letters, digits, '.', '_' "
                                f"and '-', at most 64); name it with --model NAME={model}")
        if name in named:
            raise GenerateError(f"--model {spec}: the name {name!r} is taken by --model {named[name]}; "
                                f"name one of them with --model NAME={model}")
        named[name] = model
    served = {}
    for name, model in named.items():
        path = resolve_model(model)
        path, session = cpu_default_session(model, path, GeneratorSession(path, device=device, threads=0), None,
                                            threads=0)
        served[name] = ServedModel(name, path, sha256_file(path), session)
    return served
