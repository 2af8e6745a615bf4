"""Datasets and a fast tensor-only batch loader (CIFAR-10, Imagenette).

Design
------
Both datasets are small enough to live in memory as decoded pixels (CIFAR-10 train:
150 MiB, Imagenette train: 700 MiB of uint8). Decoding JPEGs every epoch would cost more
CPU time than training a small network on 2 cores, so every split is decoded once into a
uint8 tensor ``[N, 3, S, S]`` and cached with ``torch.save``; later loads read the cache
(about a second).

``load_dataset(name, split)`` looks in ``root`` (default :func:`data_root`) for, in order:

1. the extracted folder ``<root>/<name>/<folder>/<class>/*``;
2. the archive ``<root>/<name>.tar``, read member by member with :mod:`tarfile`
   (nothing is extracted to disk);
3. torchvision's download layout (``cifar-10-batches-py`` or ``imagenette2-160``),
   which ``download=True`` creates when nothing else is found.

Integrity: the archive's size is compared with the expected one on every call (one
``stat``), and its member count and class folders whenever a cache is built from it;
the sha256 is computed only with ``verify=True`` (0.2 s per 100 MB here, but a cost every
caller would pay for a check that the size and tar checks almost always make redundant).
A cache hit does not open the archive at all: the cache key is derived from the source's
path, size and mtime, so a replaced archive gets a new cache. Extracted folders have no
checksum: only their class folders are checked.

:class:`Loader` makes batches straight from that tensor, without ``DataLoader`` workers:
indexing, cropping, flipping and resizing are done on uint8 batches (reflect-padded random
crops as two gathers, random-resized crops as one antialiased resize per image), then one
float conversion and normalization. The order and all random augmentation are a pure
function of ``(seed, epoch)`` (and ``rank``), each from its own stream
(:func:`ev2lite.seeds.stream_seed`), so a resumed run sees the same batches and two seeds share
no epoch's order.
At test time the whole image is resized to ``image_size`` (no center crop).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import math
import os
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from tqdm.auto import tqdm

from .cache import cache_dir
from .seeds import stream_seed

__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "CorruptDatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ImageDataset",
    "Loader",
    "data_root",
    "load_dataset",
]

_CACHE_VERSION = 1  # bump when the decoded pixels or the cache format change


@dataclass(frozen=True)
class DatasetInfo:
    """What ``load_dataset`` knows about a dataset before reading it.

    ``splits`` maps our split names (``"train"``, ``"test"``) to folder names in the archive,
    ``class_names`` are human-readable names in label order and ``class_dirs`` the class
    folder names (sorted, same order). ``archive_bytes`` and ``split_sizes`` (images per
    split) are used to detect truncated or wrong archives. ``native_size`` is the side in
    pixels every image is stored at.
    """

    name: str
    archive: str
    sha256: str
    splits: dict[str, str]
    native_size: int
    num_classes: int
    class_names: tuple[str, ...]
    class_dirs: tuple[str, ...]
    archive_bytes: int
    split_sizes: dict[str, int]


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                    "dog", "frog", "horse", "ship", "truck")

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        name="cifar10",
        archive="cifar10.tar",
        sha256="b067342f07d9a71d5c7e314566494fc9009d14d0a4012ef51609f0fefec8aa94",
        splits={"train": "train", "test": "test"},
        native_size=32,
        num_classes=10,
        class_names=_CIFAR10_CLASSES,
        class_dirs=_CIFAR10_CLASSES,
        archive_bytes=92_692_480,
        split_sizes={"train": 50_000, "test": 10_000},
    ),
    "imagenette": DatasetInfo(
        name="imagenette",
        archive="imagenette.tar",
        sha256="e249249f83dd3cf3e8ff07da78f31b97b49eb7232c6a6adafaab76333bd1b7d3",
        splits={"train": "train", "test": "val"},
        native_size=160,
        num_classes=10,
        class_names=("tench", "English springer", "cassette player", "chain saw", "church",
                     "French horn", "garbage truck", "gas pump", "golf ball", "parachute"),
        class_dirs=("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
                    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"),
        archive_bytes=108_462_080,
        split_sizes={"train": 9_469, "test": 3_925},
    ),
}

# Per-channel (mean, std) of RGB values in [0, 1]. CIFAR-10: pixel statistics of this
# copy's train split; Imagenette: the usual ImageNet statistics.
NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)),
    "imagenette": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# Folders that torchvision's CIFAR10 / Imagenette(size="160px") download into.
_TORCHVISION_DIRS = {"cifar10": "cifar-10-batches-py", "imagenette": "imagenette2-160"}


class DatasetNotFoundError(FileNotFoundError):
    """No extracted folder, archive or download of the dataset was found (or download failed)."""


class CorruptDatasetError(RuntimeError):
    """The archive or folder exists but is truncated, unreadable, incomplete or undecodable."""


def data_root() -> Path:
    """Folder holding the datasets: ``$EV2LITE_DATA`` if set, else ``data/`` in the repository."""
    env = os.environ.get("EV2LITE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


@dataclass
class ImageDataset:
    """A decoded dataset split held in memory.

    Attributes:
        images: uint8 tensor ``[N, 3, H, H]`` (contiguous), RGB values 0..255.
        labels: int64 tensor ``[N]``, indices into ``classes``.
        classes: class folder names, sorted (e.g. wnids for Imagenette).
        name: dataset name (a key of ``DATASETS`` for the built-in ones).
        split: ``"train"`` or ``"test"``, or ``"val"`` for a part held out of a training
            split (:meth:`holdout`).

    Raises:
        ValueError: on construction, if shapes, dtypes or labels are inconsistent.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    split: str

    def __post_init__(self) -> None:
        n = len(self.labels)
        if (self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3
                or self.images.shape[2] != self.images.shape[3] or len(self.images) != n):
            raise ValueError(f"images must be uint8 [N, 3, H, H] with N = {n} labels, "
                             f"got {self.images.dtype} {list(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise ValueError(f"labels must be int64 [N], got {self.labels.dtype} {list(self.labels.shape)}")
        if n and not (0 <= int(self.labels.min()) and int(self.labels.max()) < len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")
        self.images = self.images.contiguous()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        """Side of the (square) images in pixels."""
        return self.images.shape[-1]

    def subset(self, n: int, seed: int = 0) -> ImageDataset:
        """A class-stratified random subset of ``n`` examples, kept in dataset order.

        Each class gets ``n * class_count / len(self)`` examples, rounded so the total is
        ``n`` (largest remainders first). The same ``(n, seed)`` always gives the same subset;
        the draw is the ``"subset"`` stream of ``seed`` (:func:`ev2lite.seeds.stream_seed`), so
        each seed of a study also trains on its own subset.

        Raises:
            ValueError: if not ``0 < n <= len(self)``.
        """
        return self._take(self._subset_index(n, seed))

    def holdout(self, n: int, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """``(rest, held_out)``: the split cut in two disjoint parts, ``held_out`` being exactly
        :meth:`subset` ``(n, seed)`` (class-stratified, split name ``"val"``) and ``rest`` the
        other ``len(self) - n`` examples, both in dataset order. For choosing a setting (e.g. a
        learning rate) on images that the test set does not share.

        Raises:
            ValueError: if not ``0 < n < len(self)`` (``rest`` would be empty).
        """
        if not 0 < n < len(self):
            raise ValueError(f"held-out size must be in [1, {len(self) - 1}] (something must be left "
                             f"to train on), got {n}")
        held = self._subset_index(n, seed)
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[held] = False
        return self._take(keep), self._take(held, "val")

    def _take(self, index: torch.Tensor, split: str | None = None) -> ImageDataset:
        """The examples at ``index`` (indices or a boolean mask) as a dataset of their own, named
        ``split`` (default this one's split)."""
        return ImageDataset(self.images[index], self.labels[index], list(self.classes), self.name,
                            split or self.split)

    def _subset_index(self, n: int, seed: int) -> torch.Tensor:
        """The sorted indices of :meth:`subset` ``(n, seed)``."""
        total = len(self)
        if not 0 < n <= total:
            raise ValueError(f"subset size must be in [1, {total}], got {n}")
        generator = torch.Generator().manual_seed(stream_seed(seed, "subset"))
        shuffled = torch.randperm(total, generator=generator)
        by_class = shuffled[torch.argsort(self.labels[shuffled], stable=True)]
        counts = torch.bincount(self.labels, minlength=len(self.classes))
        exact = counts.double() * n / total
        quota = exact.floor().long()
        quota[torch.argsort(quota - exact, stable=True)[: n - int(quota.sum())]] += 1
        starts = torch.cumsum(counts, 0) - counts
        chosen = torch.cat([by_class[s:s + q] for s, q in zip(starts.tolist(), quota.tolist())])
        return chosen.sort().values


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, *,
                 download: bool = False, verify: bool = False, progress: bool = True) -> ImageDataset:
    """Load a split of a built-in dataset as an :class:`ImageDataset` (decoding it once, then cached).

    Args:
        name: a key of ``DATASETS`` (``"cifar10"`` or ``"imagenette"``).
        split: ``"train"`` or ``"test"`` (Imagenette's ``"test"`` is its ``val`` folder).
        root: folder holding ``<name>.tar`` or ``<name>/``; default :func:`data_root`.
        download: if nothing is found locally, download with torchvision into ``root``
            (off by default: a library call never reaches the network unasked; the notebooks
            ask, through :func:`ev2lite.study.load_pair`). The environment variable
            ``EV2LITE_OFFLINE=1`` refuses every download (the test suite sets it).
        verify: also check the archive's sha256 (its size is always checked).
        progress: show a progress bar while decoding.

    Returns:
        The split with images uint8 ``[N, 3, S, S]`` at the dataset's native size ``S``
        (images of another size are resized, shorter side then center crop, antialiased).

    Raises:
        ValueError: unknown dataset or split name.
        DatasetNotFoundError: nothing found under ``root`` (and download off or failing).
        CorruptDatasetError: wrong archive size (or sha256 with ``verify``), unreadable tar,
            wrong member count or class folders, or an image that cannot be decoded (named).

    Errors of the libraries underneath (tarfile, the image decoders, torchvision's download)
    are re-raised as these, their text in the message and without the chained traceback
    (``raise ... from None``), so a notebook shows one short error.
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unknown dataset '{name}'. Valid names: {', '.join(DATASETS)}.{hint}")
    info = DATASETS[name]
    if split not in info.splits:
        raise ValueError(f"Unknown split '{split}' for {name}. Valid splits: {', '.join(info.splits)}.")
    root = Path(root) if root is not None else data_root()
    source = _find_source(info, split, root)
    if source is None:
        if not download:
            raise DatasetNotFoundError(_not_found_message(info, split, root))
        _download(info, split, root)
        source = _find_source(info, split, root)
        if source is None:
            raise DatasetNotFoundError(_not_found_message(info, split, root))
    if source.is_file():
        _check_archive(info, source, verify)
    cache = cache_dir() / f"{name}-{split}-{_cache_key(source, info)}.pt"
    dataset = _read_cache(cache, name, split)
    if dataset is None:
        dataset = _build(info, split, source, progress)
        _write_cache(cache, dataset)
    return dataset


def _candidates(info: DatasetInfo, split: str, root: Path) -> list[Path]:
    folder = info.splits[split]
    download_dir = root / _TORCHVISION_DIRS[info.name]
    return [root / info.name / folder, root / info.archive,
            download_dir if info.name == "cifar10" else download_dir / folder]


def _find_source(info: DatasetInfo, split: str, root: Path) -> Path | None:
    return next((path for path in _candidates(info, split, root) if path.exists()), None)


def _not_found_message(info: DatasetInfo, split: str, root: Path) -> str:
    looked = ", ".join(str(path) for path in _candidates(info, split, root))
    return (f"Dataset '{info.name}' ({split} split) not found. Looked at: {looked}. "
            f"Set EV2LITE_DATA to the folder holding {info.archive} (the root used was {root}), "
            f"or extract the archive there (tar -xf {info.archive}), "
            f"or pass download=True where a network exists.")


def _corrupt(info: DatasetInfo, path: Path, problem: str) -> CorruptDatasetError:
    return CorruptDatasetError(
        f"{path} is not a usable copy of {info.name}: {problem}. Replace it with a good copy of "
        f"{info.archive} ({info.archive_bytes:,} bytes, sha256 {info.sha256}), or delete it and "
        f"pass download=True where a network exists.")


def _check_archive(info: DatasetInfo, path: Path, hash_contents: bool) -> None:
    size = path.stat().st_size
    if size != info.archive_bytes:
        raise _corrupt(info, path, f"it is {size:,} bytes, expected {info.archive_bytes:,}")
    if not hash_contents:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != info.sha256:
        raise _corrupt(info, path, f"its sha256 is {digest.hexdigest()}")


def _cache_key(source: Path, info: DatasetInfo) -> str:
    """Hash of the source's path, sizes and mtimes (the folder's direct children for a folder)."""
    paths = [source, *sorted(source.iterdir())] if source.is_dir() else [source]
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return hashlib.sha256(repr((_CACHE_VERSION, info.native_size, stats)).encode()).hexdigest()[:16]


def _read_cache(path: Path, name: str, split: str) -> ImageDataset | None:
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=True)
        return ImageDataset(saved["images"], saved["labels"], list(saved["classes"]), name, split)
    except Exception:  # a truncated or foreign file can fail in many ways: rebuild it
        path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, dataset: ImageDataset) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as error:
        warnings.warn(f"cannot write the dataset cache {path} ({error}); it will be decoded again next time")
        return
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"images": dataset.images, "labels": dataset.labels, "classes": dataset.classes}, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _download(info: DatasetInfo, split: str, root: Path) -> None:
    if os.environ.get("EV2LITE_OFFLINE", "") not in ("", "0"):
        raise DatasetNotFoundError(f"{_not_found_message(info, split, root)} Downloads are off "
                                   "(EV2LITE_OFFLINE is set, as in the tests).")
    try:
        root.mkdir(parents=True, exist_ok=True)
        if info.name == "cifar10":
            torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True)
        else:
            torchvision.datasets.Imagenette(str(root), split=info.splits[split], size="160px", download=True)
    except Exception as error:  # network, HTTP, checksum and disk errors all mean "not available"
        raise DatasetNotFoundError(
            f"{_not_found_message(info, split, root)} Downloading it with torchvision into {root} "
            f"failed ({type(error).__name__}: {error}); this machine may have no network.") from None


def _build(info: DatasetInfo, split: str, source: Path, progress: bool) -> ImageDataset:
    """Decode a split from an archive, an extracted folder or torchvision's CIFAR-10 pickles."""
    if source.name == _TORCHVISION_DIRS["cifar10"]:
        cifar = torchvision.datasets.CIFAR10(str(source.parent), train=split == "train")
        images = torch.from_numpy(cifar.data).permute(0, 3, 1, 2).contiguous()
        return ImageDataset(images, torch.tensor(cifar.targets), list(info.class_dirs), info.name, split)
    files = _read_folder(info, source) if source.is_dir() else _read_tar(info, split, source)
    size = info.native_size
    images = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
    with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its image decoders
        warnings.simplefilter("ignore", DeprecationWarning)
        for i, (member, _, data) in enumerate(tqdm(files, desc=f"decoding {info.name} {split}",
                                                   unit="img", disable=not progress)):
            images[i] = _decode(data, member, size)
    labels = torch.tensor([label for _, label, _ in files], dtype=torch.int64)
    return ImageDataset(images, labels, list(info.class_dirs), info.name, split)


def _read_tar(info: DatasetInfo, split: str, path: Path) -> list[tuple[str, int, bytes]]:
    """``(member name, label, bytes)`` of every image of a split, in name order."""
    prefix = f"{info.name}/{info.splits[split]}/"
    try:
        with tarfile.open(path, "r:") as tar:
            members = sorted((m for m in tar if m.isfile() and m.name.startswith(prefix)), key=lambda m: m.name)
            contents = [tar.extractfile(m).read() for m in members]
    except (tarfile.TarError, OSError, EOFError) as error:
        raise _corrupt(info, path, f"tarfile cannot read it ({error})") from None
    classes = [m.name[len(prefix):].split("/")[0] for m in members]
    if sorted(set(classes)) != sorted(info.class_dirs):
        raise _corrupt(info, path, f"{prefix} has class folders {sorted(set(classes))}, "
                                   f"expected {list(info.class_dirs)}")
    if len(members) != info.split_sizes[split]:
        raise _corrupt(info, path, f"{prefix} has {len(members)} images, expected {info.split_sizes[split]}")
    label_of = {name: label for label, name in enumerate(info.class_dirs)}
    return [(m.name, label_of[c], data) for m, c, data in zip(members, classes, contents)]


def _read_folder(info: DatasetInfo, folder: Path) -> list[tuple[str, int, bytes]]:
    """``(file path, label, bytes)`` of every file in ``folder/<class>/``, skipping hidden files."""
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if found != sorted(info.class_dirs):
        raise _corrupt(info, folder, f"it has class folders {found}, expected {list(info.class_dirs)}")
    files = [(str(p), label, p.read_bytes())
             for label, name in enumerate(info.class_dirs)
             for p in sorted((folder / name).iterdir()) if p.is_file() and not p.name.startswith(".")]
    if not files:
        raise _corrupt(info, folder, "it holds no images")
    return files


def _decode(data: bytes, member: str, size: int) -> torch.Tensor:
    """Decode one image file to uint8 RGB ``[3, size, size]`` (resize + center crop if needed).

    Raises:
        CorruptDatasetError: naming ``member`` if the bytes cannot be decoded.
    """
    try:
        if data[:2] == b"\xff\xd8":  # JPEG magic number
            image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        else:
            with Image.open(io.BytesIO(data)) as pil:
                image = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1)
    except (RuntimeError, OSError, ValueError) as error:
        raise CorruptDatasetError(f"cannot decode image {member}: {error}. Replace the file or the archive.") from None
    if image.shape[1:] != (size, size):
        image = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
    return image


class Loader:
    """Batches ``(x, y)`` from an :class:`ImageDataset`, computed on whole tensors (no workers).

    Each epoch the dataset order is ``torch.randperm`` with a generator seeded from the
    ``"order"`` stream of ``(seed, epoch)`` (train; the same on every rank) or the dataset order
    (test); rank ``r`` of ``world_size`` takes every
    ``world_size``-th example of it starting at ``r``, after dropping the last
    ``len(dataset) % world_size`` so every rank gets the same number. Call :meth:`set_epoch`
    before each epoch: batches are a pure function of (seed, epoch, rank, image_size, augment).

    Train-mode augmentation on the uint8 batch, with a generator seeded from the ``"augment"``
    stream of (seed, epoch, rank):

    * native size <= 64 (CIFAR style): reflect-pad by ``native // 8``, random ``native``
      crop, horizontal flip, then an antialiased bilinear resize if ``image_size != native``;
    * larger images: random-resized crop as torchvision's ``RandomResizedCrop`` (area
      ``crop_scale``, default (0.08, 1); aspect ratio (3/4, 4/3); 10 tries, then the whole
      image, which is torchvision's centre-crop fallback for square images) resized straight to
      ``image_size`` (bilinear, antialiased), horizontal flip.

    Test mode, or ``random_crop=False``, resizes the whole image to ``image_size``
    (antialiased) with no crop or flip; ``train=True, random_crop=False`` still shuffles (the
    test-style preprocessing Graphcore and FixRes fine-tune on at the test resolution).
    Then ``augment`` (if set) is applied to the uint8 batch ``[B, 3, S, S]``, with the global
    torch RNG seeded per batch from the loader's generator (so e.g. RandAugment is also
    reproducible), and the batch is converted to float and normalized with ``mean_std``.

    Batches are built with one intra-op thread (see ``_one_thread``); the thread count is
    restored before each ``yield``, so iterate from the training thread, not a background one.

    Args:
        dataset: the images to batch.
        batch_size: examples per batch (per rank).
        train: shuffle and augment (True) or keep order and only resize (False).
        random_crop: take random crops and flips of training images; default ``train``.
            The attribute can be changed between epochs (``Stage.random_crop``).
        image_size: output side S in pixels; default the dataset's native size. The
            attribute can be changed between epochs (progressive learning).
        seed: non-negative base seed.
        crop_scale: ``(low, high)`` fraction of the image area a random-resized crop covers
            (torchvision's ``scale``), ``0 < low <= high <= 1``.
        drop_last: drop the last incomplete batch; default ``train``.
        rank, world_size: this process's shard, ``0 <= rank < world_size``.
        augment: optional callable uint8 ``[B, 3, S, S]`` -> uint8 ``[B, 3, S, S]``;
            the attribute can be changed.
        channels_last: return x in ``torch.channels_last`` memory format.
        mean_std: ``((r, g, b), (r, g, b))`` of values in [0, 1]; default
            ``NORMALIZATION[dataset.name]``.

    Yields:
        x: float32 ``[B, 3, S, S]``, normalized; y: int64 ``[B]``.

    Raises:
        ValueError: bad batch size, rank/world size, crop scale, fewer examples than ranks, or
            no ``mean_std`` for a dataset not in ``NORMALIZATION``.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, *, train: bool, image_size: int | None = None,
                 seed: int = 0, drop_last: bool | None = None, rank: int = 0, world_size: int = 1,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, channels_last: bool = True,
                 mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                 random_crop: bool | None = None,
                 crop_scale: tuple[float, float] = (0.08, 1.0)) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if len(dataset) < world_size:
            raise ValueError(f"{len(dataset)} examples cannot be shared by {world_size} ranks")
        if mean_std is None:
            if dataset.name not in NORMALIZATION:
                raise ValueError(f"no NORMALIZATION entry for '{dataset.name}': pass mean_std=(mean, std)")
            mean_std = NORMALIZATION[dataset.name]
        self.dataset = dataset
        self.batch_size = batch_size
        self.train = train
        self.random_crop = train if random_crop is None else random_crop
        self.image_size = image_size or dataset.image_size
        self.seed = seed
        self.epoch = 0
        self.drop_last = train if drop_last is None else drop_last
        self.rank = rank
        self.world_size = world_size
        self.augment = augment
        self.channels_last = channels_last
        self.mean_std = mean_std
        self.crop_scale = crop_scale

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        self.epoch = epoch

    def __len__(self) -> int:
        per_rank = len(self.dataset) // self.world_size
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def _indices(self) -> torch.Tensor:
        """Dataset indices this rank visits this epoch, in order (int64 ``[len(dataset) // world_size]``)."""
        n = len(self.dataset)
        if self.train:
            generator = torch.Generator().manual_seed(stream_seed(self.seed, "order", self.epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        return order[self.rank: n - n % self.world_size: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._indices()
        generator = torch.Generator().manual_seed(stream_seed(self.seed, "augment", self.epoch, self.rank))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            with _one_thread():
                batch = self._batch(indices[start:start + self.batch_size], generator)
            yield batch

    def _batch(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.random_crop:
            x = self._resize(self.dataset.images.index_select(0, index))
        elif self.dataset.image_size <= 64:
            x = self._resize(self._pad_crop_flip(index, generator))
        else:
            x = self._resized_crop_flip(index, generator)
        batch_seed = int(torch.randint(2**62, (1,), generator=generator))  # drawn even without augment
        if self.augment is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(batch_seed)
                x = self.augment(x)
        return self._normalize(x), self.dataset.labels[index]

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        if x.shape[-1] == size:
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    def _pad_crop_flip(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Reflect-pad, random crop and flip as a gather of rows then columns: uint8 ``[B, 3, n, n]``."""
        n, batch = self.dataset.image_size, len(index)
        pad = n // 8
        grid = torch.arange(n)
        top = torch.randint(0, 2 * pad + 1, (batch, 1), generator=generator)
        left = torch.randint(0, 2 * pad + 1, (batch, 1), generator=generator)
        flip = torch.rand(batch, 1, generator=generator) < 0.5
        rows = _reflect(top + grid - pad, n)
        cols = _reflect(torch.where(flip, left + (n - 1 - grid), left + grid) - pad, n)
        images = self.dataset.images.index_select(0, index)
        images = images.gather(2, rows[:, None, :, None].expand(images.shape))
        return images.gather(3, cols[:, None, None, :].expand(images.shape))

    def _resized_crop_flip(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random-resized crop + flip, one antialiased resize per image: uint8 ``[B, 3, S, S]``."""
        n, size, batch, tries = self.dataset.image_size, self.image_size, len(index), 10
        area = torch.empty(batch, tries).uniform_(*self.crop_scale, generator=generator) * n * n
        ratio = torch.empty(batch, tries).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator).exp()
        width, height = (area * ratio).sqrt().round().long(), (area / ratio).sqrt().round().long()
        fits = (width <= n) & (height <= n)
        first = fits.int().argmax(1, keepdim=True)  # first try that fits; whole image if none does
        width = torch.where(fits.any(1), width.gather(1, first)[:, 0], n)
        height = torch.where(fits.any(1), height.gather(1, first)[:, 0], n)
        top = (torch.rand(batch, generator=generator) * (n - height + 1)).long()
        left = (torch.rand(batch, generator=generator) * (n - width + 1)).long()
        flip = torch.rand(batch, generator=generator) < 0.5
        out = torch.empty(batch, 3, size, size, dtype=torch.uint8)
        for k, (i, t, l, h, w, f) in enumerate(zip(index.tolist(), top.tolist(), left.tolist(),
                                                   height.tolist(), width.tolist(), flip.tolist())):
            crop = self.dataset.images[i:i + 1, :, t:t + h, l:l + w]
            resized = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            out[k] = resized[0].flip(-1) if f else resized[0]
        return out

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) * 255 for v in self.mean_std)
        return x.float().sub_(mean).div_(std).contiguous(memory_format=layout)  # float transposes faster


@contextlib.contextmanager
def _one_thread():
    """Run torch ops on one intra-op thread (restored afterwards).

    Batches are many small, memory-bound ops: on 2 cores one thread is as fast or faster
    (fewer thread hand-offs), and avoids stalls of 10-50x when the other core is busy.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Map padded coordinates in ``[-n + 1, 2n - 2]`` into ``[0, n)`` by reflection (no edge repeat)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)
