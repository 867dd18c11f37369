"""What a folder of generated images says about itself: `generate.json` (how every image was made) and the
manifest (which file holds which image), and reading both back when they may be damaged.

The manifest is JSON lines {"index", "seed", "file"[, "item"][, "label", "class"]}. The files on disk are
the truth and every line is a function of its index (and generate.json), so at the start of every run
the lines of this run's range are written again from what is on disk, in index order, a block at a
time (runtime/writer.py's OnDisk); lines of earlier, larger runs outside the range are kept where their
file is still there. Then each finished batch is appended with one write; a write that fails halfway
(a full disk) is cut back, so the file holds whole lines only, and space for the lines of every batch
in flight is kept allocated beyond the end of the file (fallocate KEEP_SIZE, where the file system
has it), so a full disk cannot keep a finished image out of the manifest. That space is never more than
the lines of the run's range can take, and is given back when the run ends, however it ends.

Reading back: a cut-off last line (a killed run) is dropped and repaired by the next run; any other
line that is not a manifest line, or a generate.json that is damaged, foreign or newer than this
gancli, is one GenerateError naming the file and the way out.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gancli.runtime import files
from gancli.runtime.errors import GenerateError
from gancli.runtime.latents import NO_TRUNCATION
from gancli.runtime.writer import (FORMATS, HEADER_NAME, NPZ_CHUNK, FileNames, IndexSet, OnDisk, atomic_file,
                                   relpath_for, write_bytes_atomic, write_error)

# generate.json's "header_version"; files without one (gancli <= 0.2) are version 0. Version 2 adds
# truncation_psi, which an older gancli would ignore, and so resume a truncated set without truncation.
HEADER_VERSION = 2
MAX_LINE = 1 << 16  # longer than any line gancli writes (a class name is a folder name: <= 255 bytes)
# the lines gancli itself writes, parsed without json (a 10**9-line manifest is read at every resume);
# anything else is parsed as JSON and checked
_FAST_LINE = re.compile(rb'^\{"index": (\d+), "seed": (\d+), "file": "([^"\\]+)"(?:, "item": \d+)?'
                        rb'(?:, "label": (\d+), "class": "(?:[^"\\]|\\.)*")?\}$')


# ---- generate.json --------------------------------------------------------------------------------

HEADER_TYPES = {"model_sha256": str, "seed": int, "format": str, "layout": str, "classes": (list, type(None)),
                "labels": (list, type(None)), "header_version": int, "truncation_psi": (int, float)}
HEADER_REQUIRED = ("model_sha256", "seed", "format")


def read_header(out_dir: Path, name: str = HEADER_NAME) -> dict | None:
    """generate.json of `out_dir` (or a shard's own copy of it, `name`) as a dict, None when there is none; a
    damaged, foreign or newer file is one GenerateError naming it and the way out."""
    path = out_dir / name
    fix = (f"restore it, or delete it (gancli writes it again and makes the images in {out_dir} again: without "
           f"it, none is known to be gancli's), or choose another --out")
    try:
        raw = files.read_regular(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise GenerateError(f"cannot read {path} ({e.strerror or e}); {fix}") from e
    try:
        header = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        what = "empty" if not raw.strip() else f"not JSON ({e})"
        raise GenerateError(f"{path} is {what}: it is not a gancli generate.json, or was cut off; {fix}") from e
    if not isinstance(header, dict):
        raise GenerateError(f"{path} is not a gancli generate.json (a JSON {type(header).__name__}, not an object); {fix}")
    version = header.get("header_version", 0)
    if isinstance(version, int) and version > HEADER_VERSION:
        raise GenerateError(f"{path} was written by a newer gancli (header version {version}; this one reads up to "
                            f"{HEADER_VERSION}); upgrade gancli, or choose another --out")
    for key in HEADER_REQUIRED:
        if key not in header:
            raise GenerateError(f"{path} is not a gancli generate.json (it has no {key!r}); {fix}")
    for key, kind in HEADER_TYPES.items():
        value = header.get(key)
        if key in header and (not isinstance(value, kind) or isinstance(value, bool)):
            raise GenerateError(f"{path}: {key!r} is {value!r}, not what gancli writes there; {fix}")
    if header["format"] not in FORMATS:
        raise GenerateError(f"{path}: format {header['format']!r} is not one gancli writes; {fix}")
    labels = header.get("labels")
    if labels is not None and (not labels or not all(isinstance(x, int) and not isinstance(x, bool) for x in labels)):
        raise GenerateError(f"{path}: 'labels' is {labels!r}, not a list of class indices; {fix}")
    return header


# ---- manifest lines ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    index: int
    seed: int
    file: str
    label: int | None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_line(raw: bytes) -> Entry | None:
    """One manifest line (without its newline) -> Entry; None when it is not a gancli manifest line."""
    if match := _FAST_LINE.match(raw):
        try:
            file = match.group(3).decode()
        except UnicodeDecodeError:
            return None
        return Entry(int(match.group(1)), int(match.group(2)), file, int(match.group(4)) if match.group(4) else None)
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    index, seed, file, label = data.get("index"), data.get("seed"), data.get("file"), data.get("label")
    if not (_is_int(index) and index >= 0 and _is_int(seed) and isinstance(file, str) and file
            and (label is None or _is_int(label))):
        return None
    return Entry(index, seed, file, label)


def read_entries(path: Path, fix: str) -> Iterator[tuple[int, int, bytes, Entry]]:
    """(byte offset, line number, raw line without newline, entry) of each manifest line, streaming.

    Blank lines and a cut-off last line (no newline: a killed writer) are skipped; any other line that is
    not a manifest line raises one GenerateError naming the file, the line and `fix`. Nothing if missing."""
    try:
        f = open(files.open_regular(path, os.O_RDONLY), "rb")
    except FileNotFoundError:
        return
    except OSError as e:
        raise GenerateError(f"cannot read {path} ({e.strerror or e}); {fix}") from e
    with f:
        offset, number = 0, 0
        while True:
            try:
                raw = f.readline(MAX_LINE)
            except OSError as e:
                raise GenerateError(f"cannot read {path} ({e.strerror or e}); {fix}") from e
            if not raw:
                return
            number += 1
            whole = raw.endswith(b"\n")
            line = raw[:-1] if whole else raw
            if line.strip(b" \t\r\0"):
                entry = parse_line(line)
                if entry is None:
                    if not whole and len(raw) < MAX_LINE:
                        return  # the last line, cut off
                    binary = " (binary data)" if b"\0" in line else ""
                    raise GenerateError(f"{path} line {number} is not a gancli manifest line{binary}; {fix}")
                yield offset, number, line, entry
            offset += len(raw)


# ---- the manifest of one run's range ------------------------------------------------------------------

class Manifest:
    """The manifest of images [start, stop) of one folder (see the module docstring)."""

    def __init__(self, path: Path, seed: int, fmt: str, start: int, stop: int, names: FileNames | None = None):
        self.path = path
        self.seed = seed
        self.fmt = fmt
        self.start, self.stop = start, stop
        self.names = names or FileNames(fmt)
        classes = self.names.classes
        # what ends the line of an image of each label
        self._tails = [f', "label": {label}, "class": {json.dumps(name)}}}\n'
                       for label, name in enumerate(classes.names)] if classes else []
        self._fd: int | None = None
        self._size = 0
        self._reserve = 0
        self._reserved_to = 0

    def lines(self, indices) -> str:  # noqa: ANN001 (an int array or list)
        """The JSON lines of some images, formatted directly: json.dumps per line cost 3 µs, 4x this,
        and the parent process writes up to 100k lines a second for the MLP."""
        indices = np.asarray(indices, dtype=np.int64).tolist()
        seed, fmt = self.seed, self.fmt
        if self.names.classes is not None:
            return self._labelled_lines(indices)
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

    def line_bytes(self) -> int:
        """The longest line this manifest may get (the largest index; every class name); 0 for an empty range
        (a shard with no image)."""
        if self.stop <= self.start:
            return 0
        last = np.arange(max(self.start, self.stop - max(1, len(self._tails))), self.stop)
        return max(len(line) for line in self.lines(last).encode().splitlines(keepends=True))

    def listed(self) -> IndexSet:
        """The indices of [start, stop) this manifest lists with this run's seed: the folder's own record of
        which images gancli made there. A file on disk that it does not list (copied in, left by another
        program, or finished just before a SIGKILL) is not adopted: it is made again."""
        listed = IndexSet()
        folder = self.path.parent
        fix = f"move it away or delete it: gancli generate writes it again, making the images in {folder} again"
        for _offset, _number, _raw, entry in read_entries(self.path, fix):
            if self.start <= entry.index < self.stop and entry.seed == self.seed:
                listed.add_one(entry.index)
        return listed

    def rebuild(self, on_disk: OnDisk, check_stop: Callable[[], None] = lambda: None, keep_outside: bool = True) -> int:
        """Rewrite the manifest to list exactly the images of [start, stop) on disk (and listed, see `listed`), in
        index order, plus (keep_outside) earlier lines outside the range whose file is still there; returns how
        many of the range are there."""
        outside = IndexSet()  # outside lines seen: each kept once
        folder = self.path.parent
        fix = (f"move it away or delete it: gancli generate writes it again, making the images in {folder} again")
        count = 0
        with atomic_file(self.path) as dst:
            for _offset, _number, raw, entry in read_entries(self.path, fix):
                if not keep_outside or self.start <= entry.index < self.stop or not outside.add_one(entry.index):
                    continue
                if (folder / entry.file).is_file():
                    dst.write(raw + b"\n")
            for lo, have in on_disk.blocks():
                check_stop()
                found = np.flatnonzero(have)
                if len(found):
                    dst.write(self.lines(found + lo).encode())
                    count += len(found)
        return count

    def open(self, reserve: int = 0) -> None:
        """Start appending, with `reserve` bytes kept allocated beyond the end (see the module docstring), at most
        what the lines of the whole range can take: whatever a caller's batch size makes of it, a run never holds
        more of the disk than its images can need (--batch-size 1000000000 had taken the whole free disk)."""
        try:
            self._fd = files.open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            self._size = os.fstat(self._fd).st_size
        except OSError as e:
            raise write_error(self.path, e) from e
        self._reserve = min(reserve, (self.stop - self.start) * self.line_bytes())
        self._reserved_to = self._size
        self._top_up()

    def _top_up(self) -> None:
        if self._reserve and self._reserved_to - self._size < self._reserve // 2:
            if files.reserve_space(self._fd, self._size, self._reserve):
                self._reserved_to = self._size + self._reserve

    def append(self, indices) -> None:  # noqa: ANN001 (an int array or list)
        """List some finished images; each index must be listed once (the caller's tasks are disjoint)."""
        if len(indices) == 0:
            return
        data = memoryview(self.lines(indices).encode())
        if self._fd is None:
            self.open()
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except BaseException as e:  # a full disk halfway, or a second Ctrl-C: no cut-off line is left
            if written:
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass
            if isinstance(e, OSError):
                raise write_error(self.path, e) from e
            raise
        self._size += len(data)
        self._top_up()

    def close(self) -> None:
        if self._fd is not None:
            if self._reserved_to > self._size:
                files.release_space(self._fd, self._size)
            os.close(self._fd)
            self._fd = None


def shard_header_name(k: int, m: int) -> str:
    """A shard's own record of how its images were made (generate.json's content): shards copied together into
    one folder overwrite each other's generate.json, so `gancli merge` compares these."""
    return f"generate-{k}-of-{m}.json"


def check_header(out_dir: Path, header: dict, describe_selection: Callable[[list[str] | None], str],
                 name: str = HEADER_NAME) -> bool:
    """Refuse to mix sets: the folder's images must come from the same model file, seed, format, truncation,
    file layout and class selection as `header`. Writes nothing; False when the folder has no such record
    (a fresh folder, or one whose files gancli did not make: none of them is adopted)."""
    old = read_header(out_dir, name)
    if old is None:
        return False
    for problem in header_differences(old, header, describe_selection):
        raise GenerateError(f"{out_dir} holds images {problem}")
    return True


def header_differences(old: dict, header: dict, describe_selection: Callable[[list[str] | None], str]) -> list[str]:
    """How the set recorded in `old` differs from `header`'s, each as "X, not Y; what to do"."""
    problems = []
    for key in ("model_sha256", "seed", "format"):
        if old.get(key) != header.get(key):
            problems.append(f"made with another {key.replace('_', ' ')} ({old.get(key)} vs {header.get(key)}); "
                            f"use another --out, or the same settings to resume")
    old_psi, psi = old.get("truncation_psi", NO_TRUNCATION), header.get("truncation_psi", NO_TRUNCATION)
    if old_psi != psi:
        problems.append(f"made with --truncation {old_psi:g}, not {psi:g}; use another --out, or --truncation "
                        f"{old_psi:g} to resume")
    old_layout, layout = old.get("layout", "flat"), header.get("layout", "flat")
    if old_layout != layout:
        problems.append(f"in the {old_layout} layout, not {layout}; use another --out, or --layout {old_layout} "
                        f"to resume")
    if old.get("classes") != header.get("classes"):
        was, now = describe_selection(old.get("classes")), describe_selection(header.get("classes"))
        problems.append(f"of {was}, not {now}; use another --out, or the same --class to resume")
    return problems


def write_header(out_dir: Path, header: dict, name: str = HEADER_NAME) -> None:
    if read_header(out_dir, name) is None:
        write_bytes_atomic(out_dir / name, json.dumps(header, indent=2).encode())
