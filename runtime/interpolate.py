"""`gancli interpolate`: a looping latent walk as an MP4 or GIF, torch-free (onnxruntime).

Seed walk: the key frames are image 0 of each seed (z = latents(seed, [0]), the image `gancli generate --seed S`
names 0), visited in order and back to the first, with `frames` frames per step by spherical interpolation
(slerp; Shoemake, 1985, as White, 2016, recommends for GANs: a Gaussian z lives near a sphere of radius
sqrt(latent_dim), and a straight line between two such points passes through improbably short vectors).
Class morph (a class-conditional model, two or more classes): z stays fixed and the generator's class embedding
moves linearly from each class to the next. The exported graph takes integer labels, so the morph reads the
embedding table from the ONNX file and gives the session a table with one blended row per frame
(SessionOptions.add_initializer), each frame asking for its own row.

MP4 (H.264) goes through imageio with imageio-ffmpeg, whose wheel carries an ffmpeg binary; GIF through Pillow,
which imageio needs anyway. Frames are enlarged by an integer factor (nearest neighbour) to about
MIN_VIDEO_SIZE pixels, since 28-pixel videos are stamps. Frames stream: made a batch at a time, enlarged and
handed to the encoder one at a time (the GIF put together from the single-frame GIFs Pillow writes, since its
save_all holds every frame to the end), so memory is that of a batch whatever --frames is (holding them all
asked 14.6 GiB for --frames 100000). The file is written beside its name and renamed at the end: an error or
Ctrl-C leaves nothing half-written.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gancli.runtime.errors import GenerateError
from gancli.runtime.files import atomic_path, regular_target
from gancli.runtime.labels import class_index, describe_classes, split_classes
from gancli.runtime.latents import MAX_SEED, latents
from gancli.runtime.models import resolve_model
from gancli.runtime.session import GeneratorSession

SUFFIXES = (".mp4", ".gif")
MIN_FRAMES = 2
MAX_FRAMES = 10_000  # per step: 7 minutes of one step at 24 fps, more than any walk shows
MIN_VIDEO_SIZE = 256
EMBEDDING_INITIALIZER = "G.input.embed.weight"  # the conditional generator's nn.Embedding (gan/networks.py)
BATCH = 64


@dataclass
class WalkResult:
    path: Path
    frames: int
    kind: str  # "seeds" or "classes"
    stops: list[str]  # the seeds or class names visited
    seconds: float


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of vectors a, b [D] at each t [T] in [0, 1] -> [T, D]: along the great circle
    between their directions, with the norm interpolated linearly (nearly parallel vectors: a straight line)."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.dot(a64, b64) / (np.linalg.norm(a64) * np.linalg.norm(b64))
    omega = math.acos(float(np.clip(cos, -1.0, 1.0)))
    if omega < 1e-6:
        return ((1 - t) * a64 + t * b64).astype(np.float32)
    return ((np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / math.sin(omega)).astype(np.float32)


def loop_steps(count: int, frames: int, batch: int) -> Iterator[tuple[int, np.ndarray]]:
    """(step k, positions t in [0, 1)) of the count * frames frames, at most `batch` at a time: step k goes from
    stop k to stop k+1, the last back to the first, without repeating a key frame at the seams (the loop plays
    seamlessly)."""
    for k in range(count):
        for lo in range(0, frames, batch):
            yield k, np.arange(lo, min(lo + batch, frames)) / frames


def seed_walk(seeds: list[int], frames: int, latent_dim: int, batch: int = BATCH) -> Iterator[np.ndarray]:
    """z [<= batch, latent_dim] of the walk's frames in order: slerp from each seed's z to the next seed's, looping."""
    keys = np.concatenate([latents(s, [0], latent_dim) for s in seeds])
    for k, t in loop_steps(len(keys), frames, batch):
        yield slerp(keys[k], keys[(k + 1) % len(keys)], t)


def class_morph(table: np.ndarray, classes: list[int], frames: int, batch: int) -> Iterator[np.ndarray]:
    """Embedding rows [<= batch, D] of the morph's frames in order: linear from each class's row of `table` to the
    next, looping."""
    for k, t in loop_steps(len(classes), frames, batch):
        start, end = table[classes[k]], table[classes[(k + 1) % len(classes)]]
        yield (start * (1 - t)[:, None] + end * t[:, None]).astype(np.float32)


def _protobuf_fields(buffer: memoryview):
    """(field number, wire type, value) of one protobuf message: an int for varints, a memoryview for
    length-delimited fields; fixed-width fields are skipped. Enough to find an ONNX initializer without onnx."""
    pos = 0
    while pos < len(buffer):
        key, pos = _varint(buffer, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buffer, pos)
        elif wire == 2:
            length, pos = _varint(buffer, pos)
            value, pos = buffer[pos:pos + length], pos + length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            continue
        else:
            raise ValueError(f"protobuf wire type {wire} is not read here")
        yield field, wire, value


def _varint(buffer: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def read_float_initializer(path: Path, name: str) -> np.ndarray | None:
    """The float32 initializer `name` of an ONNX file (ModelProto.graph = 7, GraphProto.initializer = 5,
    TensorProto dims = 1, data_type = 2 (1: float), name = 8, raw_data = 9), or None when it has none such."""
    data = memoryview(path.read_bytes())
    wanted = name.encode()
    for field, wire, graph in _protobuf_fields(data):
        if field != 7 or wire != 2:
            continue
        for g_field, g_wire, tensor in _protobuf_fields(graph):
            if g_field != 5 or g_wire != 2:
                continue
            fields = {}
            dims = []
            for t_field, t_wire, value in _protobuf_fields(tensor):
                if t_field == 1:
                    dims += [value] if t_wire == 0 else list(_packed_varints(value))
                else:
                    fields[t_field] = value
            if bytes(fields.get(8, b"")) == wanted and fields.get(2) == 1 and 9 in fields:
                return np.frombuffer(bytes(fields[9]), dtype="<f4").reshape(dims).copy()
    return None


def _packed_varints(buffer: memoryview):
    pos = 0
    while pos < len(buffer):
        value, pos = _varint(buffer, pos)
        yield value


def check_walk(out: Path, frames: int, fps: float, seeds: list[int], classes: list | None) -> None:
    """Every argument that can be checked before the model is loaded; one GenerateError line each."""
    if out.suffix.lower() not in SUFFIXES:
        raise GenerateError(f"--out {out}: the walk is written as .mp4 or .gif, not {out.suffix or 'no suffix'}; "
                            f"name a file such as walk.mp4")
    if out.is_dir():
        raise GenerateError(f"--out {out} is a folder; name a file such as {out / 'walk.mp4'}")
    if not out.parent.is_dir():
        raise GenerateError(f"--out {out}: its folder {out.parent} does not exist; create it or name another file")
    folder = Path(regular_target(out, "--out")).parent  # a symlink's file is the one written
    try:  # a probe file: a read-only or virtual file system (/proc) is found out now, not after the frames
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.probe-", dir=folder)
    except OSError as e:
        raise GenerateError(f"--out {out} cannot be written ({e.strerror or e}); name a file in a writable "
                            f"folder") from None
    os.close(fd)
    os.unlink(probe)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < MIN_FRAMES:
        raise GenerateError(f"--frames must be an integer >= {MIN_FRAMES} (frames from one stop to the next), "
                            f"not {frames!r}")
    if frames > MAX_FRAMES:
        raise GenerateError(f"--frames {frames:,} is more than a walk can show; pass at most {MAX_FRAMES:,} frames "
                            f"from one stop to the next ({MAX_FRAMES / 24 / 60:.0f} minutes of each step at 24 fps)")
    if not (isinstance(fps, (int, float)) and 0 < fps <= 240):
        raise GenerateError(f"--fps must be a number in (0, 240], not {fps!r}")
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= MAX_SEED for s in seeds):
        raise GenerateError(f"--seeds must be integers between 0 and 2**128 - 1, not {seeds}")
    if classes is not None and len(classes) >= 2:
        if len(seeds) > 1:
            raise GenerateError("a class morph keeps z fixed: pass one seed with --classes A,B (or several seeds "
                                "and at most one class)")
    elif len(seeds) < 2:
        raise GenerateError(f"a walk needs at least two seeds (--seeds 1,2,3), got {len(seeds)}; or morph between "
                            f"classes of a class-conditional model with --classes 3,8")


def parse_seeds(seeds: str | list[int]) -> list[int]:
    if not isinstance(seeds, str):
        return list(seeds)
    try:
        return [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise GenerateError(f"--seeds takes integers separated by commas, e.g. 1,2,3, not {seeds!r}") from None


def interpolate(model: str | Path | None, seeds: str | list[int], out: str | Path, frames: int = 30, *,
                classes: str | list | None = None, fps: float = 24, device: str = "auto",
                precision: str | None = None) -> WalkResult:
    """Write a looping walk through `seeds` (or, with two or more `classes`, a class morph at the z of the one
    seed) to `out` (.mp4 or .gif), `frames` frames per step. Returns a WalkResult."""
    start = time.perf_counter()
    out = Path(out)
    seeds = parse_seeds(seeds)
    items = split_classes(classes)
    check_walk(out, frames, fps, seeds, items)
    path = resolve_model(model, precision)
    session = GeneratorSession(path, device=device)
    meta = session.metadata
    if items is not None and not meta.conditional:
        raise GenerateError(f"--classes {','.join(map(str, items))}: {path} is an unconditional model (it has no "
                            f"classes); drop --classes, or use a class-conditional model such as mnist-cdcgan")
    labels = []
    for item in items or []:
        label = class_index(item, tuple(meta.class_names))
        if label is None:
            raise GenerateError(f"--classes {item}: {path} has no such class; its classes are "
                                f"{describe_classes(meta.class_names)}")
        labels.append(label)
    if len(labels) >= 2:
        table = read_float_initializer(path, EMBEDDING_INITIALIZER)
        if table is None or table.shape != (meta.num_classes, meta.latent_dim):
            raise GenerateError(f"{path} has no class embedding named {EMBEDDING_INITIALIZER} of shape "
                                f"[{meta.num_classes}, {meta.latent_dim}] to morph through; re-export it with "
                                f"`gancli export`")
        z = latents(seeds[0] if seeds else 0, [0], meta.latent_dim)
        images = _morph_images(path, device, class_morph(table, labels, frames, meta.num_classes), z,
                               meta.num_classes)
        kind, stops = "classes", [meta.class_names[c] for c in labels]
    else:
        label = labels[0] if labels else 0
        images = (session.images(z, np.full(len(z), label, dtype=np.int64) if meta.conditional else None)
                  for z in seed_walk(seeds, frames, meta.latent_dim))
        kind, stops = "seeds", [str(s) for s in seeds]
    count = write_walk(images, out, fps)
    return WalkResult(out, count, kind, stops, time.perf_counter() - start)


def _morph_images(path: Path, device: str, rows: Iterable[np.ndarray], z: np.ndarray, count: int
                  ) -> Iterator[np.ndarray]:
    """The generator at z [1, D] for each batch of embedding rows [<= count, D], frame i of a batch asking for its
    row i: a session per batch whose embedding table holds those rows, padded to the model's `count` classes (the
    table keeps its shape, and the labels stay within the model's classes)."""
    for chunk in rows:
        table = np.concatenate([chunk, np.zeros((count - len(chunk), chunk.shape[1]), np.float32)])
        session = GeneratorSession(path, device=device, initializers={EMBEDDING_INITIALIZER: table})
        yield session.images(np.repeat(z, len(chunk), axis=0), np.arange(len(chunk), dtype=np.int64))


def video_frames(images: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, C] -> RGB uint8 [T, s H, s W, 3], enlarged by the integer s that reaches MIN_VIDEO_SIZE."""
    scale = max(1, -(-MIN_VIDEO_SIZE // images.shape[1]))
    frames = images.repeat(scale, axis=1).repeat(scale, axis=2)
    return np.repeat(frames, 3, axis=3) if frames.shape[3] == 1 else frames


def write_walk(images: Iterable[np.ndarray], out: Path, fps: float) -> int:
    """Encode the batches of frames as they come, each frame enlarged on its own; returns how many were written."""
    frames = (video_frames(batch[k:k + 1])[0] for batch in images for k in range(len(batch)))
    try:
        return _encode(frames, out, fps)
    except OSError as e:
        raise GenerateError(f"--out {out}: writing the walk failed ({e.strerror or str(e).splitlines()[0]}); "
                            f"nothing was written") from None


def _encode(frames: Iterator[np.ndarray], out: Path, fps: float) -> int:
    count = 0
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".gif":
            count = _write_gif(frames, tmp, fps)
        else:
            import imageio.v2 as imageio

            # H.264 in yuv420p plays everywhere; macro_block_size 1: the enlarged sides are even, keep them as they are
            with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                    pixelformat="yuv420p", macro_block_size=1, output_params=["-f", "mp4"]) as w:
                for frame in frames:
                    w.append_data(frame)
                    count += 1
    return count


def _write_gif(frames: Iterator[np.ndarray], path: Path, fps: float) -> int:
    """A looping GIF, written a frame at a time: Image.save's save_all holds every frame until the end. Each frame
    is saved alone by Pillow, quantised to its own palette as save_all does it (exact up to 256 colours, so grey
    frames are) and carried as its local colour table; the first frame's file gives the header (with its global
    table and the loop), every file its frame: what follows the global colour table, up to the trailer."""
    import io

    from PIL import Image

    count = 0
    with open(path, "wb") as f:
        for frame in frames:
            encoded = io.BytesIO()
            # optimize=False: Pillow's palette trimming would leave the local table out of step with the pixels
            Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE).save(
                encoded, format="GIF", include_color_table=True, optimize=False, duration=round(1000 / fps),
                disposal=1, **({"loop": 0} if count == 0 else {}))
            data = encoded.getbuffer()
            f.write(data[:-1] if count == 0 else data[_frame_start(data):-1])  # [-1]: the trailer, ";"
            count += 1
        f.write(b";")
    return count


def _frame_start(gif: memoryview) -> int:
    """Where a single-frame GIF's frame begins: after the 6-byte signature, the 7-byte logical screen
    descriptor and the global colour table its packed byte announces (3 * 2**(size + 1) bytes)."""
    packed = gif[10]
    return 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
