"""Pretraining and evaluation transforms, on tensors, for RGB and grayscale data alike."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _channels(in_chans: int, mean: tuple[float, ...], std: tuple[float, ...]):
    """Match the data's channels to the encoder's: grayscale -> 3 channels is explicit."""
    steps = []
    if in_chans == 3 and len(mean) == 1:
        steps.append(v2.Grayscale(num_output_channels=3))
        mean, std = mean * 3, std * 3
    elif in_chans == 1 and len(mean) == 3:
        steps.append(v2.Grayscale(num_output_channels=1))
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    return steps, mean, std


class PretrainViews(Dataset):
    """Official I-JEPA pretraining view: RandomResizedCrop (scale `crop_scale`), normalize;
    fine-tuning adds a horizontal flip and, optionally, timm's RandAugment (`rand_augment`).

    Each sample's crop comes from a generator seeded by (seed, epoch, index), so views depend
    neither on worker scheduling nor on where a run resumed: `--resume` is exact. Written on
    tensors because torchvision's v2 pipeline costs ~4x more per 28x28 image here.
    """

    def __init__(
        self, base: Dataset, size: int, *, crop_scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3), in_chans: int = 3,
        mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
        horizontal_flip: bool = False, rand_augment: str | None = None, seed: int = 0, interpolation: str = "bilinear",
    ) -> None:
        pre, mean, std = _channels(in_chans, mean, std)
        self.pre = v2.Compose([v2.ToImage(), *pre])
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.base, self.size, self.seed, self.epoch = base, size, seed, 0
        self.crop_scale, self.log_ratio = crop_scale, (math.log(ratio[0]), math.log(ratio[1]))
        self.horizontal_flip = horizontal_flip
        self.rand_augment = RandAugment(rand_augment, size=size, mean=mean) if rand_augment else None
        self.interpolation = v2.InterpolationMode(interpolation)  # "bicubic": MAE's linear probe

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def _crop(self, g: torch.Generator, h: int, w: int) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop.get_params, drawn from `g`."""
        for _ in range(10):
            u = torch.rand(2, generator=g).tolist()
            area = h * w * (self.crop_scale[0] + u[0] * (self.crop_scale[1] - self.crop_scale[0]))
            ar = math.exp(self.log_ratio[0] + u[1] * (self.log_ratio[1] - self.log_ratio[0]))
            cw, ch = round(math.sqrt(area * ar)), round(math.sqrt(area / ar))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
                left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
                return top, left, ch, cw
        side = min(h, w)
        return (h - side) // 2, (w - side) // 2, side, side

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, label = self.base[i]
        img = self.pre(img)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i)
        top, left, h, w = self._crop(g, *img.shape[-2:])
        img = F.resized_crop(img, top, left, h, w, [self.size, self.size], interpolation=self.interpolation, antialias=True)
        if self.horizontal_flip and torch.rand(1, generator=g).item() < 0.5:
            img = F.horizontal_flip(img)
        if self.rand_augment is not None:
            img = self.rand_augment(img, g)
        return (img.float() / 255 - self.mean) / self.std, label


@contextmanager
def global_rngs(seed: int) -> Iterator[None]:
    """Python's and numpy's global generators seeded with `seed`, their states restored after."""
    py, npy = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


class RandAugment:
    """timm's RandAugment (`config` as MAE's `--aa`, e.g. rand-m9-mstd0.5-inc1) on a uint8 image
    [C, H, W] after `PretrainViews`' crop and flip (where MAE's timm pipeline has it), with the hyper-parameters timm's `create_transform` gives it (translations up to 45%
    of the side, fill = the data's mean, bicubic). timm draws from Python's and numpy's global
    generators: they are seeded from the view's generator for the call, so a view stays a
    function of (seed, epoch, index). Grayscale images go through PIL mode L, RGB through RGB."""

    def __init__(self, config: str, *, size: int, mean: tuple[float, ...]) -> None:
        from timm.data.auto_augment import rand_augment_transform

        fill = tuple(min(255, round(255 * m)) for m in mean)
        hparams = {"translate_const": int(size * 0.45), "img_mean": fill if len(fill) > 1 else fill[0], "interpolation": Image.BICUBIC}
        self.config, self.op = config, rand_augment_transform(config, hparams)

    def __call__(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        with global_rngs(int(torch.randint(2**31, (1,), generator=g))):
            return F.pil_to_tensor(self.op(F.to_pil_image(img)))


def eval_resize(size: int, resize_ratio: float = 256 / 224) -> int:
    """The short side `eval_transform` resizes to before its center crop of `size`: the crop
    itself for small images, `size` x 256/224 for large ones (the ImageNet convention)."""
    return size if size <= 64 else int(round(size * resize_ratio))


def eval_transform(
    size: int, *, in_chans: int = 3, mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD, resize_ratio: float = 256 / 224,
) -> v2.Compose:
    """Resize (by 256/224 for large images) + center crop + normalize."""
    pre, mean, std = _channels(in_chans, mean, std)
    return v2.Compose([
        v2.ToImage(), *pre, v2.Resize(eval_resize(size, resize_ratio), antialias=True), v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std),
    ])
