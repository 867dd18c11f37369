"""Where images go and how: file layout, encoding, atomic writes, the manifest.

File layouts, fixed by the index (and, for a class-conditional model, its label, itself a function of
the index: runtime/labels.py), never by N, the batch size or the shard, so every run, resume and shard
of one set agrees on names:
  flat (the default)
    png/jpg  OUT/00000/000000042.png   folder = index // 10,000, so no folder holds more than 10k files
    npz      OUT/00000/000001000.npz   one file per chunk of 1,000 consecutive indices, named by its first;
             arrays `images` uint8 [n, H, W, C], `indices` int64 [n] and, when conditional, `labels` int64 [n]
  imagefolder (conditional models, png/jpg)
             OUT/<class name>/000000042.png   torchvision.datasets.ImageFolder's layout: one folder per class
The manifest lists every image's file, and for a conditional model its label and class name.
Every file appears under its final name only once complete: an unnamed O_TMPFILE linked into place
where the file system supports it, else a dot-prefixed temp name beside it, then renamed (atomic on
POSIX), so a reader, a resume or a Ctrl-C never sees half a file (runtime/files.py; here its OSErrors
become one-line GenerateErrors).
"""
from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import zipfile
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
_IMAGE_NAME = re.compile(r"^(\d{9})\.(png|jpg|npz)$")
# runtime.files' temp names, `.000000042.tmp-PID.png`, and the `.000000042.png.tmp-PID` of earlier versions
_TEMP_NAME = re.compile(r"^\.(\d{9})(?:\.tmp-\d+\.(png|jpg|npz)|\.(png|jpg|npz)\.tmp-\d+)$")
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
            return [(f"{k:05d}", None) for k in _folders_for(start, stop)]
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


def npz_indices(path: Path) -> np.ndarray | None:
    """The indices a chunk file holds, or None when it is unreadable (then it is simply made again)."""
    try:
        with np.load(path) as data:
            return data["indices"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _folders_for(start: int, stop: int) -> range:
    return range(start // FILES_PER_FOLDER, (stop - 1) // FILES_PER_FOLDER + 1)


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
    except FileNotFoundError:
        return


def existing_mask(out_dir: Path, fmt: str, start: int, stop: int, names: FileNames | None = None) -> np.ndarray:
    """have[i - start] is True when image i in [start, stop) is on disk (complete: files appear only by rename),
    in its own folder of the file layout `names` (default: flat).

    A bool array rather than a set, so memory stays small for any N (10 MB for 10 M images).
    """
    names = names or FileNames(fmt)
    have = np.zeros(stop - start, dtype=bool)
    for folder, label in names.folders(start, stop):
        for entries in _entries(out_dir / folder):
            found: list[int] = []  # one chunk of names at a time
            for entry in entries:
                match = _IMAGE_NAME.match(entry.name)
                if not match or match.group(2) != fmt:
                    continue
                if fmt != "npz":
                    found.append(int(match.group(1)))
                elif (held := npz_indices(Path(entry.path))) is not None:
                    found.extend(held.tolist())
            indices = np.asarray(found, dtype=np.int64)
            indices = names.keep(indices[(indices >= start) & (indices < stop)], label)
            have[indices - start] = True
    return have


def _span(first: int, fmt: str) -> tuple[int, int]:
    """Indices [lo, hi) that the file named by `first` holds (or will hold)."""
    return (first, first + NPZ_CHUNK) if fmt == "npz" else (first, first + 1)


def remove_stale_temps(out_dir: Path, start: int, stop: int, names: FileNames | None = None) -> int:
    """Delete temp files a killed run left for indices in [start, stop); other shards' are left alone."""
    removed = 0
    for folder, _label in (names or FileNames("png")).folders(start, stop):
        for entries in _entries(out_dir / folder):
            for entry in entries:
                match = _TEMP_NAME.match(entry.name)
                if not match:
                    continue
                lo, hi = _span(int(match.group(1)), match.group(2) or match.group(3))
                if lo < stop and hi > start:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
    return removed


def _manifest_index(raw: str) -> int | None:
    try:
        return int(json.loads(raw)["index"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # a line cut off by a kill


class Manifest:
    """JSON lines {"index", "seed", "file"[, "item"][, "label", "class"]}: which file holds which image, made
    from which seed (and, for a class-conditional model, with which label: its index and class name).

    The files on disk are the truth. At the start of every run the manifest is rebuilt, streaming,
    from what is there: lines of deleted files, duplicates and a line cut off by a kill are dropped,
    files a killed run never listed are added; the result replaces the old file atomically. Then each
    finished batch is appended with one write, so an interrupt leaves whole lines only. Which of this
    run's indices are listed is a bool array, so memory stays flat for any N.
    """

    def __init__(self, path: Path, seed: int, fmt: str, start: int, stop: int, names: FileNames | None = None):
        self.path = path
        self.seed = seed
        self.fmt = fmt
        self.start = start
        self.names = names or FileNames(fmt)
        self.listed = np.zeros(stop - start, dtype=bool)
        classes = self.names.classes
        # what ends the line of an image of each label
        self._tails = [f', "label": {label}, "class": {json.dumps(name)}}}\n'
                       for label, name in enumerate(classes.names)] if classes else []

    def lines(self, indices: Iterable[int]) -> str:
        """The JSON lines of some images, formatted directly: json.dumps per line cost 3 µs, 4x this,
        and the parent process writes up to 100k lines a second for the MLP."""
        seed, fmt = self.seed, self.fmt
        if self.names.classes is not None:
            return self._labelled_lines(list(indices))
        if fmt == "npz":
            return "".join(f'{{"index": {i}, "seed": {seed}, "file": "{relpath_for(i, fmt)}", "item": {i % NPZ_CHUNK}}}\n'
                           for i in indices)
        return "".join(f'{{"index": {i}, "seed": {seed}, "file": "{relpath_for(i, fmt)}"}}\n' for i in indices)

    def _labelled_lines(self, indices: list[int]) -> str:
        seed, names, tails = self.seed, self.names, self._tails
        labels = names.classes.labels(indices).tolist()
        if self.fmt == "npz":
            return "".join(f'{{"index": {i}, "seed": {seed}, "file": "{relpath_for(i, "npz")}", '
                           f'"item": {i % NPZ_CHUNK}{tails[label]}' for i, label in zip(indices, labels))
        return "".join(f'{{"index": {i}, "seed": {seed}, "file": "{names.json_relpath(i, label)}"{tails[label]}'
                       for i, label in zip(indices, labels))

    def rebuild(self, have: np.ndarray, on_disk: Callable[[int], bool]) -> None:
        """List exactly: the images `have` marks in this run's range, plus earlier lines outside the
        range (a larger earlier run) whose file `on_disk` still finds."""
        self.listed[:] = False
        outside: set[int] = set()
        with atomic_file(self.path) as dst:
            for raw in self._old_lines():
                index = _manifest_index(raw)
                if index is None:
                    continue
                k = index - self.start
                if 0 <= k < len(have):
                    if not have[k] or self.listed[k]:
                        continue
                    self.listed[k] = True
                elif index in outside or not on_disk(index):
                    continue
                else:
                    outside.add(index)
                dst.write(f"{raw.rstrip()}\n".encode())
            for missing in np.array_split(np.flatnonzero(have & ~self.listed) + self.start, max(1, len(have) // 100_000)):
                dst.write(self.lines(missing.tolist()).encode())
        self.listed |= have

    def _old_lines(self) -> Iterator[str]:
        try:
            with open(self.path) as f:
                yield from f
        except FileNotFoundError:
            return

    def append(self, indices: Iterable[int]) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        new = indices[~self.listed[indices - self.start]].tolist()
        if not new:
            return
        data = self.lines(new).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)  # one call: an interrupt lands before or after it, never inside a line
            finally:
                os.close(fd)
        except OSError as e:
            raise write_error(self.path, e) from e
        self.listed[np.asarray(new) - self.start] = True


def file_present(out_dir: Path, fmt: str, names: FileNames | None = None) -> Callable[[int], bool]:
    """For Manifest.rebuild: whether image `index` still has its file (npz: its chunk file)."""
    names = names or FileNames(fmt)

    @functools.lru_cache(maxsize=64)
    def exists(relpath: str) -> bool:
        return (out_dir / relpath).is_file()
    return lambda index: exists(names.relpath(index))


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
