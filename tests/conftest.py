"""Shared fixtures: the real data sets beside the checkout, tiny untrained ONNX generators, and markers for
GPU-only tests."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture
def terminal_sigint() -> Iterator[None]:
    """SIGINT as a terminal's process has it (Python's KeyboardInterrupt), also where the suite was started with
    SIGINT ignored (under nohup, as a background job of a non-interactive shell); the previous handler after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def sigint_at_default() -> Callable[[], None]:
    """A child's preexec_fn that plays a terminal's Ctrl-C: SIGINT at its default, not the ignored one a
    background job's child inherits (Python then installs no KeyboardInterrupt handler)."""
    return lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real MNIST and cat faces, laid out as a gancli data root (read only: never write here)."""
    if not (SHARED_DATASETS / "mnist").is_dir() or not (SHARED_DATASETS / "cats").is_dir():
        pytest.fail(f"real data sets not found at {SHARED_DATASETS}; the tests need ../shared/datasets beside the checkout")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def export_untrained() -> Callable[..., Path]:
    """export_untrained(path, arch, latent_dim, channels, img_size, width, *, dataset="test", class_names=None,
    output_kind="uint8_nhwc", depth=1): an untrained generator built from seed 0 (conditional when `class_names` is given),
    exported to ONNX at `path`; returns `path`. Torch is imported only when a test asks for one."""
    def export(path: Path, arch: str, latent_dim: int, channels: int, img_size: int, width: int, *,
               dataset: str = "test", class_names: list[str] | None = None, output_kind: str | None = None,
               depth: int = 1) -> Path:
        import torch

        from gancli.export.onnx import export_onnx
        from gancli.gan.artifact import GeneratorSpec
        from gancli.gan.networks import build_generator
        from gancli.runtime.metadata import OUTPUT_UINT8_NHWC

        torch.manual_seed(0)
        spec = GeneratorSpec(arch=arch, latent_dim=latent_dim, channels=channels, img_size=img_size, width=width,
                             dataset=dataset, epochs=0, seed=0, class_names=list(class_names or []), g_depth=depth)
        G = build_generator(arch, latent_dim, channels, img_size, width, num_classes=len(class_names or []), depth=depth)
        export_onnx(G.eval(), spec, path, output_kind=output_kind or OUTPUT_UINT8_NHWC)
        return path
    return export


@pytest.fixture
def small_tmpfs(tmp_path) -> Iterator[Path]:
    """A real 4 MB file system (tmpfs) to fill up, where this machine lets the tests mount one (as root);
    elsewhere the test is skipped, and the tests that simulate a full disk stand in for it."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                                 capture_output=True).returncode == 0
    except OSError:
        mounted = False
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated full-disk tests cover this")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def fill_disk() -> Callable[[Path, int], Path]:
    """fill_disk(folder, leave_kb): write a filler file that leaves `leave_kb` KB free on folder's file
    system; returns its path (delete it to free the space again)."""
    def fill(folder: Path, leave_kb: int) -> Path:
        stat = os.statvfs(folder)
        filler = folder / "filler"
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave_kb * 1024))
        return filler
    return fill


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True, scope="session")
def private_feature_cache(tmp_path_factory):
    """Feature statistics the tests compute go to a folder of the test session, not the user's cache."""
    import os

    old = os.environ.get("GANCLI_CACHE_DIR")
    os.environ["GANCLI_CACHE_DIR"] = str(tmp_path_factory.mktemp("gancli-cache"))
    yield
    if old is None:
        os.environ.pop("GANCLI_CACHE_DIR", None)
    else:
        os.environ["GANCLI_CACHE_DIR"] = old
