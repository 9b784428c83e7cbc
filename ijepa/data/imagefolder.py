"""ImageNet-style ImageFolder trees with errors that name the offending path."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder


def _load_rgb(path: str) -> Image.Image:
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: unreadable image ({e.__class__.__name__}: {e})") from None


def image_folder(root: str | Path, split: str, transform=None) -> ImageFolder:
    """`root/split/<class>/<image>`; a missing or empty tree is one clear error."""
    path = Path(root) / split
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory (expected an ImageFolder tree with class subfolders)")
    try:
        return ImageFolder(str(path), transform=transform, loader=_load_rgb)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no images found in class subfolders ({e})") from None
