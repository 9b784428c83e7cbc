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
fragments of a split come from that split only (no train pixels in val or test); `ijepa.data.generated`
keeps the splits.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
from PIL import Image

from ijepa.data.generated import SIDE, Generator, image_rng

SEED = 20261207  # fixed forever: changing it changes every image of every level
VERSION = "clutter-v1"  # bump with any change to the images (feature caches key on it)
MAX_FRAGMENTS = 3
NOISE_SD = 0.15
MAX_SHRINK = 0.35


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
    for i, row in enumerate(rows):
        rng = image_rng(SEED, stem, row)
        picks = rng.integers(len(images), size=MAX_FRAGMENTS)
        out[i] = compose(images[i], images[picks], level, rng)
    return out


def _key() -> tuple:
    return VERSION, SEED, sources_digest()


def _salt(level: float) -> str:
    return f"clutter={VERSION}:{level!r}:{sources_digest()}"


GENERATOR = Generator("fmnist-clutter", clutter_images, _key, _salt)
