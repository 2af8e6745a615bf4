"""Tests for ev2lite.data.

Real-data tests read the archives from ``data_root()`` (``$EV2LITE_DATA``, else ``data/``)
and are skipped, with the reason, when an archive is absent. They use the normal cache
(``cache_dir()``), so only the first run decodes. Tests of the caching logic and of
small synthetic layouts use a temporary ``EV2LITE_CACHE``.
"""

import math
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ev2lite import data
from ev2lite.cache import cache_dir
from ev2lite.data import (DATASETS, CorruptDatasetError, DatasetNotFoundError, ImageDataset, Loader,
                          data_root, load_dataset)

ROOT = data_root()
PER_CLASS = {
    ("cifar10", "train"): [5000] * 10,
    ("cifar10", "test"): [1000] * 10,
    ("imagenette", "train"): [963, 955, 993, 858, 941, 956, 961, 931, 951, 960],
    ("imagenette", "test"): [387, 395, 357, 386, 409, 394, 389, 419, 399, 390],
}
PIXELS = ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # mean_std that leaves x = pixel value


@pytest.fixture(scope="module")
def real():
    """``real(name, split)``: a real split, loaded once per module; skips if the archive is absent."""
    loaded = {}

    def get(name, split):
        if not ((ROOT / DATASETS[name].archive).exists() or (ROOT / name).is_dir()):
            pytest.skip(f"{DATASETS[name].archive} not found in {ROOT}: set EV2LITE_DATA to the folder holding it")
        if (name, split) not in loaded:
            loaded[name, split] = load_dataset(name, split, progress=False)
        return loaded[name, split]

    return get


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EV2LITE_CACHE", str(cache))
    return cache


def synthetic(n=100, size=8, constant=False, seed=0):
    """n images labelled 0..n-1; with ``constant`` image i is filled with the value i."""
    if constant:
        images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, size, size)
    else:
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    return ImageDataset(images.contiguous(), torch.arange(n), [str(i) for i in range(n)], "synthetic", "train")


def write_image(path, size=(32, 32), color=(0, 0, 0), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, quality=95)


def cifar_folder(root):
    """A tiny ``root/cifar10/train/<class>/`` layout; returns the expected (label, colour) in load order."""
    expected = []
    for label, name in enumerate(DATASETS["cifar10"].class_dirs):
        color = (label * 25, 255 - label * 25, 100)
        for i in range(2):
            write_image(root / "cifar10" / "train" / name / f"{i}.jpg", color=color)
            expected.append((label, color))
    return expected


def epoch(loader):
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


# --- registry and paths ---------------------------------------------------------------------

def test_registry():
    assert set(DATASETS) == {"cifar10", "imagenette"}
    cifar, nette = DATASETS["cifar10"], DATASETS["imagenette"]
    assert cifar.splits == {"train": "train", "test": "test"} and cifar.native_size == 32
    assert nette.splits == {"train": "train", "test": "val"} and nette.native_size == 160
    assert nette.class_names[0] == "tench" and nette.class_names[9] == "parachute"
    assert nette.class_dirs[9] == "n03888257"
    for info in DATASETS.values():
        assert info.num_classes == len(info.class_names) == len(info.class_dirs) == 10
        assert list(info.class_dirs) == sorted(info.class_dirs)
        assert info.split_sizes == {split: sum(PER_CLASS[info.name, split]) for split in info.splits}


def test_paths_follow_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EV2LITE_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("EV2LITE_CACHE", str(tmp_path / "c"))
    assert data_root() == tmp_path / "d" and cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EV2LITE_DATA")
    monkeypatch.delenv("EV2LITE_CACHE")
    assert data_root() == Path(data.__file__).resolve().parents[1] / "data"
    assert cache_dir() == Path.home() / ".cache" / "ev2lite"


# --- real datasets ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,split", list(PER_CLASS))
def test_real_split(real, name, split):
    ds = real(name, split)
    info = DATASETS[name]
    size = info.native_size
    assert len(ds) == info.split_sizes[split] == sum(PER_CLASS[name, split])
    assert ds.images.shape == (len(ds), 3, size, size) and ds.image_size == size
    assert ds.images.dtype == torch.uint8 and ds.images.is_contiguous()
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (len(ds),)
    assert torch.bincount(ds.labels, minlength=10).tolist() == PER_CLASS[name, split]
    assert ds.classes == list(info.class_dirs) and (ds.name, ds.split) == (name, split)


def test_imagenette_grayscale_became_rgb(real):
    # 242 images are single-channel JPEGs; decoded as RGB their three channels are equal.
    gray = 0
    for split in ("train", "test"):
        images = real("imagenette", split).images
        gray += int(((images[:, 0] == images[:, 1]) & (images[:, 1] == images[:, 2])).flatten(1).all(1).sum())
    assert gray >= 242


def test_loader_cifar_resized(real):
    ds = real("cifar10", "train")
    loader = Loader(ds, 256, train=True, image_size=48)
    assert len(loader) == 50000 // 256
    x, y = next(iter(loader))
    assert x.shape == (256, 3, 48, 48) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert y.shape == (256,) and y.dtype == torch.int64


def test_loader_cifar_normalized(real):
    loader = Loader(real("cifar10", "train"), 256, train=True)
    x = torch.cat([x for (x, _), _ in zip(loader, range(10))])
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3))
    assert mean.abs().max() < 0.1 and ((std - 1).abs() < 0.15).all(), (mean, std)


def test_loader_test_mode_is_plain_normalization(real):
    ds = real("cifar10", "test")
    x, y = next(iter(Loader(ds, 100, train=False)))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) * 255 for v in data.NORMALIZATION["cifar10"])
    torch.testing.assert_close(x, (ds.images[:100].float() - mean) / std)
    assert torch.equal(y, ds.labels[:100])


@pytest.mark.parametrize("size", [96, 128])
def test_loader_imagenette_train(real, size):
    loader = Loader(real("imagenette", "train"), 64, train=True, image_size=size)
    x, y = next(iter(loader))
    assert x.shape == (64, 3, size, size) and x.dtype == torch.float32 and y.shape == (64,)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.mean((0, 2, 3)).abs().max() < 0.5


def test_loader_imagenette_test_epoch(real):
    ds = real("imagenette", "test")
    loader = Loader(ds, 64, train=False, image_size=128)
    assert len(loader) == math.ceil(3925 / 64)
    shapes, labels, means = [], [], []
    for x, y in loader:
        shapes.append(tuple(x.shape))
        labels.append(y)
        means.append(x.mean((0, 2, 3)))
    assert shapes == [(64, 3, 128, 128)] * 61 + [(3925 - 61 * 64, 3, 128, 128)]
    assert torch.equal(torch.cat(labels), ds.labels)  # test mode keeps the dataset order
    assert torch.stack(means).mean(0).abs().max() < 0.5


def test_subset_stratified(real):
    ds = real("cifar10", "train")
    sub = ds.subset(1000, seed=1)
    assert len(sub) == 1000 and torch.bincount(sub.labels).tolist() == [100] * 10
    again = ds.subset(1000, seed=1)
    assert torch.equal(sub.images, again.images) and torch.equal(sub.labels, again.labels)
    assert not torch.equal(sub.images, ds.subset(1000, seed=2).images)
    with pytest.raises(ValueError):
        ds.subset(len(ds) + 1)
    nette = real("imagenette", "train")
    counts = torch.bincount(nette.subset(500).labels, minlength=10)
    assert counts.sum() == 500
    assert ((counts - torch.tensor(PER_CLASS["imagenette", "train"]) * 500 / 9469).abs() < 1).all()


# --- Loader on synthetic data -------------------------------------------------------------------

def test_subset_keeps_images_with_labels():
    ds = synthetic(200, constant=True)
    ds.labels = torch.arange(200) % 4
    sub = ds.subset(20, seed=3)
    index = sub.images[:, 0, 0, 0].long()
    assert torch.equal(sub.labels, ds.labels[index]) and (index.diff() > 0).all()
    assert torch.bincount(sub.labels).tolist() == [5] * 4


def test_holdout_cuts_the_split_in_two_disjoint_stratified_parts():
    ds = synthetic(200, constant=True)
    ds.labels = torch.arange(200) % 4
    rest, held = ds.holdout(40, seed=3)
    ids = lambda part: part.images[:, 0, 0, 0].long()  # image i is filled with the value i
    assert torch.equal(ids(held), ids(ds.subset(40, seed=3))) and held.split == "val" and rest.split == "train"
    assert sorted(ids(rest).tolist() + ids(held).tolist()) == list(range(200))  # disjoint, nothing lost
    assert torch.equal(rest.labels, ds.labels[ids(rest)]) and torch.bincount(held.labels).tolist() == [10] * 4
    for bad in (0, 200):
        with pytest.raises(ValueError, match="held-out size"):
            ds.holdout(bad)


@pytest.mark.parametrize("size", [8, 96])  # pad-crop-flip and random-resized-crop paths
def test_same_seed_and_epoch_same_batches(size):
    ds = synthetic(64, size)

    def noise(x):  # a user augmentation drawing from the global RNG
        return (x.int() + torch.randint(0, 9, x.shape)).clamp(0, 255).to(torch.uint8)

    a, b, c = (Loader(ds, 16, train=True, seed=5, augment=noise, mean_std=PIXELS) for _ in range(3))
    a.set_epoch(3)
    b.set_epoch(3)
    c.set_epoch(4)
    xa, ya = epoch(a)
    xb, yb = epoch(b)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(epoch(a)[0], xa)  # iterating again repeats the epoch
    assert not torch.equal(ya, epoch(c)[1])
    assert sorted(ya.tolist()) == list(range(64))


@pytest.mark.parametrize("size", [8, 96])
def test_images_stay_with_labels(size):
    x, y = epoch(Loader(synthetic(100, size, constant=True), 32, train=True, drop_last=False, mean_std=PIXELS))
    assert torch.equal(x, y.float().view(-1, 1, 1, 1).expand_as(x))


@pytest.mark.parametrize("native", [8, 96])
def test_no_random_crop_gives_test_images_in_shuffled_order(native):
    """Stage.random_crop=False (fine-tuning at the test resolution): shuffled, but every image
    is the whole test-mode image, not a crop or a flip."""
    ds = synthetic(40, native)
    loader = Loader(ds, 10, train=True, image_size=12, seed=1, mean_std=PIXELS, random_crop=False)
    x, y = epoch(loader)
    test_x, test_y = epoch(Loader(ds, 10, train=False, image_size=12, mean_std=PIXELS))
    assert not torch.equal(y, test_y)  # still shuffled
    assert torch.equal(x, test_x[y])
    assert Loader(ds, 10, train=True, mean_std=PIXELS).random_crop
    assert not Loader(ds, 10, train=False, mean_std=PIXELS).random_crop


def test_pad_crop_flip_is_a_reflect_padded_crop():
    ds = synthetic(16, 8)
    x, y = next(iter(Loader(ds, 16, train=True, mean_std=PIXELS)))
    padded = F.pad(ds.images.float(), (1, 1, 1, 1), mode="reflect")
    for image, label in zip(x, y):
        crops = [padded[label, :, t:t + 8, l:l + 8] for t in range(3) for l in range(3)]
        assert any(torch.equal(image, c) or torch.equal(image, c.flip(-1)) for c in crops)


def test_sharding_partitions_epoch():
    ds = synthetic(101)
    ranks = [Loader(ds, 8, train=True, seed=2, drop_last=False, rank=r, world_size=2, mean_std=PIXELS)
             for r in range(2)]
    for loader in ranks:
        loader.set_epoch(7)
    assert len(ranks[0]) == len(ranks[1]) == 7
    y0, y1 = (set(epoch(loader)[1].tolist()) for loader in ranks)
    assert len(y0) == len(y1) == 50 and not y0 & y1
    assert len(Loader(ds, 8, train=True, rank=1, world_size=2, mean_std=PIXELS)) == 6  # drop_last = train


def test_augment_hook_and_image_size_change():
    ds = synthetic(40, 96)
    seen = []

    def blank(x):
        seen.append((x.dtype, tuple(x.shape)))
        return torch.zeros_like(x)

    loader = Loader(ds, 8, train=True, image_size=64, augment=blank, mean_std=((0.5,) * 3, (0.25,) * 3))
    x, _ = next(iter(loader))
    assert seen == [(torch.uint8, (8, 3, 64, 64))]
    assert torch.allclose(x, torch.full_like(x, -2.0))
    loader.image_size, loader.augment = 48, None
    assert next(iter(loader))[0].shape == (8, 3, 48, 48)


def test_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mean_std"):
        Loader(synthetic(), 4, train=True)
    with pytest.raises(ValueError):
        Loader(synthetic(), 4, train=True, rank=2, world_size=2, mean_std=PIXELS)


# --- errors -----------------------------------------------------------------------------------

def test_missing_dataset_names_paths(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar10", root=tmp_path)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    for path in (tmp_path / "cifar10.tar", tmp_path / "cifar10" / "train"):
        assert str(path) in message
    assert "EV2LITE_DATA" in message and "download=True" in message


def test_unknown_names():
    with pytest.raises(ValueError, match="cifar10"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="test"):
        load_dataset("imagenette", "val")


def test_failed_download_is_not_found(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.torchvision.datasets, "CIFAR10", offline)
    monkeypatch.delenv("EV2LITE_OFFLINE")  # CIFAR10 above is the "network" here
    with pytest.raises(DatasetNotFoundError, match="network is unreachable"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_offline_refuses_a_download_before_trying(tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("tried the network")

    monkeypatch.setattr(data.torchvision.datasets, "CIFAR10", must_not_run)
    monkeypatch.setenv("EV2LITE_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="Downloads are off"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_truncated_archive(tmp_path, tmp_cache):
    source = ROOT / "cifar10.tar"
    if not source.exists():
        pytest.skip(f"{source} not found: set EV2LITE_DATA to the folder holding it")
    with open(source, "rb") as f:
        (tmp_path / "cifar10.tar").write_bytes(f.read(1 << 20))
    with pytest.raises(CorruptDatasetError, match="bytes"):
        load_dataset("cifar10", root=tmp_path)


def padded_tar(path, names):
    """A valid tar holding small JPEGs at ``names``, zero-padded to cifar10.tar's expected size."""
    write_image(path.parent / "image.jpg")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            tar.add(path.parent / "image.jpg", arcname=name)
    with open(path, "r+b") as f:
        f.truncate(DATASETS["cifar10"].archive_bytes)


def test_unreadable_archive_of_right_size(tmp_path, tmp_cache):
    with open(tmp_path / "cifar10.tar", "wb") as f:
        f.write(b"not a tar header " * 64)
        f.truncate(DATASETS["cifar10"].archive_bytes)
    with pytest.raises(CorruptDatasetError, match="tarfile"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize("classes,problem", [(10, "images, expected 50000"), (9, "class folders")])
def test_archive_with_wrong_members(tmp_path, tmp_cache, classes, problem):
    names = DATASETS["cifar10"].class_dirs[:classes]
    padded_tar(tmp_path / "cifar10.tar", [f"cifar10/train/{name}/0000.jpg" for name in names])
    with pytest.raises(CorruptDatasetError, match=problem):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(CorruptDatasetError, match="sha256"):
        load_dataset("cifar10", root=tmp_path, verify=True)


def test_undecodable_image_is_named(tmp_path, tmp_cache):
    cifar_folder(tmp_path)
    bad = tmp_path / "cifar10" / "train" / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(CorruptDatasetError, match="broken.jpg"):
        load_dataset("cifar10", root=tmp_path, progress=False)


def test_folder_with_missing_class(tmp_path, tmp_cache):
    write_image(tmp_path / "cifar10" / "train" / "cat" / "0.jpg")
    with pytest.raises(CorruptDatasetError, match="class folders"):
        load_dataset("cifar10", root=tmp_path)


# --- extracted folders and the cache -------------------------------------------------------------

def test_extracted_folder_layout(tmp_path, tmp_cache):
    expected = cifar_folder(tmp_path)
    train = tmp_path / "cifar10" / "train"
    write_image(train / "truck" / "gray.jpg", color=128, mode="L")  # grayscale -> 3 equal channels
    write_image(train / "truck" / "png.png", color=(10, 20, 30))  # not a JPEG: decoded by PIL
    write_image(train / "truck" / "wide.jpg", size=(48, 40), color=(200, 50, 50))  # resized + cropped
    expected += [(9, (128, 128, 128)), (9, (10, 20, 30)), (9, (200, 50, 50))]
    ds = load_dataset("cifar10", root=tmp_path, progress=False)
    assert ds.images.shape == (23, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [label for label, _ in expected]
    for image, (_, color) in zip(ds.images, expected):
        assert (image.float() - torch.tensor(color).view(3, 1, 1)).abs().max() <= 4


def test_cache_is_reused_and_rebuilt(tmp_path, tmp_cache, monkeypatch):
    cifar_folder(tmp_path)
    first = load_dataset("cifar10", root=tmp_path, progress=False)
    (cache,) = tmp_cache.glob("cifar10-train-*.pt")
    assert list(tmp_cache.iterdir()) == [cache]  # no temporary file left behind

    decode = data._decode

    def no_decode(*args):
        raise AssertionError("decoded although the cache exists")

    monkeypatch.setattr(data, "_decode", no_decode)
    cached = load_dataset("cifar10", root=tmp_path)
    assert torch.equal(cached.images, first.images) and torch.equal(cached.labels, first.labels)

    cache.write_bytes(b"not a torch file")  # a corrupt cache is deleted and rebuilt
    monkeypatch.setattr(data, "_decode", decode)
    rebuilt = load_dataset("cifar10", root=tmp_path, progress=False)
    assert torch.equal(rebuilt.images, first.images)
    assert cache.stat().st_size > 1000

    write_image(tmp_path / "cifar10" / "train" / "cat" / "new.jpg")  # a changed folder gets a new cache
    assert len(load_dataset("cifar10", root=tmp_path, progress=False)) == len(first) + 1
