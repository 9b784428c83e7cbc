"""Fashion-MNIST from its IDX files (Debian's `dataset-fashion-mnist` by default)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = (0.2860,), (0.3530,)
_FILES = {"train": "train", "val": "t10k", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array, validating its header."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (install Debian's dataset-fashion-mnist or pass --data)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # truncated or not-really-gzip files
        raise ValueError(f"{path}: unreadable ({e.__class__.__name__}: {e})") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated, header says {shape} but {body.size} bytes follow")
    return body.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"{root / stem}[.gz]: not found (expected Fashion-MNIST IDX files in {root})")


class FashionMNIST(Dataset):
    """Images as [1, 28, 28] uint8 tensors, so tensor transforms need no PIL round trip."""

    classes = CLASSES

    def __init__(self, root: str | Path = DEFAULT_ROOT, split: str = "train", transform=None) -> None:
        if split not in _FILES:
            raise ValueError(f"Fashion-MNIST split {split!r}: expected train or val")
        root = Path(root)
        stem = _FILES[split]
        self.images = torch.from_numpy(read_idx(_find(root, f"{stem}-images-idx3-ubyte")).copy()).unsqueeze(1)
        self.targets = torch.from_numpy(read_idx(_find(root, f"{stem}-labels-idx1-ubyte")).astype(np.int64))
        if len(self.images) != len(self.targets):
            raise ValueError(f"{root}: {len(self.images)} images but {len(self.targets)} labels for {split}")
        self.transform = transform
        self.root, self.split = root, split

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[i])
