"""Image + dense-target transforms shared by the dense evals.

Every dense target is resized with the image: class maps and depth by nearest neighbour
(no invented labels, no depths blended with invalid zeros), density maps by "mass"
(bilinear, then rescaled so the count is unchanged).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ijepa.data.files import open_image
from ijepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD

MODES = ("nearest", "bilinear", "mass")


def read_rgb(path: Path) -> torch.Tensor:
    """uint8 [3, H, W]."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: image not found")
    return torch.from_numpy(np.array(open_image(path))).permute(2, 0, 1).contiguous()


def read_array(path: Path, dtype: type) -> np.ndarray:
    """A class-id or depth PNG as stored (palette indices, 16-bit values), as `dtype`."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    return np.array(open_image(path, None), dtype=dtype)


def check_size(path: Path, target: torch.Tensor, image: torch.Tensor, what: str) -> None:
    """A dense target must cover its image pixel for pixel: resizing one of another size
    would silently misalign every label."""
    if tuple(target.shape[-2:]) != tuple(image.shape[-2:]):
        (h, w), (H, W) = target.shape[-2:], image.shape[-2:]
        raise ValueError(f"{path}: {what} is {w}x{h}, its image is {W}x{H} (expected the same size)")


def normalize(images: torch.Tensor, in_chans: int = 3) -> torch.Tensor:
    """uint8 RGB [..., 3, H, W] -> ImageNet-normalised float; grey (mean) for 1-channel encoders."""
    x = images.float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    x = (x - mean) / std
    return x.mean(dim=-3, keepdim=True) if in_chans == 1 else x


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize a [C, H, W] (any dtype) tensor; `mass` keeps the sum (density maps)."""
    if mode not in MODES:
        raise ValueError(f"resize mode must be one of {MODES}, got {mode!r}")
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = x[None].float()
    if mode == "nearest":
        return F.interpolate(y, size=size, mode="nearest")[0].to(x.dtype)
    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)[0]
    if mode == "mass":
        total, new = x.float().sum(), y.sum()
        y = y * (total / new) if new > 0 else y
    return y.round().clamp(0, 255).to(x.dtype) if x.dtype == torch.uint8 else y.to(x.dtype)


def pad_to(x: torch.Tensor, h: int, w: int, value: float) -> torch.Tensor:
    """Pad [C, H, W] on the bottom/right to at least h x w."""
    ph, pw = max(0, h - x.shape[-2]), max(0, w - x.shape[-1])
    return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x


def random_scale_crop(
    image: torch.Tensor,
    fields: dict[str, tuple[torch.Tensor, str, float]],
    *,
    crop: int,
    short_side: int | None,
    scale_range: tuple[float, float] = (1.0, 1.0),
    flip: bool = True,
    rng: random.Random,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """mmseg-style train transform: rescale (short side * a random ratio), pad, random crop,
    horizontal flip. `fields` maps name -> ([C, H, W] target, resize mode, pad value)."""
    H, W = image.shape[-2:]
    ratio = rng.uniform(*scale_range)
    s = (short_side or min(H, W)) * ratio / min(H, W)
    size = (max(1, round(H * s)), max(1, round(W * s)))
    image = pad_to(resize(image, size, "bilinear"), crop, crop, 0)
    out = {k: pad_to(resize(t, size, m), crop, crop, pad) for k, (t, m, pad) in fields.items()}
    y = rng.randint(0, image.shape[-2] - crop)
    x = rng.randint(0, image.shape[-1] - crop)
    do_flip = flip and rng.random() < 0.5
    def cut(t: torch.Tensor) -> torch.Tensor:
        t = t[..., y : y + crop, x : x + crop]
        return t.flip(-1) if do_flip else t
    return cut(image), {k: cut(t) for k, t in out.items()}


def short_side_size(H: int, W: int, short: int, multiple: int = 1) -> tuple[int, int]:
    """(h, w) with the short side `short`, the aspect kept, both rounded to `multiple`."""
    s = short / min(H, W)
    return tuple(max(multiple, round(v * s / multiple) * multiple) for v in (H, W))  # type: ignore[return-value]


def pad_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad [B, C, H, W] on the bottom/right to multiples of `multiple` (the patch)."""
    H, W = images.shape[-2:]
    return F.pad(images, (0, -W % multiple, 0, -H % multiple))


def stack(items: list[dict]) -> dict:
    """Collate dicts whose tensors share shapes; other values become lists."""
    return {
        k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else [it[k] for it in items]
        for k in items[0]
    }
