"""Training images: MNIST, the 64x64 cat faces, or any folder of images, decoded once into memory.

Every image is decoded, resized and converted a single time into one uint8 tensor [N, C, H, W];
epochs then only index that tensor, so they are fast, need no DataLoader workers, and give the same
batches for the same seed. The cost is memory: N * C * H * W bytes, held once on the CPU (and once
more on the device, where training copies it). MNIST's 60,000 training images take 47 MB, the 8,303
cat faces at 64x64 RGB take 102 MB, but a folder of 100,000 RGB images at 128x128 takes 4.9 GB: pass
--limit or a smaller --img-size for big folders. Float conversion happens per batch (to_model_range).

The data root holds one folder per named set (see default_data_root):
    mnist/MNIST/raw/*-ubyte        what torchvision.datasets.MNIST reads and downloads
    cats/faces/*.jpg               64x64 cat faces (any image files under cats/ count)
    downloads/dataset-part*.tar.gz verified cat archives, kept so an interrupted install resumes
Missing sets are downloaded when online; offline, the error names the folder to fill.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torchvision.transforms.functional as TF
import torchvision.transforms.v2.functional as TF2
from PIL import Image, ImageOps
from rich.progress import wrap_file

from gancli.gan.training.config import TrainConfig
from gancli.gan.errors import DataError
from gancli.runtime.files import atomic_path

# (url, git blob id) of each part of the public cat faces set; the blob id is what
# `git hash-object FILE` prints, so anyone can check a download against the repository.
CATS_SOURCES: tuple[tuple[str, str], ...] = (
    ("https://github.com/fferlito/Cat-faces-dataset/raw/master/dataset-part1.tar.gz",
     "d7c478c476f83df2408b02d34ba32cff8a06dbdf"),
    ("https://github.com/fferlito/Cat-faces-dataset/raw/master/dataset-part2.tar.gz",
     "7acb443f4d5bb64a8ba2273764b249e5d21251e8"),
    ("https://github.com/fferlito/Cat-faces-dataset/raw/master/dataset-part3.tar.gz",
     "0defae414292f0fbc9714515a88d5683be62a9b3"),
)
DOWNLOAD_TIMEOUT_S = 60  # per socket operation, not for the whole file
PIL_MODES = {1: "L", 3: "RGB"}


@dataclass
class ImageData:
    train: torch.Tensor  # uint8 [N, C, H, W]
    val: torch.Tensor  # uint8 [M, C, H, W], held out by a seeded permutation; M may be 0
    skipped: list[str]  # files that could not be decoded as images
    source: str  # where the images came from, for logs
    train_labels: torch.Tensor | None = None  # int64 [N] when conditional: indices into class_names
    val_labels: torch.Tensor | None = None  # int64 [M]
    class_names: list[str] = field(default_factory=list)  # [] when unconditional


# --- data root -------------------------------------------------------------------------------

def cache_dir() -> Path:
    """gancli's cache folder (data sets, feature statistics): $GANCLI_CACHE_DIR, else ($XDG_CACHE_HOME or
    ~/.cache)/gancli."""
    explicit = os.environ.get("GANCLI_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "gancli"


def default_data_root() -> Path:
    """$GANCLI_DATA_ROOT, else the cache folder's data/."""
    explicit = os.environ.get("GANCLI_DATA_ROOT")
    if explicit:
        return Path(explicit).expanduser()
    return cache_dir() / "data"


def resolve_data_root(data_root: str | None) -> Path:
    return Path(data_root).expanduser() if data_root else default_data_root()


# --- entry point -----------------------------------------------------------------------------

def load_images(cfg: TrainConfig, download: bool = True) -> ImageData:
    """Decode cfg.dataset at cfg.img_size / cfg.channels, keep the first cfg.limit, split off validation."""
    root = resolve_data_root(cfg.data_root)
    if cfg.dataset == "mnist":
        images, labels = load_mnist(root, train=True, download=download)
        images, labels = images[:cfg.limit], labels[:cfg.limit]  # [:None] keeps all
        images = fit_tensor_images(images, cfg.img_size, cfg.channels)
        class_names = [str(digit) for digit in range(10)]
        skipped: list[str] = []
        source = f"MNIST training set in {root / 'mnist'}"
    else:
        folder = ensure_cats(root, download) if cfg.dataset == "cats" else existing_folder(cfg.dataset)
        images, labels, class_names, skipped = decode_folder(folder, cfg.img_size, cfg.channels, cfg.limit)
        source = str(folder)
    if not cfg.conditional:
        train, val = split_train_val(images, cfg.val_fraction, cfg.seed)
        return ImageData(train=train, val=val, skipped=skipped, source=source)
    if len(class_names) < 2:
        raise DataError(f"--conditional needs a data set with two or more classes, but {source} has "
                        f"{'one class folder' if class_names else 'no class folders'}; put each class's images in "
                        f"a subfolder of its own (ImageFolder layout) or drop --conditional")
    empty = [name for label, name in enumerate(class_names) if not (labels == label).any()]
    if empty:  # a class with no image would be a label G is asked for but never learns
        why = f"within --limit {cfg.limit}" if cfg.limit is not None else "that decodes"
        raise DataError(f"--conditional: the class folder {empty[0]!r} of {source} holds no image {why}"
                        f"{f' ({len(empty)} such classes)' if len(empty) > 1 else ''}; add images to it, remove it, "
                        f"or drop --conditional")
    train, val = split_train_val(images, cfg.val_fraction, cfg.seed)
    train_labels, val_labels = split_train_val(labels, cfg.val_fraction, cfg.seed)  # the same permutation
    return ImageData(train=train, val=val, skipped=skipped, source=source, train_labels=train_labels,
                     val_labels=val_labels, class_names=class_names)


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the range of G's tanh output."""
    if batch.dtype != torch.uint8:
        raise TypeError(f"to_model_range expects uint8 images, got {batch.dtype}")
    return (batch.float() / 255 - 0.5) / 0.5


def split_train_val(images: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out round(val_fraction * N) images picked by a permutation seeded with `seed`.

    At least one image is held out when val_fraction > 0 and there are two or more, and at least one
    is always left to train on. Both parts keep the images in their original order.
    """
    n = images.shape[0]
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return images[train_idx], images[val_idx]


# --- MNIST -----------------------------------------------------------------------------------

def load_mnist(root: Path, train: bool = True, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The real MNIST split as uint8 images [N, 1, 28, 28] and int64 labels [N]; torchvision downloads
    it (md5-checked) when missing."""
    from torchvision.datasets import MNIST

    folder = Path(root) / "mnist"
    try:
        dataset = MNIST(folder, train=train, download=download)
    except (RuntimeError, OSError) as e:  # torchvision: "Dataset not found" / "Error downloading ..."
        why = f"could not be downloaded ({one_line(e)})" if download else "downloading is off"
        raise DataError(
            f"MNIST not found in {folder} and {why}; copy the MNIST files (train-images-idx3-ubyte.gz etc.) "
            f"into {folder / 'MNIST' / 'raw'}/ or point --data-root / GANCLI_DATA_ROOT at a folder that has "
            f"mnist/MNIST/raw/") from None
    return dataset.data.unsqueeze(1), dataset.targets.long()


def fit_tensor_images(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Resize (shorter side) + center-crop a uint8 batch to size x size, grey -> RGB when asked."""
    if images.shape[-2:] != (size, size):
        images = TF2.center_crop(TF2.resize(images, [size], antialias=True), [size])
    if images.shape[1] == 1 and channels == 3:
        images = TF2.grayscale_to_rgb(images)
    elif images.shape[1] == 3 and channels == 1:
        images = TF2.rgb_to_grayscale(images)
    return images.contiguous()


# --- folders of images -----------------------------------------------------------------------

def existing_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise DataError(f"dataset folder {folder} does not exist; pass mnist, cats, or a folder of images")
    if not folder.is_dir():
        raise DataError(f"dataset {folder} is a file, not a folder; pass the folder that holds the images")
    return folder


def visible_files(folder: Path) -> list[Path]:
    """Every file under `folder`, recursively, in sorted order so runs see the same images in the same order.

    Hidden files and folders are left out: they are OS or tool metadata (.DS_Store, macOS ._x.jpg
    shadows, .ipynb_checkpoints) or our own half-finished staging folders, never training images.
    """
    return sorted(walk_visible(folder))


# What `gancli generate` writes beside the images at the top of its folder: its records, not images, so its
# `--layout imagefolder` output is a class folder as it is
GENERATE_RECORDS = re.compile(r"^(generate(-\d+-of-\d+)?\.json|manifest(-\d+-of-\d+)?\.jsonl)$")


def walk_visible(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        top = Path(dirpath) == folder
        yield from (Path(dirpath, name) for name in filenames
                    if not name.startswith(".") and not (top and GENERATE_RECORDS.match(name)))


def folder_classes(folder: Path, files: list[Path]) -> tuple[torch.Tensor, list[str]]:
    """ImageFolder's classes: each file's label is its first-level subfolder, names sorted; files lying
    directly in `folder` make it flat (no classes)."""
    tops = [path.relative_to(folder).parts for path in files]
    if not files or any(len(parts) == 1 for parts in tops):
        return torch.zeros(len(files), dtype=torch.long), []
    class_names = sorted({parts[0] for parts in tops})
    index = {name: i for i, name in enumerate(class_names)}
    return torch.tensor([index[parts[0]] for parts in tops], dtype=torch.long), class_names


def decode_folder(folder: Path, size: int, channels: int,
                  limit: int | None) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Decode the first `limit` usable images under `folder` into uint8 [N, C, size, size], with their
    ImageFolder labels int64 [N] and class names (see folder_classes), and the files that did not decode.

    Files that do not decode are listed, not fatal; with a limit, decoding stops once it is reached.
    """
    files = visible_files(folder)
    all_labels, class_names = folder_classes(folder, files)
    kept: list[int] = []
    capacity = len(files) if limit is None else min(limit, len(files))
    # Filled in place: stacking a list of images would hold every image twice at the peak.
    images = torch.empty((capacity, channels, size, size), dtype=torch.uint8)
    pixels = images.numpy()  # same memory; numpy item assignment costs far less per image than torch's
    skipped: list[str] = []
    count = 0
    for i, path in enumerate(files):
        if count == capacity:
            break
        image = decode_image(path, size, PIL_MODES[channels])
        if image is None:
            skipped.append(str(path))
        else:
            pixels[count] = np.asarray(image).reshape(size, size, channels).transpose(2, 0, 1)  # HWC -> CHW
            kept.append(i)
            count += 1
    if count == 0:
        found = f"{len(skipped)} file(s) could not be decoded, e.g. {skipped[0]}" if skipped else "it holds no files"
        raise DataError(f"no usable images in {folder} ({found}); add .jpg or .png images, flat or in class subfolders")
    return images[:count], all_labels[kept], class_names, skipped


def decode_image(path: Path, size: int, mode: str) -> Image.Image | None:
    """One file as a size x size image in `mode` (shorter side resized, then center-cropped); None if it is no image."""
    try:
        with Image.open(path) as img:
            # JPEG only: decode at the smallest 1/2^k scale that still covers `size` (much faster for photos).
            img.draft(mode, (size, size))
            img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
            if "transparency" in img.info:  # palette transparency: PIL wants RGBA before dropping alpha
                img = img.convert("RGBA")
            img = img.convert(mode)  # decodes the pixels, so truncated files fail here, inside the try
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if img.size != (size, size):
        img = TF.center_crop(TF.resize(img, size), size)
    return img


def image_extensions() -> set[str]:
    """Suffixes PIL can open (.jpg, .png, .webp, ...)."""
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def has_images(folder: Path) -> bool:
    extensions = image_extensions()
    return any(path.suffix.lower() in extensions for path in walk_visible(folder))  # stops at the first


# --- cat faces -------------------------------------------------------------------------------

def ensure_cats(root: Path, download: bool = True) -> Path:
    """root/cats with images in it; when it has none, download, verify and install CATS_SOURCES there."""
    cats_dir = Path(root) / "cats"
    if has_images(cats_dir):
        return cats_dir
    if not download:
        raise DataError(cats_missing_message(cats_dir, "downloading is off"))
    try:
        archives = [download_verified(url, blob_id, Path(root) / "downloads" / url_file_name(url))
                    for url, blob_id in CATS_SOURCES]
    except OSError as e:  # URLError, HTTPError and timeouts are all OSErrors
        raise DataError(cats_missing_message(cats_dir, f"could not be downloaded ({one_line(e)})")) from None
    install_faces(archives, cats_dir)
    return cats_dir


def cats_missing_message(cats_dir: Path, why: str) -> str:
    return (f"cat faces not found in {cats_dir} and {why}; put 64x64 cat faces in {cats_dir / 'faces'}/*.jpg "
            f"(the parts dataset-part1..3.tar.gz of github.com/fferlito/Cat-faces-dataset, or Kaggle's "
            f"cats-faces-64x64-for-generative-models) or point --data-root / GANCLI_DATA_ROOT at a folder "
            f"that has cats/faces/")


def url_file_name(url: str) -> str:
    return PurePosixPath(urllib.parse.urlparse(url).path).name


def git_blob_id(path: Path) -> str:
    """What `git hash-object` prints: sha1 of b"blob <size>\\0" + the content."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(url: str, blob_id: str, dest: Path) -> Path:
    """`dest` if it already verifies; else download to a temp file beside it, verify, and rename into place.

    A failed check deletes the temp file, so `dest` only ever holds a verified archive.
    """
    if dest.is_file() and git_blob_id(dest) == blob_id:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        fetch(url, tmp)
        actual = git_blob_id(tmp)
        if actual != blob_id:
            raise DataError(f"{dest.name} from {url} has git blob id {actual}, expected {blob_id}; deleted it: "
                            f"run again to retry, or put the cat faces in {dest.parent.parent / 'cats' / 'faces'}/")
    return dest


def fetch(url: str, dest: Path) -> None:
    """Stream `url` (https:// or file://) into `dest`, with a progress bar."""
    request = urllib.request.Request(url, headers={"User-Agent": "gancli"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, dest.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        with wrap_file(response, total, description=f"downloading {url_file_name(url)}", transient=True) as src:
            shutil.copyfileobj(src, out, 1 << 20)


def install_faces(archives: list[Path], cats_dir: Path) -> None:
    """Extract the archives into a hidden staging folder, gather every image into faces/, then rename it
    to cats_dir/faces in one step, so an interrupted install never leaves a folder that looks complete."""
    cats_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".faces-", dir=cats_dir))
    try:
        for archive in archives:
            extract_tar(archive, staging / "extracted" / archive.name.partition(".")[0])
        staged_faces = staging / "faces"
        if gather_images(staging / "extracted", staged_faces) == 0:
            raise DataError(f"the cat archives in {archives[0].parent} hold no images; delete them and run again")
        faces = cats_dir / "faces"
        try:
            os.replace(staged_faces, faces)
        except OSError:
            if not has_images(faces):  # not a concurrent install that finished first: a stray folder is in the way
                raise DataError(f"{faces} exists but holds no images; remove it and run again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract_tar(archive: Path, dest: Path) -> None:
    # The "data" filter refuses absolute paths, links out of `dest` and device files (Python >= 3.10.12).
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, **safe)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"could not extract {archive} ({one_line(e)}); delete it and run again") from None


def gather_images(tree: Path, faces: Path) -> int:
    """Move every image found anywhere under `tree` into the flat folder `faces`; return how many.

    The archives' own folder layout does not matter; names join the relative path with '_' so
    images from different parts or subfolders never collide.
    """
    faces.mkdir(parents=True)
    extensions = image_extensions()
    count = 0
    for path in visible_files(tree):
        if path.suffix.lower() in extensions:
            os.replace(path, faces / "_".join(path.relative_to(tree).parts))
            count += 1
    return count


def one_line(error: BaseException) -> str:
    """An exception's message on one line (torchvision's download errors span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def nhwc_array(images: torch.Tensor) -> np.ndarray:
    """A uint8 [N, C, H, W] tensor (how images are held for training) as the uint8 [N, H, W, C] array scores take."""
    return images.permute(0, 2, 3, 1).contiguous().numpy()
