"""The models a server serves, named at start: a request names one of them and never reaches the file system.

`--model` takes what `gancli generate --model` takes (a shipped name, a model folder or an .onnx file),
optionally as NAME=MODEL to choose the name in URLs; a path is otherwise named after its last part
(without .onnx). Without --model, every shipped generator is served. A name or folder served from the CPU
gets the graph generate would use there (models.cpu_default_session), so both make the same pixels.
"""
from __future__ import annotations

import os
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
    sessions: tuple[GeneratorSession, ...]  # the model's instances: one batching worker runs each

    @property
    def session(self) -> GeneratorSession:
        """The first instance: what every instance shares (metadata, device) is read from it."""
        return self.sessions[0]

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
                "dataset": meta.dataset, "device": self.session.device, "instances": len(self.sessions)}


def split_spec(spec: str) -> tuple[str, str]:
    """'NAME=MODEL' -> (NAME, MODEL); 'MODEL' -> (its name, MODEL)."""
    name, sep, model = spec.partition("=")
    if sep and name and model:
        return name, model
    path = Path(spec)
    return (path.stem if path.suffix == ".onnx" else path.name), spec


def load_models(specs: list[str] | None, device: str, instances: int = 0) -> dict[str, ServedModel]:
    """Every model loaded, by name, into `instances` onnxruntime sessions (0: one per core on the CPU, each
    with one thread; one on a GPU); a bad or a repeated name (checked first) or a model that cannot be found
    or loaded is one GenerateError, before anything listens.

    On the CPU, one single-threaded session per core runs more images per second than one session with a
    thread per core (1.04 against 1.68 ms of CPU per cats-dcgan image at batch 7, benchmarks/bench_serve.py),
    as `gancli generate` runs one process per core: a thread of an intra-op pool waits for the others after
    every layer, and on a shared CPU for the slowest."""
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
        path, first = cpu_default_session(model, path, GeneratorSession(path, device=device, threads=1), None, threads=1)
        count = instances or ((os.cpu_count() or 1) if first.device == "cpu" else 1)
        sessions = (first, *(GeneratorSession(path, device=first.device, threads=1) for _ in range(count - 1)))
        served[name] = ServedModel(name, path, sha256_file(path), sessions)
    return served
