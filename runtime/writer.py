"""Where images go and how: file layout, encoding, atomic writes, and what is on disk already.

File layouts, fixed by the index (and, for a class-conditional model, its label, itself a function of
the index: runtime/labels.py), never by N, the batch size or the shard, so every run, resume and shard
of one set agrees on names:
  flat (the default)
    png/jpg  OUT/00000/000000042.png   folder = index // 10,000, so no folder holds more than 10k files
    npz      OUT/00000/000001000.npz   one file per chunk of 1,000 consecutive indices, named by its first;
             arrays `images` uint8 [n, H, W, C], `indices` int64 [n] and, when conditional, `labels` int64 [n]
  imagefolder (conditional models, png/jpg)
             OUT/<class name>/000000042.png   torchvision.datasets.ImageFolder's layout: one folder per class
The manifest (runtime/manifest.py) lists every image's file, and for a conditional model its label and
class name. `OnDisk` finds the images already there, a bounded block of indices at a time.
Every file appears under its final name only once complete: an unnamed O_TMPFILE linked into place
where the file system supports it, else a dot-prefixed temp name beside it, then renamed (atomic on
POSIX), so a reader, a resume or a Ctrl-C never sees half a file (runtime/files.py; here its OSErrors
become one-line GenerateErrors).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from gancli.runtime import files
from gancli.runtime.errors import GenerateError
from gancli.runtime.labels import ClassPlan

FORMATS = ("png", "jpg", "npz")
FILES_PER_FOLDER = 10_000
NPZ_CHUNK = 1_000  # images per .npz file: 12 MB of 64x64 RGB, small enough to build in memory
INDEX_DIGITS = 9
JPEG_QUALITY = 95
HEADER_NAME = "generate.json"
LAYOUT_FLAT = "flat"
LAYOUT_IMAGEFOLDER = "imagefolder"
FILE_LAYOUTS = (LAYOUT_FLAT, LAYOUT_IMAGEFOLDER)
SCAN_CHUNK = 10_000  # names held in memory at once while scanning a folder
SCAN_BLOCK = 100_000  # indices looked up on disk at once (ten flat folders): memory stays flat for any N
MAX_IMAGES = 10 ** 9  # names have 9 digits (000000000 to 999999999) and flat folders 5 (00000 to 99999)
_IMAGE_NAME = re.compile(r"^(\d{9})\.(png|jpg|npz)$")  # an image or npz chunk, and what a temp file was for
# OpenCV's default PNG settings were the fastest measured (2.5k/s vs 1.3k/s at level 1, 64x64 RGB)
_ENCODE_PARAMS = {"png": [], "jpg": [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]}


def relpath_for(index: int, fmt: str) -> str:
    """File of image `index` (for npz: of the chunk that holds it), relative to the output folder."""
    if fmt == "npz":
        index = chunk_start(index)
    return f"{index // FILES_PER_FOLDER:05d}/{index:0{INDEX_DIGITS}d}.{fmt}"


def chunk_start(index: int) -> int:
    return index - index % NPZ_CHUNK


def check_file_layout(layout: str, fmt: str) -> None:
    """Before any model is loaded: a known layout, and one file per image for imagefolder."""
    if layout not in FILE_LAYOUTS:
        raise GenerateError(f"unknown --layout {layout!r}; use {' or '.join(FILE_LAYOUTS)}")
    if layout == LAYOUT_IMAGEFOLDER and fmt == "npz":
        raise GenerateError("--layout imagefolder writes one file per image; use --format png or jpg "
                            "(npz chunks hold every class: their `labels` array and the manifest give each image's label)")


def check_class_folder_name(name: str) -> None:
    """A class name must be one plain folder name to be an ImageFolder class folder."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise GenerateError(f"class name {name!r} cannot be a folder name; use the default --layout flat "
                            f"(the manifest records each image's class)")


class FileNames:
    """Where each image index goes, in one file layout (see the module docstring)."""

    def __init__(self, fmt: str, layout: str = LAYOUT_FLAT, classes: ClassPlan | None = None):
        check_file_layout(layout, fmt)
        if layout == LAYOUT_IMAGEFOLDER:
            if classes is None:
                raise GenerateError("--layout imagefolder needs a class-conditional model (one folder per class); "
                                    "this model is unconditional: drop --layout")
            for label in classes.requested:
                check_class_folder_name(classes.names[label])
        self.fmt = fmt
        self.layout = layout
        self.classes = classes
        # manifest lines are formatted directly: the JSON-escaped class names, once
        self._json_names = [json.dumps(name)[1:-1] for name in classes.names] if classes else []

    def relpath(self, index: int) -> str:
        """File of image `index` (for npz: of the chunk that holds it), relative to the output folder."""
        if self.layout == LAYOUT_FLAT:
            return relpath_for(index, self.fmt)
        return f"{self.classes.names[int(self.classes.labels([index])[0])]}/{index:0{INDEX_DIGITS}d}.{self.fmt}"

    def relpaths(self, indices: np.ndarray) -> list[str]:
        if self.layout == LAYOUT_FLAT:
            return [relpath_for(i, self.fmt) for i in indices.tolist()]
        names, fmt = self.classes.names, self.fmt
        return [f"{names[label]}/{i:0{INDEX_DIGITS}d}.{fmt}"
                for i, label in zip(indices.tolist(), self.classes.labels(indices).tolist())]

    def json_relpath(self, index: int, label: int | None) -> str:
        """relpath as it appears inside a JSON string (class names escaped)."""
        if self.layout == LAYOUT_FLAT:
            return relpath_for(index, self.fmt)
        return f"{self._json_names[label]}/{index:0{INDEX_DIGITS}d}.{self.fmt}"

    def folders(self, start: int, stop: int) -> list[tuple[str, int | None]]:
        """(subfolder, the class it holds or None) of every subfolder that may hold images of [start, stop)."""
        if self.layout == LAYOUT_FLAT:
            return [(f"{k:05d}", None) for k in range(start // FILES_PER_FOLDER, (stop - 1) // FILES_PER_FOLDER + 1)]
        cycle = len(self.classes.requested)
        hit = self.classes.labels(np.arange(start, stop)).tolist() if stop - start < cycle else self.classes.requested
        return [(self.classes.names[label], label) for label in sorted(set(hit))]

    def keep(self, indices: np.ndarray, label: int | None) -> np.ndarray:
        """Of the indices found in a folder, those whose file belongs there (an imagefolder class folder
        holds only the indices of its class)."""
        if label is None or len(indices) == 0:
            return indices
        return indices[self.classes.labels(indices) == label]


def write_error(path: str | Path, e: OSError) -> GenerateError:
    if e.errno == errno.ENOSPC:
        return GenerateError(f"disk full while writing {path}; free some space and run the same command again to resume")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return GenerateError(f"cannot write {path} ({e.strerror}); choose a writable --out folder")
    return GenerateError(f"cannot write {path} ({e.strerror or e}); check the --out folder and run again to resume")


@contextlib.contextmanager
def generate_errors(path: str | Path) -> Iterator[None]:
    """An OSError while writing `path` becomes a one-line GenerateError (the temp file is already removed)."""
    try:
        yield
    except OSError as e:
        raise write_error(path, e) from e


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """runtime.files.atomic_file, an OSError as a GenerateError (KeyboardInterrupt passes through)."""
    with generate_errors(path), files.atomic_file(path) as f:
        yield f


def write_bytes_atomic(path: str | Path, data: bytes | np.ndarray) -> None:
    """runtime.files.write_bytes_atomic (O_TMPFILE + link, else temp + rename), an OSError as a GenerateError."""
    with generate_errors(path):
        files.write_bytes_atomic(path, data)


def write_bytes_renamed(path: str | Path, data: bytes | np.ndarray) -> None:
    """runtime.files.write_bytes_renamed (temp + rename), an OSError as a GenerateError."""
    with generate_errors(path):
        files.write_bytes_renamed(path, data)


def encode(image: np.ndarray, fmt: str) -> np.ndarray:
    """One uint8 image [H, W, C] in RGB (or grey, C = 1) -> encoded bytes; grey stays one channel."""
    if image.shape[-1] == 1:
        image = image[..., 0]
    ok, buf = cv2.imencode(f".{fmt}", image, _ENCODE_PARAMS[fmt])
    if not ok:
        raise GenerateError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return buf


def to_encoder_order(images: np.ndarray) -> np.ndarray:
    """RGB [B, H, W, 3] -> the BGR OpenCV expects, one contiguous copy per batch; grey as it is."""
    if images.shape[-1] == 3:
        return np.ascontiguousarray(images[..., ::-1])
    return np.ascontiguousarray(images)


class FolderMaker:
    """mkdir once per subfolder (10k images share one), not once per file."""

    def __init__(self, root: Path):
        self.root = str(root)
        self._made: set[str] = set()

    def path(self, relpath: str) -> str:
        folder = relpath[:relpath.index("/")]
        if folder not in self._made:
            try:
                os.makedirs(os.path.join(self.root, folder), exist_ok=True)
            except OSError as e:
                raise write_error(os.path.join(self.root, folder), e) from e
            self._made.add(folder)
        return f"{self.root}/{relpath}"


def write_image_files(folders: FolderMaker, indices: np.ndarray, images: np.ndarray, fmt: str,
                      should_stop: Callable[[], bool], names: FileNames | None = None) -> list[int]:
    """Encode and write one file per image (named by `names`, default the flat layout); stops between
    files when asked. Returns the indices written."""
    relpaths = (names or FileNames(fmt)).relpaths(np.asarray(indices))
    written = []
    for index, relpath, image in zip(indices.tolist(), relpaths, to_encoder_order(images)):
        if should_stop():
            break
        write_bytes_atomic(folders.path(relpath), encode(image, fmt))
        written.append(index)
    return written


def write_npz_chunk(folders: FolderMaker, indices: np.ndarray, images: np.ndarray,
                    labels: np.ndarray | None = None) -> list[int]:
    """One chunk (consecutive indices from a chunk start) as one uncompressed .npz, atomically; a
    conditional model's chunk also holds each image's label."""
    arrays = {"images": images, "indices": indices.astype(np.int64)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    with atomic_file(folders.path(relpath_for(int(indices[0]), "npz"))) as f:
        np.savez(f, **arrays)
    return indices.tolist()


def npz_indices(path: str | Path, first: int | None = None) -> np.ndarray | None:
    """The indices a chunk file holds, or None when it is not a whole chunk of ours (truncated by a crash,
    empty, another program's, or holding other indices than its name says): then it is simply made again.

    Reads the `indices` array and only the header of `images`, not the images."""
    try:
        with np.load(path, allow_pickle=False) as data:
            indices = data["indices"]
            with data.zip.open("images.npy") as f:
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(f)]
                shape, _, dtype = read_header(f)
    except Exception:  # noqa: BLE001 (zipfile, numpy and OSError fail in many ways on a damaged file; any means "redo")
        return None
    first = chunk_start(int(indices.flat[0])) if first is None and indices.size else first
    if (indices.ndim != 1 or not 0 < len(indices) <= NPZ_CHUNK or indices.dtype.kind not in "iu"
            or dtype != np.uint8 or len(shape) != 4 or shape[0] != len(indices)
            or not np.array_equal(indices, np.arange(first, first + len(indices)))):
        return None
    return indices.astype(np.int64)


class IndexSet:
    """A set of image indices as a sparse bitmap: one bit per index, in pages of 2**20 allocated where
    an index falls (128 KB each), so it costs 1 bit per image present, never one per image asked for."""

    PAGE_BITS = 1 << 20

    def __init__(self) -> None:
        self._pages: dict[int, np.ndarray] = {}

    def add(self, indices: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        for page in np.unique(indices // self.PAGE_BITS).tolist():
            bits = self._pages.setdefault(page, np.zeros(self.PAGE_BITS // 8, dtype=np.uint8))
            offsets = indices[indices // self.PAGE_BITS == page] % self.PAGE_BITS
            np.bitwise_or.at(bits, offsets >> 3, (1 << (offsets & 7)).astype(np.uint8))

    def add_one(self, index: int) -> bool:
        """Add `index`; False when it was there already."""
        page, offset = divmod(index, self.PAGE_BITS)
        bits = self._pages.setdefault(page, np.zeros(self.PAGE_BITS // 8, dtype=np.uint8))
        byte, bit = offset >> 3, 1 << (offset & 7)
        if bits[byte] & bit:
            return False
        bits[byte] |= bit
        return True

    def mask(self, lo: int, hi: int) -> np.ndarray:
        """bool [hi - lo]: which of lo..hi-1 are in the set."""
        out = np.zeros(hi - lo, dtype=bool)
        for page in range(lo // self.PAGE_BITS, (hi - 1) // self.PAGE_BITS + 1 if hi > lo else 0):
            if (bits := self._pages.get(page)) is None:
                continue
            base = page * self.PAGE_BITS
            a, b = max(lo, base), min(hi, base + self.PAGE_BITS)
            out[a - lo:b - lo] = np.unpackbits(bits, bitorder="little")[a - base:b - base].astype(bool)
        return out


def _entries(folder: Path) -> Iterator[list[os.DirEntry]]:
    """A folder's entries, SCAN_CHUNK at a time (an imagefolder class folder may hold millions); none if missing."""
    try:
        with os.scandir(folder) as it:
            chunk: list[os.DirEntry] = []
            for entry in it:
                chunk.append(entry)
                if len(chunk) >= SCAN_CHUNK:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk
    except (FileNotFoundError, NotADirectoryError):
        return


def _span(first: int, fmt: str) -> tuple[int, int]:
    """Indices [lo, hi) that the file named by `first` holds (or will hold)."""
    return (first, first + NPZ_CHUNK) if fmt == "npz" else (first, first + 1)


class OnDisk:
    """Which images of [start, stop) are on disk, a block of SCAN_BLOCK indices at a time, so memory stays
    flat for any N: a flat layout's block is ten 10,000-file folders, listed when the block is asked for
    (a missing folder costs one failed open). An imagefolder class folder holds every index of its class,
    so class folders are listed once, at the start, into an IndexSet (1 bit per image found).

    Files appear only complete (runtime/files.py), so a name found is a whole image; an npz chunk counts
    for the indices it holds when it reads back whole (else it is made again). Temp files of processes
    that are gone (a killed run's) are deleted on the way, for indices in [start, stop) only: other
    shards' and live processes' are left alone.
    """

    def __init__(self, out_dir: Path, names: FileNames, start: int, stop: int, listed: IndexSet | None = None):
        self.out_dir = out_dir
        self.names = names
        self.start, self.stop = start, stop
        self.listed = listed  # the manifest's record: an image counts only when listed there too (None: any)
        self._found: IndexSet | None = None
        if names.layout != LAYOUT_FLAT:
            self._found = IndexSet()
            for folder, label in names.folders(start, stop):
                for found in self._scan(out_dir / folder, start, stop):
                    self._found.add(names.keep(found, label))

    def blocks(self, block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(lo, have) per block, in index order: have[k] tells whether image lo + k is on disk."""
        block = block or SCAN_BLOCK
        lo = self.start
        while lo < self.stop:
            hi = min(self.stop, (lo // block + 1) * block)
            yield lo, self.mask(lo, hi)
            lo = hi

    def mask(self, lo: int, hi: int) -> np.ndarray:
        if self._found is not None:
            have = self._found.mask(lo, hi)
        else:
            have = np.zeros(hi - lo, dtype=bool)
            for k in range(lo // FILES_PER_FOLDER, (hi - 1) // FILES_PER_FOLDER + 1):
                for found in self._scan(self.out_dir / f"{k:05d}", lo, hi):
                    have[found - lo] = True
        return have if self.listed is None else have & self.listed.mask(lo, hi)

    def _scan(self, folder: Path, lo: int, hi: int) -> Iterator[np.ndarray]:
        """Indices in [lo, hi) of the complete images in `folder`, SCAN_CHUNK names at a time."""
        fmt = self.names.fmt
        for entries in _entries(folder):
            found: list[int] = []
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    self._remove_dead_temp(entry)
                    continue
                match = _IMAGE_NAME.match(name)
                if not match or match.group(2) != fmt:
                    continue
                first = int(match.group(1))
                if fmt != "npz":
                    if files.whole_image(entry.path, fmt):  # one short read: an empty or cut-off file is made again
                        found.append(first)
                elif first < hi and first + NPZ_CHUNK > lo and (held := npz_indices(entry.path, first)) is not None:
                    found.extend(held.tolist())
            indices = np.asarray(found, dtype=np.int64)
            yield indices[(indices >= lo) & (indices < hi)]

    def _remove_dead_temp(self, entry: os.DirEntry) -> None:
        temp = files.temp_target(entry.name)
        match = _IMAGE_NAME.match(temp[0]) if temp else None
        if not match:
            return
        lo, hi = _span(int(match.group(1)), match.group(2))
        if lo < self.stop and hi > self.start and not files.process_alive(temp[1]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)

    def present(self, indices: np.ndarray) -> np.ndarray:
        """Of some indices (one task's, after it failed or was stopped), those whose files are complete now:
        one stat each (for npz, one read of the chunk's indices)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.names.fmt == "npz":
            held = {first: npz_indices(self.out_dir / relpath_for(first, "npz"), first)
                    for first in np.unique(indices - indices % NPZ_CHUNK).tolist()}
            return np.asarray([i for i in indices.tolist() if (h := held[i - i % NPZ_CHUNK]) is not None
                               and h[0] <= i <= h[-1]], dtype=np.int64)
        relpaths = self.names.relpaths(indices)
        return np.asarray([i for i, rel in zip(indices.tolist(), relpaths) if os.path.isfile(self.out_dir / rel)],
                          dtype=np.int64)

    def remove_temps_of(self, indices: np.ndarray, pids: Iterable[int]) -> None:
        """Delete the temp files processes `pids` (dead workers) may have left for these indices."""
        pids = list(pids)
        if not pids:
            return
        indices = np.asarray(indices, dtype=np.int64)
        if self.names.fmt == "npz":
            indices = np.unique(indices - indices % NPZ_CHUNK)
        for relpath in self.names.relpaths(indices):
            for pid in pids:
                files.remove_quietly(files.temp_path(self.out_dir / relpath, pid))


def write_grid(path: Path, images: np.ndarray, nrow: int = 8, padding: int = 2) -> None:
    """Tile uint8 images [B, H, W, C] into one PNG, laid out as torchvision's make_grid (black padding)."""
    count, height, width, channels = images.shape
    ncol = min(nrow, count)
    nrows = -(-count // ncol)
    cell_h, cell_w = height + padding, width + padding
    grid = np.zeros((nrows * cell_h + padding, ncol * cell_w + padding, channels), dtype=np.uint8)
    for k, image in enumerate(images):
        row, col = divmod(k, ncol)
        y, x = row * cell_h + padding, col * cell_w + padding
        grid[y:y + height, x:x + width] = image
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path.parent, e) from e
    write_bytes_atomic(path, encode(to_encoder_order(grid[None])[0], "png"))
