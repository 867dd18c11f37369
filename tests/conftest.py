"""Shared fixtures: the real data sets beside the checkout, and markers for GPU-only tests."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real MNIST and cat faces, laid out as a gancli data root (read only: never write here)."""
    if not (SHARED_DATASETS / "mnist").is_dir() or not (SHARED_DATASETS / "cats").is_dir():
        pytest.fail(f"real data sets not found at {SHARED_DATASETS}; the tests need ../shared/datasets beside the checkout")
    return SHARED_DATASETS


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
