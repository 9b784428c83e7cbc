"""Fashion-MNIST from its IDX files (Debian's `dataset-fashion-mnist` by default).

Three splits, so that nothing is ever chosen on the number we report:
- `train`: 50,000 images of the official train file (pretraining and probe fitting);
- `val`: the other 10,000 of the official train file, 1,000 per class, drawn once by a
  fixed seed (`VAL_SEED`; `val_rows`): recipes, sweeps and every other choice are scored here;
- `test`: the official t10k file, touched once per finalised choice.
`trainval` is the whole official train file (60,000), for a final refit before `test`.
"""

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
SPLITS = ("train", "val", "test", "trainval")
VAL_FRACTION = 1 / 6  # of each class: 1,000 of the official 6,000
VAL_SEED = 20230117  # fixed forever: changing it changes every val number


LAYOUTS = {"images": (3, "[N, rows, cols]"), "labels": (1, "[N]")}  # what each IDX file of a split holds


def read_idx(path: Path, what: str | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array, validating its header.

    `what` ("images" or "labels") is the layout expected: the labels file passed as the images
    (or the other way round) and an images file of no image are one line naming the file."""
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
    if what is not None and ndim != LAYOUTS[what][0]:
        other = "labels" if what == "images" else "images"
        raise ValueError(f"{path}: IDX header says {ndim} dimension(s); expected {what} {LAYOUTS[what][1]} "
                         f"({LAYOUTS[what][0]} dimension(s)): is it the {other} file?")
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated, the header of {ndim} dimension(s) is cut short")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated, header says {shape} but {body.size} bytes follow")
    if what == "images" and 0 in shape:
        raise ValueError(f"{path}: holds no images (header says {shape})")
    return body.reshape(shape)


def read_labels(path: Path) -> np.ndarray:
    """The labels file as int64, each checked against the class count: a label outside it
    would be scored as a class no head has, and print a number."""
    labels = read_idx(path, "labels").astype(np.int64)
    bad = np.flatnonzero(labels >= len(CLASSES))  # uint8 on disk: never negative
    if bad.size:
        raise ValueError(f"{path}: label {labels[bad[0]]} at row {bad[0]} is outside 0..{len(CLASSES) - 1} "
                         f"(Fashion-MNIST has {len(CLASSES)} classes; {bad.size} such label(s))")
    return labels


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"{root / stem}[.gz]: not found (expected Fashion-MNIST IDX files in {root})")


def val_rows(labels: np.ndarray) -> np.ndarray:
    """Rows of the train file held out as `val`: `VAL_FRACTION` of each class, sorted.

    A per-class permutation from one fixed seed (numpy's PCG64 streams are stable across
    versions and platforms), so every machine holds out the same images.
    """
    rng = np.random.default_rng(VAL_SEED)
    picks = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        picks.append(rng.permutation(rows)[: round(len(rows) * VAL_FRACTION)])
    return np.sort(np.concatenate(picks))


class FashionMNIST(Dataset):
    """Images as [1, 28, 28] uint8 tensors, so tensor transforms need no PIL round trip."""

    classes = CLASSES

    def __init__(self, root: str | Path = DEFAULT_ROOT, split: str = "train", transform=None) -> None:
        if split not in SPLITS:
            raise ValueError(f"Fashion-MNIST split {split!r}: expected one of {', '.join(SPLITS)}")
        root = Path(root)
        stem = "t10k" if split == "test" else "train"
        images = read_idx(_find(root, f"{stem}-images-idx3-ubyte"), "images")
        labels = read_labels(_find(root, f"{stem}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise ValueError(f"{root}: {len(images)} images but {len(labels)} labels in {stem}")
        keep = np.arange(len(labels))
        if split in ("train", "val"):
            held = val_rows(labels)
            keep = held if split == "val" else np.setdiff1d(keep, held)
            images, labels = images[keep], labels[keep]
        self.rows = keep  # each image's row in its source IDX file
        self.images = torch.from_numpy(images.copy()).unsqueeze(1)
        self.targets = torch.from_numpy(labels)
        self.transform = transform
        self.root, self.split = root, split

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[i])
