"""runtime/files.py, the one home of gancli's file writes: every writer replaces only a regular file. A device
node, FIFO or socket at the path is refused with one line before anything is written (as root, `eval --out
/dev/full` had turned the device into a JSON file), and a symlink is followed to the file it names, which is
replaced while the link stays. Space kept back for appends is given back when the ask fails halfway."""
from __future__ import annotations

import builtins
import ctypes
import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from gancli import GancliError
from gancli.runtime import files


def write_text(path: Path) -> None:
    files.write_text_atomic(path, "new")


def write_file(path: Path) -> None:
    with files.atomic_file(path) as f:
        f.write(b"new")


def write_bytes(path: Path) -> None:
    files.write_bytes_atomic(path, b"new")


def write_renamed(path: Path) -> None:
    files.write_bytes_renamed(path, b"new")


WRITERS = [write_text, write_file, write_bytes, write_renamed]


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the socket file stays after the socket is closed


def make_char_device(path: Path) -> None:
    try:  # /dev/null's numbers, in the test's own folder: a node that may be replaced without harm
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root; the FIFO and the socket stand in for it")


@pytest.mark.parametrize("make", [make_fifo, make_socket, make_char_device])
@pytest.mark.parametrize("writer", WRITERS)
def test_a_device_fifo_or_socket_is_refused_and_left_as_it_was(tmp_path, writer, make):
    path = tmp_path / "out.json"
    make(path)
    kind = stat.S_IFMT(os.lstat(path).st_mode)
    with pytest.raises(GancliError) as refused:
        writer(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and "not a regular file" in message
    assert stat.S_IFMT(os.lstat(path).st_mode) == kind
    assert os.listdir(tmp_path) == ["out.json"]  # no temp file


@pytest.mark.parametrize("target_exists", [True, False])
@pytest.mark.parametrize("writer", WRITERS)
def test_a_symlink_is_followed_and_stays_a_link(tmp_path, writer, target_exists):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.json"
    if target_exists:
        target.write_text("old")
    link = tmp_path / "out.json"
    link.symlink_to(target)
    writer(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new" and not target.is_symlink()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out.json", "out.json", "real"]  # no temp file


@pytest.fixture
def nothing_written_in_dev(monkeypatch):
    """Fails the test at the first call that would create, open for writing or replace a file in /dev: a link
    to /dev/null must be refused before any write, and /dev/null itself must never be touched."""
    def in_dev(path) -> bool:  # noqa: ANN001
        return isinstance(path, (str, os.PathLike)) and os.path.realpath(path).startswith("/dev/")

    def guard(module, name: str, writes_in_dev) -> None:  # noqa: ANN001
        real = getattr(module, name)

        def guarded(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if writes_in_dev(*args, **kwargs):
                pytest.fail(f"{name}{args} writes in /dev")
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, guarded)

    guard(os, "replace", lambda src, dst, **k: in_dev(dst))
    guard(os, "rename", lambda src, dst, **k: in_dev(dst))
    guard(os, "link", lambda src, dst, **k: "dst_dir_fd" not in k and in_dev(dst))
    guard(os, "open", lambda path, flags, *a, **k: bool(flags & os.O_CREAT) and "dir_fd" not in k and in_dev(path))
    guard(builtins, "open", lambda file, mode="r", *a, **k: any(c in mode for c in "wax+") and in_dev(file))


@pytest.mark.parametrize("writer", WRITERS)
def test_a_link_to_a_device_is_refused_before_any_write(tmp_path, writer, nothing_written_in_dev):
    link = tmp_path / "eval.json"
    link.symlink_to("/dev/null")
    with pytest.raises(GancliError, match=r"eval\.json.*character device.*not a regular file"):
        writer(link)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and link.is_symlink()
    assert os.listdir(tmp_path) == ["eval.json"]


def test_a_reservation_that_fails_halfway_is_given_back(tmp_path, monkeypatch):
    """fallocate can fail with ENOSPC after allocating part of what was asked (ext4 keeps that part, and a
    manifest that believed it had reserved nothing held 57 GB after `disk full`): the part is given back."""
    if not files._fallocate.usable:
        pytest.skip("no fallocate here: nothing is ever reserved")
    real = files._fallocate.function

    def half_then_full(fd: int, mode: int, offset: int, length: int) -> int:
        real(fd, mode, offset, length // 2)
        ctypes.set_errno(errno.ENOSPC)
        return -1

    monkeypatch.setattr(files._fallocate, "function", half_then_full)
    with open(tmp_path / "manifest.jsonl", "wb") as f:
        assert not files.reserve_space(f.fileno(), 0, 8 << 20)
        assert os.fstat(f.fileno()).st_blocks == 0


@pytest.mark.parametrize("make", [make_fifo, make_socket, make_char_device, lambda path: path.mkdir()])
@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, os.O_RDWR | os.O_CREAT])
def test_a_file_read_or_appended_in_place_is_refused_at_once_unless_regular(tmp_path, make, flags):
    """A FIFO where gancli reads or appends (a manifest, generate.json, a lock) waited for a writer forever, deaf
    to SIGTERM: now anything but a regular file is one line, and nothing waits (the test would hang)."""
    path = tmp_path / "manifest.jsonl"
    make(path)
    kind = stat.S_IFMT(os.lstat(path).st_mode)
    with pytest.raises(GancliError, match=r"manifest\.jsonl is .*, not a regular file.*remove it, or choose another"):
        files.open_regular(path, flags)
    with pytest.raises(GancliError, match="not a regular file"):
        files.read_regular(path)
    assert stat.S_IFMT(os.lstat(path).st_mode) == kind and os.listdir(tmp_path) == ["manifest.jsonl"]


def test_a_regular_file_opens_as_asked_and_a_missing_one_is_made_or_missing(tmp_path):
    path = tmp_path / "manifest.jsonl"
    with pytest.raises(FileNotFoundError):
        files.open_regular(path, os.O_RDONLY)
    fd = files.open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        assert os.get_blocking(fd) and os.write(fd, b"line\n") == 5
    finally:
        os.close(fd)
    assert files.read_regular(path) == b"line\n" and stat.S_IMODE(os.stat(path).st_mode) == files.FILE_MODE
    link = tmp_path / "link"
    link.symlink_to("/dev/null")
    with pytest.raises(GancliError, match="a character device, not a regular file"):
        files.read_regular(link)
