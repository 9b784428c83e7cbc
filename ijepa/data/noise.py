"""`fmnist-noise:LEVEL`: Fashion-MNIST under i.i.d. per-pixel Gaussian noise of sd LEVEL x NOISE_MAX.

The crossover's second axis (issue 37). Clutter's distractors (`ijepa.data.clutter`) are
predictable from their surroundings, so a latent predictor can learn them as well as a pixel
decoder can; i.i.d. pixel noise is predictable by neither, but MAE's pixel targets carry it
(an irreducible loss) while I-JEPA's latent targets need not.

Matched variance: at level 1 the noise carries the share of the pixel variance that clutter
level 1's distractors carry, the share being 1 - corr(image, clean object)^2 over every pixel
(the variance the object does not explain; for independent noise, var(noise) / var(image)).
Over 2,000 train images (`benchmarks/noise_share.py`) it is 0.862 at clutter level 1 and at
noise sd 0.822, so NOISE_MAX = 0.82 (in [0, 1] pixel units; level 0.5: sd 0.41). The literal
var(image - object alone) / var(image) is 1.55 for clutter level 1, no share: the object
occludes the distractors under it, so the two are anti-correlated.

Each pixel gets `level x NOISE_MAX x z`, z standard normal, then the image is clipped to
[0, 1] and rounded to uint8: the clipping is part of the image (on Fashion-MNIST's black
background the negative half is cut, so the noise there brightens). z is drawn once per image
from a generator seeded by (`SEED`, source file, row): the same noise in every process and
epoch, and the same z at every level (levels differ by the scale only). Level 0 is
Fashion-MNIST bit for bit; splits, labels and canvas are Fashion-MNIST's
(`ijepa.data.generated`).
"""

from __future__ import annotations

import numpy as np

from ijepa.data.generated import Generator, image_rng

SEED = 20261208  # fixed forever: changing it changes every image of every level
VERSION = "noise-v1"  # bump with any change to the images (feature caches key on it)
NOISE_MAX = 0.82  # sd at level 1, in [0, 1] pixel units: clutter level 1's variance share (module docstring)


def noise_images(images: np.ndarray, rows: np.ndarray, stem: str, level: float) -> np.ndarray:
    """Every image of one split at `level`: uint8 [N, 28, 28]; `rows` (the images' rows in the
    source file `stem`) seed each image's noise."""
    if level == 0.0:
        return images.copy()
    out = np.empty_like(images)
    sd = level * NOISE_MAX
    for i, row in enumerate(rows):
        z = image_rng(SEED, stem, row).standard_normal(images.shape[1:])
        out[i] = np.rint(np.clip(images[i] / 255 + sd * z, 0.0, 1.0) * 255)
    return out


def _key() -> tuple:
    return VERSION, SEED, NOISE_MAX


def _salt(level: float) -> str:
    return f"noise={VERSION}:{level!r}:{NOISE_MAX!r}"


GENERATOR = Generator("fmnist-noise", noise_images, _key, _salt)
