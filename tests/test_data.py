"""Datasets: IDX reader, Fashion-MNIST, ImageFolder errors, seeded pretraining views."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ijepa.data import PretrainViews, build_dataset, data_spec, eval_transform
from ijepa.data.fashion_mnist import DEFAULT_ROOT, FashionMNIST, read_idx, val_rows


def idx_bytes(arr: np.ndarray) -> bytes:
    return b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()


def write_fmnist(root: Path, n_train: int = 12, n_val: int = 6, *, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    images, labels = rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train)
    files = {"train-images-idx3-ubyte": images, "train-labels-idx1-ubyte": labels,
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_val, 28, 28)), "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_val)}
    for name, arr in files.items():
        data = idx_bytes(arr)
        (root / (name + ".gz")).write_bytes(gzip.compress(data)) if gz else (root / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_and_fashion_mnist_layout(tmp_path, gz):
    images, labels = write_fmnist(tmp_path, n_train=60, gz=gz)
    whole = FashionMNIST(tmp_path, "trainval")
    assert len(whole) == 60 and len(FashionMNIST(tmp_path, "test")) == 6
    img, label = whole[3]
    assert img.shape == (1, 28, 28) and img.dtype == torch.uint8
    assert np.array_equal(img[0].numpy(), images[3]) and label == labels[3]
    train, val = FashionMNIST(tmp_path, "train"), FashionMNIST(tmp_path, "val")
    assert len(train) + len(val) == 60 and 0 < len(val) < 20
    via_factory = build_dataset(f"fashion-mnist:{tmp_path}", "train")
    assert torch.equal(via_factory[5][0], train[5][0])


@pytest.mark.skipif(not (DEFAULT_ROOT / "train-labels-idx1-ubyte.gz").exists(), reason="Debian's Fashion-MNIST not installed")
def test_fashion_mnist_val_is_held_out_of_train_fixed_and_balanced():
    """val is 1,000 images per class of the official train file, the same rows on every machine,
    disjoint from train; test is t10k. Pinned rows catch any change to the draw."""
    labels = read_idx(DEFAULT_ROOT / "train-labels-idx1-ubyte.gz").astype(np.int64)
    held = val_rows(labels)
    assert held[:8].tolist() == [0, 1, 5, 8, 11, 12, 14, 15] and int(held.sum()) == 298109867
    train, val, test = (FashionMNIST(DEFAULT_ROOT, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (50_000, 10_000, 10_000)
    assert torch.bincount(val.targets).tolist() == [1000] * 10
    assert torch.bincount(train.targets).tolist() == [5000] * 10
    both = torch.cat([train.images, val.images]).flatten(1)
    assert len(torch.unique(both, dim=0)) == len(torch.unique(FashionMNIST(DEFAULT_ROOT, "trainval").images.flatten(1), dim=0))
    with pytest.raises(ValueError, match="expected one of train, val, test"):
        FashionMNIST(DEFAULT_ROOT, "t10k")


def test_truncated_and_corrupt_idx_files_name_the_path(tmp_path):
    arr = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(idx_bytes(arr)[:-100])
    with pytest.raises(ValueError, match="short-idx3-ubyte: truncated"):
        read_idx(short)
    magic = tmp_path / "magic-idx3-ubyte"
    magic.write_bytes(b"\x01\x02" + idx_bytes(arr)[2:])
    with pytest.raises(ValueError, match="magic-idx3-ubyte: not an unsigned-byte IDX"):
        read_idx(magic)
    broken_gz = tmp_path / "broken-idx3-ubyte.gz"
    broken_gz.write_bytes(gzip.compress(idx_bytes(arr))[:-30])
    with pytest.raises(ValueError, match="broken-idx3-ubyte.gz"):
        read_idx(broken_gz)
    not_gz = tmp_path / "plain-idx3-ubyte.gz"
    not_gz.write_bytes(idx_bytes(arr))
    with pytest.raises(ValueError, match="plain-idx3-ubyte.gz"):
        read_idx(not_gz)


def test_missing_fashion_mnist_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train-images-idx3-ubyte")):
        FashionMNIST(tmp_path, "train")
    write_fmnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(5))))
    with pytest.raises(ValueError, match="12 images but 5 labels"):
        FashionMNIST(tmp_path, "train")
    with pytest.raises(ValueError, match="split 'test2'"):
        FashionMNIST(tmp_path, "test2")


@pytest.mark.skipif(not (DEFAULT_ROOT / "t10k-labels-idx1-ubyte.gz").exists(), reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist_val_split():
    ds = build_dataset("fashion-mnist", "val")
    assert len(ds) == 10_000 and ds[0][0].shape == (1, 28, 28)
    assert sorted(set(ds.targets.tolist())) == list(range(10))


def make_tree(root: Path, classes=("cat", "dog"), per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


def test_imagefolder_tree_loads_as_rgb(tmp_path):
    make_tree(tmp_path)
    ds = build_dataset(str(tmp_path), "train")
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    img, label = ds[4]
    assert img.mode == "RGB" and label == 1
    assert data_spec(str(tmp_path)).kind == "imagefolder"


def test_imagefolder_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        data_spec(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train") + ": not a directory"):
        build_dataset(str(tmp_path), "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train") + ": no images"):
        build_dataset(str(tmp_path), "train")
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train") + ": no images"):
        build_dataset(str(tmp_path), "train")
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    ds = build_dataset(str(tmp_path), "train")
    with pytest.raises(ValueError, match="broken.jpg: unreadable image"):
        ds[0]


def test_pretrain_views_are_seeded_per_epoch_and_index(tmp_path):
    write_fmnist(tmp_path)
    base = FashionMNIST(tmp_path, "train")
    views = PretrainViews(base, 32, in_chans=1, mean=(0.5,), std=(0.25,), seed=7)
    again = PretrainViews(base, 32, in_chans=1, mean=(0.5,), std=(0.25,), seed=7)
    x, label = views[2]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and label == int(base.targets[2])
    assert torch.equal(x, again[2][0]) and torch.equal(x, views[2][0])
    views.set_epoch(1)
    assert any(not torch.equal(views[i][0], again[i][0]) for i in range(6))
    other_seed = PretrainViews(base, 32, in_chans=1, mean=(0.5,), std=(0.25,), seed=8)
    assert any(not torch.equal(other_seed[i][0], again[i][0]) for i in range(6))
    # The whole image (scale 1, square) is a plain resize + normalize: the pixels are right.
    full = PretrainViews(base, 28, crop_scale=(1.0, 1.0), ratio=(1.0, 1.0), in_chans=1, mean=(0.5,), std=(0.25,))
    torch.testing.assert_close(full[0][0], (base[0][0].float() / 255 - 0.5) / 0.25)


def test_grayscale_and_rgb_channels_are_explicit(tmp_path):
    write_fmnist(tmp_path / "f")
    gray = FashionMNIST(tmp_path / "f", "train")
    three = PretrainViews(gray, 16, in_chans=3, mean=(0.5,), std=(0.25,))[0][0]
    assert three.shape == (3, 16, 16) and torch.equal(three[0], three[1]) and torch.equal(three[1], three[2])
    make_tree(tmp_path / "t")
    rgb = build_dataset(str(tmp_path / "t"), "train")
    assert PretrainViews(rgb, 16, in_chans=1)[0][0].shape == (1, 16, 16)
    assert eval_transform(16, in_chans=1)(rgb[0][0]).shape == (1, 16, 16)
    assert eval_transform(224, in_chans=3, mean=(0.5,), std=(0.25,))(gray[0][0]).shape == (3, 224, 224)
