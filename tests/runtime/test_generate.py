"""gancli generate under faults (runtime/generate.py, runtime/faults.py): stop signals and kills of the parent
and of one worker, a whole process group signalled, a full disk, a read-only folder, two runs at once, and
counts too large for memory or for the file names; each on tiny models, the CLI in a real subprocess.

After every stop the parent survives, the manifest lists exactly the complete images on disk, no temp file
is left and no worker is left running; a rerun makes exactly the missing images.
"""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gancli import cli
from gancli.runtime import files
from gancli.runtime.errors import GenerateError, GenerateStopped
from gancli.runtime.generate import generate
from gancli.runtime.metadata import OUTPUT_FLOAT_NCHW

REPO_ROOT = Path(__file__).resolve().parents[1]
N = 10_000  # a run of the tiny DCGAN at batch 8 lasts over a second: long enough to be stopped halfway
MB = 1 << 20


@pytest.fixture(scope="module")
def dcgan(tmp_path_factory, export_untrained) -> Path:
    return export_untrained(tmp_path_factory.mktemp("model") / "dcgan-uint8.onnx", "dcgan", 8, 3, 32, 4)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory, export_untrained) -> Path:
    return export_untrained(tmp_path_factory.mktemp("model") / "mlp.onnx", "mlp", 8, 1, 28, 4,
                            output_kind=OUTPUT_FLOAT_NCHW)


# ---- helpers ---------------------------------------------------------------------------------------

def command(n: int, out: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gancli.cli", "generate", "-n", str(n), "--out", str(out), "--model", str(model),
            "--device", "cpu", *extra]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=REPO_ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=timeout)


def wait_for_files(out: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until `count` images are in OUT/00000 (the process must still be making them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if sum(1 for entry in os.scandir(out / "00000") if entry.name.endswith(".png")) >= count:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    pytest.fail(f"no {count} images in {out} after {timeout} s")


def children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie nobody reaped yet (a container's PID 1 may not)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def wait_gone(pids: list[int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(pid) for pid in pids), f"processes still running: {[p for p in pids if not gone(p)]}"


def peak_rss(pid: int) -> int:
    """Bytes: the process's peak resident set (VmHWM)."""
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) * 1024


def on_disk(out: Path) -> set[int]:
    return {int(p.stem) for p in out.glob("*/*.png")}


def listed(out: Path, name: str = "manifest.jsonl") -> list[int]:
    return [int(line.split(",", 1)[0].split(":")[1]) for line in (out / name).read_text().splitlines()]


def temps(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if ".tmp-" in p.name]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_listed_exactly_what_is_on_disk(out: Path) -> set[int]:
    files = on_disk(out)
    entries = listed(out)
    assert len(entries) == len(set(entries)), "an image is listed twice"
    assert set(entries) == files
    assert not temps(out)
    return files


def assert_rerun_completes(args: list[str], out: Path, n: int) -> None:
    again = run(args)
    assert again.returncode == 0, again.stderr
    assert on_disk(out) == set(range(n)) and sorted(listed(out)) == list(range(n)) and not temps(out)


# ---- the parent stopped or killed --------------------------------------------------------------------

def test_sigterm_stops_a_billion_image_run_cleanly_in_flat_memory(tmp_path, mlp):
    """A 10**9-image request starts making images at once with flat memory (nothing is sized by N); SIGTERM,
    as Slurm and Kubernetes send it, stops it with one line, every finished image listed, no worker left."""
    out = tmp_path / "out"
    started = time.monotonic()
    process = start(command(10 ** 9, out, mlp, "--batch-size", "64"))
    try:
        wait_for_files(out, 300, process)
        assert time.monotonic() - started < 60
        workers = children(process.pid)
        assert len(workers) == 2  # the processes layout: one worker per core
        peaks = [peak_rss(pid) for pid in [process.pid, *workers]]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert error_lines(stderr)[-1].startswith("error: stopped by SIGTERM: every finished image is kept and listed in ")
    assert len([line for line in error_lines(stderr) if line.startswith("error:")]) == 1
    wait_gone(workers)
    assert len(assert_listed_exactly_what_is_on_disk(out)) >= 300
    # the old code held two bools per image (2 GB for 10**9) and its numpy grew with N; now ~100-150 MB each
    assert max(peaks) < 400 * MB, [p // MB for p in peaks]


def test_sigterm_to_the_whole_process_group_lists_what_the_dying_workers_finished(tmp_path, dcgan):
    """Slurm's scancel signals every process of the job: the workers die at once (mid-file), the parent
    stops and lists every image they completed; a rerun completes the set."""
    out = tmp_path / "out"
    args = command(N, out, dcgan, "--batch-size", "8")
    process = start(args)
    try:
        wait_for_files(out, 100, process)
        workers = children(process.pid)
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1 and "Traceback" not in stderr, stderr
    assert error_lines(stderr)[-1].startswith("error: stopped by SIGTERM")
    wait_gone(workers)
    assert len(assert_listed_exactly_what_is_on_disk(out)) < N
    assert_rerun_completes(args, out, N)


def test_sigkill_of_the_parent_takes_its_workers_with_it(tmp_path, dcgan):
    """Nothing can run in a SIGKILLed parent: the workers die of it too (parent-death signal), and the next
    run lists the images the manifest had not caught up with and makes the rest."""
    out = tmp_path / "out"
    args = command(N, out, dcgan, "--batch-size", "8")
    process = start(args)
    try:
        wait_for_files(out, 100, process)
        workers = children(process.pid)
        assert len(workers) == 2
        process.kill()
        process.wait(timeout=30)
        wait_gone(workers, timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert set(listed(out)) <= on_disk(out)  # behind by at most the batches in flight, never ahead
    assert_rerun_completes(args, out, N)


# ---- one worker killed -------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_worker_stops_the_run_with_one_line_and_a_rerun_completes_the_set(tmp_path, dcgan, signum):
    out = tmp_path / "out"
    args = command(N, out, dcgan, "--batch-size", "8")
    process = start(args)
    try:
        wait_for_files(out, 100, process)
        workers = children(process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1 and "Traceback" not in stderr, stderr
    (line,) = [line for line in error_lines(stderr) if line.startswith("error:")]
    assert line.startswith(f"error: worker process {workers[0]} was killed by {signal.Signals(signum).name}")
    assert "every finished image is kept and listed in" in line and "run the same command again" in line
    wait_gone(workers)
    assert len(assert_listed_exactly_what_is_on_disk(out)) < N
    assert_rerun_completes(args, out, N)


# ---- the Python API ----------------------------------------------------------------------------------

@pytest.fixture
def default_sigterm():
    """SIGTERM at its default for the test, whatever handler the process running the suite has."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("layout", ["inline", "processes", "threads"])  # threads: the CUDA layout, here on the CPU
def test_api_sigterm_stops_cleanly_and_puts_the_handlers_back(tmp_path, dcgan, layout, default_sigterm):
    sigint_before = signal.getsignal(signal.SIGINT)  # Python's handler, or SIG_IGN in a background job

    def terminate_after(batches: int):
        def on_progress(made: int, total: int) -> None:
            on_progress.calls += 1
            if on_progress.calls == batches + 1:
                os.kill(os.getpid(), signal.SIGTERM)
        on_progress.calls = 0
        return on_progress

    out = tmp_path / "out"
    with pytest.raises(GenerateStopped, match="^stopped by SIGTERM: every finished image is kept") as stopped:
        generate(2_000, out, dcgan, batch_size=4, device="cpu", layout=layout, workers=2,
                 on_progress=terminate_after(3))
    assert stopped.value.exit_code == 128 + signal.SIGTERM and "\n" not in str(stopped.value)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is sigint_before
    assert 12 <= len(assert_listed_exactly_what_is_on_disk(out)) < 2_000
    # a SIGTERM handler of the caller's own is left in place, and gets the signal
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        result = generate(2_000, out, dcgan, batch_size=4, device="cpu", layout=layout, workers=2,
                          on_progress=terminate_after(1))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM] and result.already + result.made == 2_000
    assert sorted(listed(out)) == list(range(2_000))


# ---- disk, folder and count ----------------------------------------------------------------------------

def test_disk_full_keeps_and_lists_every_complete_image(small_tmpfs, fill_disk, dcgan):
    """A real full disk (a 4 MB tmpfs filled to 200 KB free) under the processes layout: one line, exit 1,
    every complete image kept and listed (space for the manifest's lines is reserved), no partial file;
    a rerun after freeing space completes the set."""
    out, n = small_tmpfs / "out", 600
    filler = fill_disk(small_tmpfs, 200)
    args = command(n, out, dcgan)
    full = run(args)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    (line,) = error_lines(full.stderr)
    assert re.match(r"error: disk full while writing .*\.png; free some space and run the same command again", line)
    assert 0 < len(assert_listed_exactly_what_is_on_disk(out)) < n
    filler.unlink()
    assert_rerun_completes(args, out, n)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write, root included: a tmpfs remounted read-only (as root), else chmod 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        yield folder, lambda: folder.chmod(0o555)
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder, lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_read_only_out_folder_is_one_line(read_only_folder, dcgan):
    folder, make_read_only = read_only_folder
    out = folder / "out"
    assert run(command(20, out, dcgan)).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    make_read_only()
    for target in (out, folder / "new"):  # resuming into it, and a new folder inside it
        result = run(command(40, target, dcgan))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        (line,) = error_lines(result.stderr)
        assert re.match(rf"error: (--out folder {target} is not writable|cannot create --out folder {target})", line)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", ["manifest.jsonl", "generate.json", ".manifest.jsonl.lock", "00000/000000002.png"])
def test_a_fifo_in_the_out_folder_is_one_line_not_a_hang(tmp_path, mlp, name):
    """A FIFO where generate reads or appends (its manifest, generate.json, its lock, an image it checks) made it
    wait for a writer forever, deaf to SIGTERM: now it is one line, at once, and the folder is left as it was."""
    out = tmp_path / "out"
    assert run(command(4, out, mlp)).returncode == 0
    (out / name).unlink()
    os.mkfifo(out / name)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = run(command(4, out, mlp), timeout=60)  # the old code never returned
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    (line,) = error_lines(result.stderr)
    assert line == (f"error: {out / name} is a FIFO, not a regular file, and gancli reads and writes only regular "
                    f"files there; remove it, or choose another folder")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before and stat.S_ISFIFO(os.lstat(out / name).st_mode)


def test_two_runs_into_one_manifest_the_second_refuses_naming_the_first(tmp_path, mlp):
    """One writer per manifest (an flock in OUT): a second `gancli generate` of the same folder and shard is
    refused with one line naming the first process; other shards of the folder still run side by side."""
    out = tmp_path / "out"
    first = start(command(10 ** 9, out, mlp, "--batch-size", "64"))
    try:
        wait_for_files(out, 100, first)
        second = run(command(10 ** 9, out, mlp))
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
        (line,) = error_lines(second.stderr)
        assert line == (f"error: another gancli generate (pid {first.pid}) is writing {out / 'manifest.jsonl'} right "
                        f"now; wait for it to finish (or stop it), then run again")
        other_shard = run(command(200, out, mlp, "--shard", "1/2"))  # its own manifest: not locked out
        assert other_shard.returncode == 0, other_shard.stderr
        assert (out / "manifest-1-of-2.jsonl").is_file()
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 1
    assert run(command(50, out, mlp)).returncode == 0  # the lock went with the process


def test_a_count_beyond_the_file_names_or_memory_is_one_line(tmp_path, dcgan):
    result = CliRunner().invoke(cli.app, ["generate", "-n", "99999999999", "--out", str(tmp_path / "o"), "--model",
                                          str(dcgan), "--device", "cpu"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: -n 99,999,999,999 is more images than one folder can name (at most "
                                     "1,000,000,000: indices have 9 digits); make several sets of at most "
                                     "1,000,000,000 with different --seed, each in its own --out folder")
    assert not (tmp_path / "o").exists()
    import gancli
    from gancli.runtime.errors import GenerateError

    with pytest.raises(GenerateError, match=r"^999,999,999 images of 32x32x3 need 2,861.0 GiB in memory; ask for "
                                            r"fewer, or write them to files with gancli.generate$"):
        gancli.generate_array(dcgan, 999_999_999, device="cpu")


# ---- sizes bounded by the work -----------------------------------------------------------------------

@pytest.fixture
def reservations(monkeypatch) -> list[int]:
    """The lengths the manifest asks the disk to keep for it, recorded and not allocated: an unbounded ask (as
    `--batch-size 1000000000` made) would take this machine's whole free disk."""
    asked: list[int] = []

    def record(fd: int, offset: int, length: int) -> bool:
        asked.append(length)
        return False

    monkeypatch.setattr(files, "reserve_space", record)
    return asked


def test_batch_size_workers_and_reservation_are_bounded_by_the_images_asked_for(tmp_path, mlp, reservations):
    out = tmp_path / "out"
    result = generate(10, out, mlp, batch_size=5_000, workers=64, layout="threads", device="cpu")
    assert (result.made, result.batch_size, result.workers) == (10, 10, 1)
    longest_line = max(len(line) + 1 for line in (out / "manifest.jsonl").read_text().splitlines())
    assert reservations and max(reservations) <= 10 * longest_line


def test_an_absurd_batch_size_or_worker_count_is_one_line_before_any_work(tmp_path, mlp, reservations):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.app, ["generate", "-n", "10", "--out", str(out), "--model", str(mlp), "--device",
                                          "cpu", "--batch-size", "1000000000"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: --batch-size 1,000,000,000") and result.output.count("\n") == 1
    with pytest.raises(GenerateError, match=r"^workers=1,000,000 "):
        generate(10, out, mlp, workers=10 ** 6, device="cpu")
    assert not out.exists() and reservations == []
