"""The variance share behind `ijepa.data.noise.NOISE_MAX` (issue 37): how much of the pixel
variance clutter level 1's distractors carry, and the noise sd that carries as much.

The share is 1 - corr(image, object alone)^2: the part of the pixel variance the clean object
does not explain (linearly), pooled over every pixel of the first N train images (default
2,000), in [0, 1]. For noise added independently of the image it is var(noise) / var(image).
The literal var(image - object alone) / var(image) is no share for clutter: the object
occludes what lies under it, so object and distractors are anti-correlated and the ratio is
1.55 at level 1. The object alone is the same draw of `clutter.compose` with every distractor
zeroed (background, fragments and field still consume their random numbers, so the object
lands at the same size and place). The noise sd is found by bisection at level 1.

    .venv/bin/python benchmarks/noise_share.py
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np

from ijepa.data import clutter, noise
from ijepa.data.fashion_mnist import DEFAULT_ROOT, FashionMNIST


def unexplained(image: np.ndarray, clean: np.ndarray) -> float:
    """1 - corr(image, clean)^2 over every pixel: the variance share `clean` does not explain."""
    return float(1 - np.corrcoef(image.ravel().astype(np.float64), clean.ravel().astype(np.float64))[0, 1] ** 2)


def clutter_share(images: np.ndarray, rows: np.ndarray) -> float:
    """The share of clutter level 1's pixel variance its object alone does not explain."""
    full = clutter.clutter_images(images, rows, "train", 1.0)
    background = clutter._background
    with (mock.patch.object(clutter, "_background", lambda rng: 0.0 * background(rng)), mock.patch.object(clutter, "NOISE_SD", 0.0)):
        alone = np.stack([clutter.compose(images[i], np.zeros_like(images[:3]), 1.0, _rng(rows[i], len(images))) for i in range(len(images))])
    return unexplained(full, alone)


def _rng(row: int, n: int) -> np.random.Generator:
    """Image `row`'s clutter generator past its fragment picks among `n` images (as `clutter_images` draws them)."""
    rng = clutter.image_rng(clutter.SEED, "train", row)
    rng.integers(n, size=clutter.MAX_FRAGMENTS)
    return rng


def noise_share(images: np.ndarray, rows: np.ndarray, sd: float) -> float:
    """The share of the noise family's pixel variance at level 1 with NOISE_MAX = sd that the
    clean image does not explain."""
    with mock.patch.object(noise, "NOISE_MAX", sd):
        return unexplained(noise.noise_images(images, rows, "train", 1.0), images)


def matching_sd(images: np.ndarray, rows: np.ndarray, share: float) -> float:
    """The sd whose noise share is `share` (bisection: the share grows with the sd)."""
    lo, hi = 0.0, 2.0
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if noise_share(images, rows, mid) < share else (lo, mid)
    return (lo + hi) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="train images measured")
    n = ap.parse_args().n
    ds = FashionMNIST(DEFAULT_ROOT, "train")
    images, rows = ds.images[:n, 0].numpy(), ds.rows[:n]
    share = clutter_share(images, rows)
    sd = matching_sd(images, rows, share)
    print(f"clutter level 1: distractors carry {share:.3f} of the pixel variance ({n} train images)")
    print(f"noise sd {sd:.3f} carries {noise_share(images, rows, sd):.3f}; NOISE_MAX = {noise.NOISE_MAX}")


if __name__ == "__main__":
    main()
