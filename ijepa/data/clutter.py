"""`fmnist-clutter:LEVEL`: Fashion-MNIST objects in clutter whose strength is one number.

A controlled family for the question "where does joint-embedding prediction beat
reconstruction?" (Van Assel et al. 2025: it wins when strong irrelevant features carry much
of the pixel variance). Each image is its Fashion-MNIST object, composited over distractors
that carry no label, all scaled by LEVEL in [0, 1]:

- a background cut from a natural photograph or terrain map shipped inside packages we
  install (scikit-learn's `china.jpg`, `flower.jpg`; matplotlib's `grace_hopper.jpg`,
  `Minduka_Present_Blue_Pack.png`, the Jacksboro fault and topobathy elevation maps), at a
  random place and scale, its contrast LEVEL x full range;
- `round(3 x LEVEL)` fragments of other Fashion-MNIST objects of the same split (any class),
  at LEVEL x their brightness;
- structured noise: a 7x7 Gaussian field upsampled to the canvas, sd 0.15 x LEVEL;
- the object itself on top (its pixels as premultiplied alpha: black is transparent), shrunk
  by up to 35% x LEVEL and moved anywhere its new size allows.

Level 0 is Fashion-MNIST bit for bit (every term vanishes and the object is not resampled;
tested), so Fashion-MNIST's records are its level-0 points. The canvas stays 28 x 28 grayscale
at every level: models, transforms and FLOPs are those of Fashion-MNIST. Splits are
Fashion-MNIST's (`train` / `val` / `test`, labels unchanged); each image is drawn from a
generator seeded by (`SEED`, source file, row), so it is the same in every process, and the
fragments of a split come from that split only (no train pixels in val or test).
"""

from __future__ import annotations

import contextlib
import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ijepa.atomic import atomic_write
from ijepa.data import fashion_mnist

SEED = 20261207  # fixed forever: changing it changes every image of every level
VERSION = "clutter-v1"  # bump with any change to the images (feature caches key on it)
SIDE = 28
MAX_FRAGMENTS = 3
NOISE_SD = 0.15
MAX_SHRINK = 0.35


def parse_level(text: str) -> float:
    """LEVEL of `fmnist-clutter:LEVEL`: a number in [0, 1]."""
    try:
        level = float(text)
    except ValueError:
        raise ValueError(f"fmnist-clutter:{text}: LEVEL must be a number in [0, 1]") from None
    if not 0.0 <= level <= 1.0:  # also refuses nan
        raise ValueError(f"fmnist-clutter:{text}: LEVEL must be in [0, 1]")
    return level


def _gray(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114])
    a = a - a.min()
    return (a / a.max()).astype(np.float32)


@lru_cache(maxsize=1)
def backgrounds() -> tuple[np.ndarray, ...]:
    """The photographs and terrain maps backgrounds are cut from, grayscale in [0, 1]."""
    import matplotlib.cbook
    import sklearn.datasets

    photos = [np.asarray(im) for im in sklearn.datasets.load_sample_images().images]
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        with Image.open(matplotlib.cbook.get_sample_data(name, asfileobj=False)) as im:
            photos.append(np.asarray(im.convert("RGB")))
    maps = []
    for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        with np.load(matplotlib.cbook.get_sample_data(name, asfileobj=False)) as z:
            maps.append(np.asarray(z[key], dtype=np.float64))
    return tuple(_gray(a) for a in photos + maps)


def sources_digest() -> str:
    """Digest of the background bank: a changed package image changes every feature cache key."""
    h = hashlib.sha256(VERSION.encode())
    for a in backgrounds():
        h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR), dtype=np.float64)


def _background(rng: np.random.Generator) -> np.ndarray:
    bank = backgrounds()
    src = bank[rng.integers(len(bank))]
    side = int(rng.integers(SIDE, min(src.shape) // 2 + 1))
    top, left = int(rng.integers(src.shape[0] - side + 1)), int(rng.integers(src.shape[1] - side + 1))
    return _resize(src[top : top + side, left : left + side], SIDE, SIDE)


def _over(canvas: np.ndarray, src: np.ndarray, top: int, left: int) -> None:
    """`src` (premultiplied: its brightness is its opacity, x3, capped at 1) over `canvas`, in place."""
    h, w = src.shape
    region = canvas[top : top + h, left : left + w]
    region[:] = src + region * (1.0 - np.minimum(1.0, 3.0 * src))


def compose(obj: np.ndarray, others: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """One cluttered image: `obj` uint8 [28, 28] over distractors (fragments cut from `others`,
    uint8 [K, 28, 28]) at `level`; uint8 [28, 28]."""
    x = obj.astype(np.float64) / 255
    canvas = level * _background(rng)
    for other in others[: round(MAX_FRAGMENTS * level)]:
        fh, fw = (int(v) for v in rng.integers(12, 21, size=2))
        ft, fl = int(rng.integers(SIDE - fh + 1)), int(rng.integers(SIDE - fw + 1))
        frag = level * other[ft : ft + fh, fl : fl + fw].astype(np.float64) / 255
        _over(canvas, frag, int(rng.integers(SIDE - fh + 1)), int(rng.integers(SIDE - fw + 1)))
    field = _resize(rng.standard_normal((7, 7)), SIDE, SIDE)
    canvas = canvas + NOISE_SD * level * field
    side = SIDE - int(round(SIDE * MAX_SHRINK * level * rng.random()))
    if side != SIDE:
        x = np.clip(_resize(x, side, side), 0.0, 1.0)
    _over(canvas, x, int(rng.integers(SIDE - side + 1)), int(rng.integers(SIDE - side + 1)))
    return np.rint(np.clip(canvas, 0.0, 1.0) * 255).astype(np.uint8)


def clutter_images(images: np.ndarray, rows: np.ndarray, stem: str, level: float) -> np.ndarray:
    """Every image of one split at `level`: uint8 [N, 28, 28]. `rows` are the images' rows in
    the source file `stem` (what seeds each image, so an image does not depend on its split's
    other rows' order); fragments come from this split's own images."""
    if level == 0.0:
        return images.copy()
    out = np.empty_like(images)
    file_id = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:4], "big")
    for i, row in enumerate(rows):
        rng = np.random.default_rng([SEED, file_id, int(row)])
        picks = rng.integers(len(images), size=MAX_FRAGMENTS)
        out[i] = compose(images[i], images[picks], level, rng)
    return out


class FashionMNISTClutter(fashion_mnist.FashionMNIST):
    """Fashion-MNIST's split with every image in clutter of strength `level`; same labels."""

    def __init__(self, root: str | Path = fashion_mnist.DEFAULT_ROOT, split: str = "train", transform=None, *, level: float) -> None:
        super().__init__(root, split, transform)
        self.level = level
        self.images = torch.from_numpy(cluttered(str(Path(root).resolve()), split, level)).unsqueeze(1)


CACHE_DIR = Path(".cache/data")  # generated splits, keyed by everything they depend on


def _cache_path(ds: fashion_mnist.FashionMNIST, level: float) -> Path:
    """Where a generated split is kept: keyed by the generator's version and seed, the
    background bank, the level, the split and the content of the Fashion-MNIST images it is
    made from (a digest of their pixels and labels, so an IDX file rewritten in place with
    its size and mtime kept is a new key)."""
    content = hashlib.sha256(ds.images.numpy().tobytes() + ds.targets.numpy().tobytes()).hexdigest()
    key = hashlib.sha256(repr((VERSION, SEED, sources_digest(), level, ds.split, content)).encode()).hexdigest()[:20]
    return CACHE_DIR / f"fmnist-clutter-{level:g}-{ds.split}-{key}.npy"


@lru_cache(maxsize=4)
def cluttered(root: str, split: str, level: float) -> np.ndarray:
    """One split at one level: generated once (about 15 s for the 50,000 train images) and
    kept on disk, read back by later processes; a cache that cannot be read is regenerated.
    `trainval` is train's and val's images put back in their source rows."""
    if split == "trainval":
        parts = [fashion_mnist.FashionMNIST(root, part) for part in ("train", "val")]
        out = np.empty((sum(len(ds) for ds in parts), SIDE, SIDE), dtype=np.uint8)
        for ds in parts:
            out[ds.rows] = cluttered(root, ds.split, level)
        return out
    ds = fashion_mnist.FashionMNIST(root, split)
    if level == 0.0:
        return _generate(ds, level)
    path = _cache_path(ds, level)
    with contextlib.suppress(OSError, ValueError):
        return np.load(path, allow_pickle=False)
    out = _generate(ds, level)
    with contextlib.suppress(OSError):  # a read-only or full disk only costs the next process the generation
        atomic_write(path, lambda f: np.save(f, out, allow_pickle=False), binary=True)
    return out


def _generate(ds: fashion_mnist.FashionMNIST, level: float) -> np.ndarray:
    return clutter_images(ds.images[:, 0].numpy(), ds.rows, "t10k" if ds.split == "test" else "train", level)


def train_stats(root: str | Path, level: float) -> tuple[tuple[float], tuple[float]]:
    """(mean, std) of the level's train split in [0, 1]: the level's own normalisation."""
    x = cluttered(str(Path(root).resolve()), "train", level).astype(np.float64) / 255
    return (round(float(x.mean()), 4),), (round(float(x.std()), 4),)
