"""Atomic file writes and file hashes: the one home of both for the whole package.

Torch-free, so that gan/ and export/ may import it as well as runtime/ (runtime must never import gan);
failures are plain OSError, but for the one refusal every writer shares: a write replaces only a regular
file (`regular_target`), so a device node, FIFO, socket or folder at the path is NotARegularFile, one line
before anything is written, and a symlink is followed to the file it names (the link stays). A reader
sees the old file or the new one, never half of one: the bytes go to a temp file in the target's folder
(so the rename stays on one file system, atomic on POSIX) that is then renamed, or, where the file system
allows it, into an unnamed O_TMPFILE that is linked under its name (a link never replaces anything).

Temp names are `.STEM.tmp-PID.SUFFIX`: dot-prefixed, per process, and with the target's suffix so
writers that pick a format by extension (PIL, matplotlib, save_image) still work.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gancli.runtime.errors import NotARegularFile

FILE_MODE = 0o644  # files are meant to be shared (safetensors alone would make them 0600)
TEMP_MARK = ".tmp-"


def temp_path(path: str | os.PathLike, pid: int | None = None) -> str:
    """The temp name beside `path`: `.STEM.tmp-PID.SUFFIX` (PID: this process's, or `pid`'s).

    Plain strings, not pathlib: this is on the per-image path, where pathlib cost ~15 µs a file.
    """
    folder, name = os.path.split(os.fspath(path))
    stem, suffix = os.path.splitext(name)
    return os.path.join(folder, f".{stem}{TEMP_MARK}{os.getpid() if pid is None else pid}{suffix}")


# `.STEM.tmp-PID.SUFFIX` (temp_path), `.NAME.tmp-PID` (earlier versions' temp files) and `.NAME.tmp-PID-XXXX`
# (export's staging folders, from tempfile.mkdtemp)
_TEMP_NAME = re.compile(r"^\.(.+)\.tmp-(\d+)(\.[^.]+|-[^.]+)?$")


def temp_target(name: str) -> tuple[str, int] | None:
    """(the name a temp file or staging folder was for, the pid of the process that made it), or None when
    `name` is not a temp name."""
    match = _TEMP_NAME.match(name)
    if match is None:
        return None
    suffix = match.group(3) or ""
    return match.group(1) + (suffix if suffix.startswith(".") else ""), int(match.group(2))


def remove_quietly(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# what a path may hold besides a regular file, as the refusal names it
_NOT_REGULAR = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
                stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a link that leads round in a loop"}


def regular_target(path: str | os.PathLike, option: str = "") -> str:
    """The file a write to `path` replaces: `path` itself, or the file a symlink there names (so the link stays
    a link). Anything there but a regular file is NotARegularFile, one line (naming `option`, the flag that
    gave the path, where a command checks it before any work), before anything is written: a rename replaces
    whatever holds the name, and as root `eval --out /dev/full` turned the device into a JSON file. One lstat
    where no link is in the way, so the per-image fallback (write_bytes_renamed) stays cheap."""
    target = os.fspath(path)
    try:
        mode = os.lstat(target).st_mode
        if stat.S_ISLNK(mode):
            target = os.path.realpath(target)
            mode = os.lstat(target).st_mode
    except FileNotFoundError:  # nothing there yet (or a link to nothing yet): the file is made
        return target
    if not stat.S_ISREG(mode):
        shown = f"{option} {os.fspath(path)}".lstrip()
        shown += "" if target == os.fspath(path) else f" (a link to {target})"
        raise NotARegularFile(f"{shown} is {what_it_is(mode)}, not a regular file, and gancli writes only regular "
                              f"files; name a regular file (or a new one) instead")
    return target


def what_it_is(mode: int) -> str:
    return _NOT_REGULAR.get(stat.S_IFMT(mode), "not a file")


def open_regular(path: str | os.PathLike, flags: int, mode: int = FILE_MODE) -> int:
    """os.open of a file gancli reads, or appends to in place (a manifest, generate.json, a lock file, a model),
    that never waits on what is not a regular file: a FIFO there waited for a writer forever, deaf to SIGTERM
    (the open is retried after each signal handler), and a device would be read or written as data. Anything but
    a regular file is NotARegularFile, one line; a missing file is FileNotFoundError, other failures OSError."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno not in (errno.ENXIO, errno.EISDIR):  # a FIFO no one reads, opened to write; a folder
            raise
        fd = None
    held = os.fstat(fd).st_mode if fd is not None else os.stat(path).st_mode
    if not stat.S_ISREG(held):
        if fd is not None:
            os.close(fd)
        raise NotARegularFile(f"{os.fspath(path)} is {what_it_is(held)}, not a regular file, and gancli reads and "
                              f"writes only regular files there; remove it, or choose another folder")
    os.set_blocking(fd, True)
    return fd


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of the regular file at `path` (open_regular)."""
    with open(open_regular(path, os.O_RDONLY), "rb") as f:
        return f.read()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside the file `path` names (regular_target: refused unless a regular file or
    nothing is there) for any writer to fill; on success make it mode 0644 and rename it over that file,
    on any failure (KeyboardInterrupt too) delete it."""
    target = regular_target(path)
    tmp = Path(temp_path(target))
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    finally:
        remove_quietly(tmp)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object on a temp name, renamed to `path` once closed without error."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


def write_bytes_atomic(path: str | os.PathLike, data: bytes | np.ndarray) -> None:
    """Write `data` so that `path` appears complete or not at all (the per-image fast path: no file object).

    Where the file system allows it, the bytes go into an unnamed O_TMPFILE in the target folder that
    is then linked under its name: one metadata operation instead of create + rename (1.2x less CPU
    per small PNG, see benchmarks/bench_file_writes.py), and a killed process leaves nothing behind.
    Elsewhere: temp name + rename.
    """
    if _anonymous_files.usable:
        folder, name = os.path.split(os.fspath(path))
        folder_fd = os.open(folder or ".", os.O_PATH | os.O_DIRECTORY)
        try:
            if _write_anonymous(folder_fd, name, data):
                return
        finally:
            os.close(folder_fd)
    write_bytes_renamed(path, data)


class _anonymous_files:
    # Linux with /proc; switched off for good on the first file system without O_TMPFILE
    usable = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


# What opening an O_TMPFILE fails with on a file system without it, and what linking it fails with
# where hard links are restricted.
_NO_TMPFILE_OPEN = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL}
_NO_TMPFILE_LINK = {errno.EXDEV, errno.EPERM}


def _not_supported(e: OSError, errnos: set[int]) -> bool:
    """True, with the O_TMPFILE way switched off for good, when `e` says the file system cannot do it."""
    if e.errno in errnos:
        _anonymous_files.usable = False
        return True
    return False


def _write_anonymous(folder_fd: int, name: str, data: bytes | np.ndarray) -> bool:
    """O_TMPFILE in the folder, filled, then linked as `name`. False: this way is not possible here."""
    try:
        fd = os.open(".", os.O_WRONLY | os.O_TMPFILE, FILE_MODE, dir_fd=folder_fd)
    except OSError as e:
        if _not_supported(e, _NO_TMPFILE_OPEN):
            return False
        raise
    try:
        _write_all(fd, memoryview(data).cast("B"))
        # a dir fd makes this linkat(..., AT_SYMLINK_FOLLOW); plain link() would try to hard-link the
        # /proc symlink itself and fail with EXDEV
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder_fd)
        return True
    except FileExistsError:
        return False  # an earlier copy of this file: replaced the portable way
    except OSError as e:
        if _not_supported(e, _NO_TMPFILE_LINK):
            return False
        raise
    finally:
        os.close(fd)


def write_bytes_renamed(path: str | os.PathLike, data: bytes | np.ndarray) -> None:
    """Write `data` to a temp name beside the file `path` names (regular_target), then rename it over that
    file (atomic on POSIX)."""
    path = regular_target(path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            _write_all(fd, memoryview(data).cast("B"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:  # OSError, and KeyboardInterrupt in the middle of a write
        remove_quietly(tmp)
        raise


# How a whole file of each format ends: PNG's IEND chunk (with its CRC), JPEG's end-of-image marker.
_IMAGE_ENDS = {"png": b"\x00\x00\x00\x00IEND\xaeB`\x82", "jpg": b"\xff\xd9"}


def whole_image(path: str | os.PathLike, fmt: str) -> bool:
    """Whether the image file at `path` ends as a whole file of `fmt` does (one short read): an empty or
    cut-off file, written by hand or another program (gancli's appear whole), is not an image."""
    end = _IMAGE_ENDS[fmt]
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError:
        return False
    try:  # on the fd, not a file object: this runs for every image a resumed run finds
        size = os.lseek(fd, 0, os.SEEK_END)
        return size >= 8 + len(end) and os.pread(fd, len(end), size - len(end)) == end
    except OSError:
        return False
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(open_regular(path, os.O_RDONLY), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's counts): a temp file of a live process is left alone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:  # not a pid at all
        return False
    return True


# ---- space kept back for appends: a full disk must not stop a file from recording what is done

_FALLOC_FL_KEEP_SIZE = 0x01


class _fallocate:
    """libc's fallocate(2) where there is one (Linux); `usable` turns off on the first file system without it."""
    function = None
    usable = False
    if sys.platform.startswith("linux"):
        try:
            function = ctypes.CDLL(None, use_errno=True).fallocate
            function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            function.restype = ctypes.c_int
            usable = True
        except (OSError, AttributeError):
            pass


def reserve_space(fd: int, offset: int, length: int) -> bool:
    """Allocate the file's blocks for [offset, offset + length) without changing its size (fallocate's
    KEEP_SIZE), so appends there cannot fail with ENOSPC. False where the disk is full already or the
    file system cannot (then appends simply take their chances)."""
    if not _fallocate.usable or length <= 0:
        return False
    if _fallocate.function(fd, _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    failed = ctypes.get_errno()
    # ENOSPC may come after part of the range was allocated, and ext4 keeps that part: given back now, it
    # cannot stay held by a file whose owner believes it reserved nothing
    release_space(fd, os.fstat(fd).st_size)
    if failed in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        _fallocate.usable = False
    return False


def release_space(fd: int, size: int) -> None:
    """Give back what reserve_space kept beyond the file's end: truncating a file to its own size frees the
    blocks past its end (ext4, xfs, tmpfs; punching a hole there is a no-op on ext4)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)
