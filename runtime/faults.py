"""What a long job does when it is stopped, killed or raced: stop signals, parent death, one writer per manifest.

- `StopSignals` (generate, serve and train): while the job runs in the main thread, SIGTERM (Slurm,
  Kubernetes), Ctrl-C (SIGINT) and, for training, SIGUSR1 (Slurm's warning) only ask it to stop; the job
  then stops where nothing is lost (generate: lists every finished image in the manifest and raises
  GenerateStopped for SIGTERM, KeyboardInterrupt for Ctrl-C; train: checkpoints the step). A second signal
  raises at once where the job allows it. The previous handlers come back when the job returns, and
  handlers someone else installed (or an ignored SIGINT, as in a background job) are left alone.
- `die_with_parent`: a worker process dies with its parent, whatever killed the parent (SIGKILL too):
  PR_SET_PDEATHSIG on Linux, else a thread that watches os.getppid().
- `FolderLock`: an exclusive flock on `.MANIFEST.lock` beside each manifest, so two runs that would write
  the same manifest cannot both run; shards of one folder (other manifests) still run side by side.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import sys
import threading
import time
from pathlib import Path

from gancli.runtime import files
from gancli.runtime.errors import GenerateError, GenerateStopped, NotARegularFile

_PR_SET_PDEATHSIG = 1
PARENT_POLL_SECONDS = 1.0


def _libc_prctl():  # noqa: ANN202 (a ctypes function, or None)
    """prctl(2), looked up here, in the parent: a dlopen in a child forked from a threaded process can
    deadlock on the loader's lock, so the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _libc_prctl()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """Records the first of `signals` instead of dying of it; see the module docstring.

    A second signal in `escalate` (default: any of `signals`) raises at once: KeyboardInterrupt for SIGINT,
    else GenerateStopped with `at_once` as the message; other later signals change nothing (torchrun forwards
    its own SIGTERM to every worker). A handler is installed only where the current one is the default
    (SIG_DFL, or Python's KeyboardInterrupt for SIGINT), and only in the main thread (elsewhere nothing
    changes)."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
                 escalate: tuple[int, ...] | None = None,
                 at_once: str = "stopped at once by a second signal; a file being written is not kept, every "
                                "other finished image is; run the same command again to resume") -> None:
        self.signum: int | None = None
        self.signals = signals
        self.escalate = signals if escalate is None else escalate
        self.at_once = at_once
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
                if signal.getsignal(signum) is default:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        elif signum in self.escalate:
            raise self.exception(self.at_once, signum)

    def __bool__(self) -> bool:
        return self.signum is not None

    def exception(self, message: str, signum: int | None = None) -> BaseException:
        signum = signum or self.signum or signal.SIGINT
        if signum == signal.SIGINT:
            return KeyboardInterrupt()
        return GenerateStopped(f"stopped by {signal_name(signum)}: {message}", signum)

    def check(self, message: str = "nothing was made; run the same command again to start") -> None:
        """Raise now if a stop was asked for."""
        if self.signum is not None:
            raise self.exception(message)


def die_with_parent(parent_pid: int) -> None:
    """In a worker process: end when the parent `parent_pid` ends, however it ends."""
    watched = _prctl is not None and _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    # the parent may have died before prctl took effect: then this process was re-parented already
    if os.getppid() != parent_pid:
        os._exit(1)
    if not watched:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="gancli-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def lock_path(manifest: Path) -> Path:
    return manifest.with_name(f".{manifest.name}.lock")


class FolderLock:
    """An exclusive, non-blocking flock on `.MANIFEST.lock` in the output folder while a run writes MANIFEST.

    The kernel drops it when the process ends (killed too), so there is nothing stale to clean up. Where
    the file system has no flock (some network file systems), runs go unguarded, as before."""

    def __init__(self, manifest: Path, what: str = "gancli generate"):
        self.manifest = manifest
        self.what = what
        self.path = lock_path(manifest)
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        self.created = not os.path.exists(self.path)  # by this run: a refused run removes it again
        try:
            fd = files.open_regular(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            from gancli.runtime.writer import write_error

            raise write_error(self.path, e) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd)
            os.close(fd)
            raise GenerateError(f"{holder} is writing {self.manifest} right now; wait for it to finish (or stop it), "
                                f"then run again") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
        self._fd = fd
        with contextlib.suppress(OSError):  # who holds it, for the message of a second run; best effort
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.what}\n".encode(), 0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock (forked workers that inherited it are gone by now)
            self._fd = None

    def remove_unused(self, created_dir: Path | None = None) -> None:
        """A refused run writes nothing: remove the lock file if this run made it (while holding it) and
        `created_dir`, the folder this run made, when nothing else is in it."""
        if self.created:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if created_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(created_dir)


def read_holder(fd: int) -> str:
    """'another gancli generate (pid 1234)', from what the holder wrote into the lock file."""
    with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
        pid, what = os.pread(fd, 200, 0).decode().strip().split(" ", 1)
        return f"another {what} (pid {int(pid)})"
    return "another gancli process"


def shard_busy(manifest: Path) -> str | None:
    """Who is writing `manifest` now (a running `gancli generate`), or None: a shared, non-blocking flock probe."""
    try:
        fd = files.open_regular(lock_path(manifest), os.O_RDONLY)
    except (OSError, NotARegularFile):  # no lock file, or none gancli made: no gancli process holds it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None
