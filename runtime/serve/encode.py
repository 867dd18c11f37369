"""Images -> bytes on the wire: PNGs encoded on every core, and zip and npz streams written a batch at a time.

cv2.imencode releases the GIL, so a thread pool of one thread per core encodes in parallel while the event
loop keeps answering. The streams are zip files written to an unseekable sink (zipfile then puts each
entry's sizes after its data), drained after every batch: a response of 1,024 images never sits whole in
memory.
"""
from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gancli.runtime.writer import encode, to_encoder_order

ImagesOf = Callable[[np.ndarray], Awaitable[np.ndarray]]  # indices -> uint8 images [n, H, W, C]


def encode_png(image: np.ndarray) -> bytes:
    """uint8 RGB (or grey) [H, W, C] -> the PNG `gancli generate` writes for it. All of it runs in a pool
    thread: the channel flip on the event loop took 8 % of the loop's time at 32 clients (py-spy)."""
    return encode(to_encoder_order(image), "png").tobytes()


async def encode_pngs(images: np.ndarray, pool: ThreadPoolExecutor) -> list[bytes]:
    """uint8 RGB (or grey) [n, H, W, C] -> n PNGs, the bytes `gancli generate` writes for them."""
    loop = asyncio.get_running_loop()
    return list(await asyncio.gather(*(loop.run_in_executor(pool, encode_png, image) for image in images)))


class Sink(io.RawIOBase):
    """An unseekable file that keeps what is written until it is taken."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: ANN001 (bytes-like)
        data = bytes(data)  # the count is of bytes (the len of an array's memoryview is its first dimension)
        self._parts.append(data)
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def index_chunks(start: int, n: int, size: int) -> list[np.ndarray]:
    return [np.arange(first, min(first + size, start + n), dtype=np.int64) for first in range(start, start + n, size)]


async def zip_stream(chunks: list[np.ndarray], images_of: ImagesOf, pool: ThreadPoolExecutor,
                     first: np.ndarray) -> AsyncIterator[bytes]:
    """A zip of 000000042.png files (stored: PNGs do not compress further); `first` is the first chunk's
    images, made before the answer started so that a full queue could still be a 503."""
    sink = Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for k, indices in enumerate(chunks):
            images = first if k == 0 else await images_of(indices)
            for index, png in zip(indices.tolist(), await encode_pngs(images, pool)):
                archive.writestr(f"{index:09d}.png", png)
            yield sink.take()
    yield sink.take()


async def npz_stream(chunks: list[np.ndarray], images_of: ImagesOf, first: np.ndarray, shape: tuple[int, ...],
                     labels: np.ndarray | None) -> AsyncIterator[bytes]:
    """An npz as `gancli generate --format npz` writes one: images uint8 [n, H, W, C], indices int64 [n] and,
    for a conditional model, labels int64 [n]; images.npy is streamed a batch at a time."""
    sink = Sink()
    indices = np.concatenate(chunks)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                                  "fortran_order": False, "shape": (len(indices), *shape)})
    entry = zipfile.ZipInfo("images.npy")
    entry.file_size = len(header.getvalue()) + len(indices) * int(np.prod(shape))  # zipfile picks zip64 by it
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        with archive.open(entry, "w") as f:
            f.write(header.getvalue())
            for k, chunk in enumerate(chunks):
                f.write(np.ascontiguousarray(first if k == 0 else await images_of(chunk)).data)
                yield sink.take()
        extras = {"indices": indices} if labels is None else {"indices": indices, "labels": labels.astype(np.int64)}
        for name, array in extras.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{name}.npy", buffer.getvalue())
    yield sink.take()
