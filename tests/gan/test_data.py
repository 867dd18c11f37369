"""gan.data on the real MNIST and cat faces: shapes, ranges, limits, seeded splits, unreadable files,
missing data offline, and the cat download's checksum, extraction and caching on local archives."""
from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from gancli.gan import data
from gancli.gan.training.config import resolve_config
from gancli.gan.data import ImageData, ensure_cats, load_images, load_mnist, resolve_data_root, to_model_range
from gancli.gan.errors import DataError


def cat_files(data_root: Path, n: int) -> list[Path]:
    return sorted((data_root / "cats" / "faces").glob("*.jpg"))[:n]


def image_set(images: torch.Tensor) -> list[bytes]:
    """The images as a sorted list of their bytes: compares contents regardless of order."""
    return sorted(image.numpy().tobytes() for image in images)


def load(dataset: str, data_root: Path, **overrides) -> ImageData:
    return load_images(resolve_config(dataset, data_root=str(data_root), **overrides), download=False)


# --- data root ---------------------------------------------------------------------------------

def test_data_root_prefers_explicit_then_env_then_xdg_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("GANCLI_DATA_ROOT", raising=False)
    monkeypatch.delenv("GANCLI_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root(None) == tmp_path / "xdg" / "gancli" / "data"
    monkeypatch.setenv("GANCLI_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root(str(tmp_path / "flag")) == tmp_path / "flag"


# --- MNIST -------------------------------------------------------------------------------------

def test_mnist_loads_the_real_splits(data_root):
    train = load_mnist(data_root, train=True, download=False)[0]
    test = load_mnist(data_root, train=False, download=False)[0]
    assert train.shape == (60_000, 1, 28, 28) and test.shape == (10_000, 1, 28, 28)
    assert train.dtype == torch.uint8
    # Real digits: black background, white strokes, so both ends of the range occur.
    assert int(train.min()) == 0 and int(train.max()) == 255
    assert train[:100].float().std() > 50


def test_to_model_range_maps_uint8_onto_minus_one_to_one(data_root):
    batch = load_mnist(data_root, download=False)[0][:64]
    x = to_model_range(batch)
    assert x.dtype == torch.float32 and x.shape == batch.shape
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert torch.equal(((x + 1) * 127.5).round().to(torch.uint8), batch)  # invertible: no level lost
    with pytest.raises(TypeError):
        to_model_range(x)


def test_mnist_limit_and_split_cover_the_first_images(data_root):
    d = load("mnist", data_root, limit=200, val_fraction=0.1, seed=3)
    assert d.train.shape == (180, 1, 28, 28) and d.val.shape == (20, 1, 28, 28)
    assert d.skipped == [] and "mnist" in d.source
    first = load_mnist(data_root, download=False)[0][:200]
    assert image_set(torch.cat([d.train, d.val])) == image_set(first)


def test_split_is_seeded(data_root):
    a = load("mnist", data_root, limit=300, val_fraction=0.1, seed=0)
    b = load("mnist", data_root, limit=300, val_fraction=0.1, seed=0)
    c = load("mnist", data_root, limit=300, val_fraction=0.1, seed=1)
    assert torch.equal(a.val, b.val) and torch.equal(a.train, b.train)
    assert image_set(a.val) != image_set(c.val)


def test_split_keeps_one_image_out_when_the_fraction_rounds_to_zero(data_root):
    assert load("mnist", data_root, limit=10, val_fraction=0.01).val.shape[0] == 1
    no_val = load("mnist", data_root, limit=10, val_fraction=0.0)
    assert no_val.train.shape[0] == 10 and no_val.val.shape == (0, 1, 28, 28)


def test_mnist_resized_to_rgb(data_root):
    d = load("mnist", data_root, limit=16, img_size=32, channels=3)
    assert d.train.shape[1:] == (3, 32, 32) and d.train.dtype == torch.uint8
    assert torch.equal(d.train[:, 0], d.train[:, 1]) and torch.equal(d.train[:, 1], d.train[:, 2])
    assert d.train.float().std() > 50


# --- cat faces and folders ---------------------------------------------------------------------

def test_cats_load_the_first_faces_with_their_exact_pixels(data_root):
    d = load("cats", data_root, limit=40, val_fraction=0.1)
    assert d.train.shape == (36, 3, 64, 64) and d.val.shape == (4, 3, 64, 64)
    assert d.skipped == [] and d.source == str(data_root / "cats")
    with_pil = [TF.pil_to_tensor(Image.open(path).convert("RGB")) for path in cat_files(data_root, 40)]
    assert image_set(torch.cat([d.train, d.val])) == image_set(torch.stack(with_pil))


def test_cats_resized_to_32_grey(data_root):
    d = load("cats", data_root, limit=20, img_size=32, channels=1)
    assert d.train.shape[1:] == (1, 32, 32) and d.val.shape[1:] == (1, 32, 32)
    assert d.train.float().std() > 10


def test_folder_skips_files_that_are_not_images(data_root, tmp_path):
    cats = cat_files(data_root, 6)
    (tmp_path / "tabby").mkdir()
    for i, path in enumerate(cats):  # class subfolder and flat files mixed, as users have them
        shutil.copy(path, tmp_path / ("tabby" if i % 2 else "") / path.name)
    corrupt = tmp_path / "tabby" / "truncated.jpg"
    corrupt.write_bytes(cats[0].read_bytes()[:300])
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # OS metadata: ignored, not reported

    d = load(str(tmp_path), data_root, val_fraction=0.2)
    assert d.train.shape == (5, 3, 64, 64) and d.val.shape == (1, 3, 64, 64)
    assert sorted(d.skipped) == sorted([str(corrupt), str(notes)])
    with_pil = [TF.pil_to_tensor(Image.open(path).convert("RGB")) for path in cats]
    assert image_set(torch.cat([d.train, d.val])) == image_set(torch.stack(with_pil))


def test_folder_without_usable_images_names_the_folder(data_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty)):
        load(str(empty), data_root)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(cat_files(data_root, 1)[0].read_bytes()[:100])
    (junk / "b.txt").write_text("hello")
    with pytest.raises(DataError, match="2 file"):
        load(str(junk), data_root)
    with pytest.raises(DataError, match="does not exist"):
        load(str(tmp_path / "missing"), data_root)


# --- missing data offline ----------------------------------------------------------------------

@pytest.mark.parametrize("dataset, folder_to_fill", [("mnist", "mnist/MNIST/raw"), ("cats", "cats/faces")])
def test_missing_data_offline_names_the_folder_to_fill(tmp_path, dataset, folder_to_fill):
    with pytest.raises(DataError) as info:
        load(dataset, tmp_path)
    message = str(info.value)
    assert str(tmp_path / folder_to_fill) in message and "GANCLI_DATA_ROOT" in message
    assert "\n" not in message


# --- cat download: checksum, extraction, cache (local archives, no network) --------------------

def make_archive(tmp_path: Path, name: str, images: list[Path]) -> tuple[str, str]:
    """A .tar.gz of real faces under one folder, as (file:// url, git blob id by `git hash-object`)."""
    archive = tmp_path / "upstream" / name
    archive.parent.mkdir(exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for i, path in enumerate(images):
            tar.add(path, arcname=f"faces/{i}.jpg")  # the same inner names in every part
    blob_id = subprocess.run(["git", "hash-object", str(archive)], check=True, capture_output=True,
                             text=True).stdout.strip()
    return archive.as_uri(), blob_id


def test_ensure_cats_installs_verified_archives_once(data_root, tmp_path, monkeypatch):
    faces = cat_files(data_root, 5)
    sources = (make_archive(tmp_path, "dataset-part1.tar.gz", faces[:3]),
               make_archive(tmp_path, "dataset-part2.tar.gz", faces[3:]))
    monkeypatch.setattr(data, "CATS_SOURCES", sources)
    root = tmp_path / "root"

    assert ensure_cats(root) == root / "cats"
    installed = sorted((root / "cats" / "faces").iterdir())
    assert len(installed) == 5  # equal inner names in both parts do not collide
    assert sorted(p.read_bytes() for p in installed) == sorted(p.read_bytes() for p in faces)
    assert [p.name for p in (root / "cats").iterdir()] == ["faces"]  # no staging folder left

    shutil.rmtree(tmp_path / "upstream")  # from now on any download attempt would fail
    assert ensure_cats(root) == root / "cats"
    shutil.rmtree(root / "cats")
    assert ensure_cats(root) == root / "cats"  # reinstalled from the verified archives in downloads/
    assert len(list((root / "cats" / "faces").iterdir())) == 5
    assert load("cats", root, val_fraction=0.2).train.shape == (4, 3, 64, 64)


def test_ensure_cats_rejects_a_wrong_checksum(data_root, tmp_path, monkeypatch):
    url, blob_id = make_archive(tmp_path, "dataset-part1.tar.gz", cat_files(data_root, 2))
    wrong = "0" * 40
    monkeypatch.setattr(data, "CATS_SOURCES", ((url, wrong),))
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        ensure_cats(root)
    assert all(s in str(info.value) for s in ("dataset-part1.tar.gz", wrong, blob_id))
    assert not (root / "cats" / "faces").exists()
    assert list((root / "downloads").iterdir()) == []  # the bad download was deleted


def test_ensure_cats_failed_download_names_the_folder_to_fill(tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere" / "dataset-part1.tar.gz").as_uri()
    monkeypatch.setattr(data, "CATS_SOURCES", ((missing, "0" * 40),))
    with pytest.raises(DataError, match="could not be downloaded") as info:
        ensure_cats(tmp_path / "root")
    assert str(tmp_path / "root" / "cats" / "faces") in str(info.value)
    assert not (tmp_path / "root" / "cats").exists() or not any((tmp_path / "root" / "cats").iterdir())
