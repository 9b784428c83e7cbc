"""Fashion-MNIST splits made by a family's generator at one level (`ijepa.families`): generated
once, kept on disk, and normalised by their own train statistics.

What the families share: each image is drawn from a generator seeded by (the family's seed,
source file, row), so it is the same in every process and epoch and does not depend on its
split's other rows; level 0 is Fashion-MNIST's bytes; `trainval` is train's and val's images
put back in their source rows; splits are Fashion-MNIST's, labels unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ijepa.atomic import atomic_write
from ijepa.data import fashion_mnist

CACHE_DIR = Path(".cache/data")  # generated splits, keyed by everything they depend on
SIDE = 28


@dataclass(frozen=True)
class Generator:
    """How one family makes a split's images, and what they depend on besides the level."""

    family: str  # its name in `ijepa.families.FAMILIES`
    make: Callable[[np.ndarray, np.ndarray, str, float], np.ndarray]  # (uint8 [N, 28, 28], source rows, source file, level)
    key: Callable[[], tuple]  # (version, seed, sources...): the generated-split cache key
    salt: Callable[[float], str]  # what feature caches key on for a level


def image_rng(seed: int, stem: str, row: int) -> np.random.Generator:
    """The generator of one image: seeded by the family's seed, its source file and row."""
    file_id = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:4], "big")
    return np.random.default_rng([seed, file_id, int(row)])


class GeneratedFashionMNIST(fashion_mnist.FashionMNIST):
    """Fashion-MNIST's split with every image made by `generator` at `level`; same labels."""

    def __init__(self, root: str | Path = fashion_mnist.DEFAULT_ROOT, split: str = "train", transform=None, *,
                 generator: Generator, level: float) -> None:
        super().__init__(root, split, transform)
        self.generator, self.level = generator, level
        self.images = torch.from_numpy(generated(generator, str(Path(root).resolve()), split, level)).unsqueeze(1)


def cache_path(gen: Generator, ds: fashion_mnist.FashionMNIST, level: float) -> Path:
    """Where a generated split is kept: keyed by the generator (version, seed, sources), the
    level, the split and the content of the Fashion-MNIST images it is made from (a digest of
    their pixels and labels, so an IDX file rewritten in place with its size and mtime kept is
    a new key)."""
    content = hashlib.sha256(ds.images.numpy().tobytes() + ds.targets.numpy().tobytes()).hexdigest()
    key = hashlib.sha256(repr((*gen.key(), level, ds.split, content)).encode()).hexdigest()[:20]
    return CACHE_DIR / f"{gen.family}-{level:g}-{ds.split}-{key}.npy"


@lru_cache(maxsize=8)
def generated(gen: Generator, root: str, split: str, level: float) -> np.ndarray:
    """One split at one level, uint8 [N, 28, 28]: generated once and kept on disk, read back by
    later processes; a cache that cannot be read is regenerated."""
    if split == "trainval":
        parts = [fashion_mnist.FashionMNIST(root, part) for part in ("train", "val")]
        out = np.empty((sum(len(ds) for ds in parts), SIDE, SIDE), dtype=np.uint8)
        for ds in parts:
            out[ds.rows] = generated(gen, root, ds.split, level)
        return out
    ds = fashion_mnist.FashionMNIST(root, split)
    if level == 0.0:
        return _generate(gen, ds, level)
    path = cache_path(gen, ds, level)
    with contextlib.suppress(OSError, ValueError):
        return np.load(path, allow_pickle=False)
    out = _generate(gen, ds, level)
    with contextlib.suppress(OSError):  # a read-only or full disk only costs the next process the generation
        atomic_write(path, lambda f: np.save(f, out, allow_pickle=False), binary=True)
    return out


def _generate(gen: Generator, ds: fashion_mnist.FashionMNIST, level: float) -> np.ndarray:
    images = ds.images[:, 0].numpy()
    return images.copy() if level == 0.0 else gen.make(images, ds.rows, "t10k" if ds.split == "test" else "train", level)


def train_stats(gen: Generator, root: str | Path, level: float) -> tuple[tuple[float], tuple[float]]:
    """(mean, std) of the level's train split in [0, 1]: the level's own normalisation."""
    x = generated(gen, str(Path(root).resolve()), "train", level).astype(np.float64) / 255
    return (round(float(x.mean()), 4),), (round(float(x.std()), 4),)
