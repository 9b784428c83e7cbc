"""Image sources for the page: Fashion-MNIST, photos shipped inside installed packages, a
folder, uploads. All become uint8 tensors [C, H, W] (C = 1 or 3) so one path prepares them.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ijepa.data import build_dataset
from ijepa.data.fashion_mnist import CLASSES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Photos that ship with packages this project installs: (package, path inside it).
PACKAGE_PHOTOS = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)
MAX_SIDE = 512  # larger photos are shrunk on load: the model sees at most a few hundred pixels
# Larger images are refused from their header, before any pixel is decoded: a PNG of a few
# KB can claim billions of pixels (a "decompression bomb"), and PIL's own cap is 179 M.
MAX_PIXELS = 40_000_000


@dataclass
class ImageItem:
    id: str
    name: str
    source: str  # "fashion-mnist" | "samples" | "folder" | "upload"
    image: torch.Tensor  # uint8 [C, H, W]


def _from_pil(img: Image.Image) -> torch.Tensor:
    img = img.convert("L") if img.mode in ("L", "I;16", "I", "1") else img.convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    return TF.pil_to_tensor(img)


class ImageTooLarge(ValueError):
    """An image with more pixels than `MAX_PIXELS` (the server answers 413)."""


def _check_pixels(size: tuple[int, int], name: str) -> None:
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageTooLarge(f"{name}: {w}x{h} pixels is too large (expected at most {MAX_PIXELS // 10**6} megapixels)")


def decode_image(data: bytes, name: str = "upload") -> torch.Tensor:
    """Bytes of any image PIL reads -> uint8 [C, H, W]; ValueError naming `name` otherwise.

    Hostile bytes make PIL raise many kinds of error (OSError, EOFError, struct.error, ...):
    each is the same one-line "not a readable image".
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_pixels refuses those
            with Image.open(io.BytesIO(data)) as img:
                _check_pixels(img.size, name)
                return _from_pil(img)
    except ImageTooLarge:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"{name}: too many pixels (expected at most {MAX_PIXELS // 10**6} megapixels)") from None
    except Exception as e:  # any kind: see the docstring
        raise ValueError(f"{name}: not a readable image ({e.__class__.__name__})") from None


def fashion_mnist_items(n: int = 48, root: str | Path | None = None) -> list[ImageItem]:
    """The first n test-split images (5 per class come early, so the gallery has all classes)."""
    ds = build_dataset(f"fashion-mnist:{root}" if root else "fashion-mnist", "val")
    items = []
    for i in range(min(n, len(ds))):
        image, label = ds[i]
        items.append(ImageItem(f"fmnist-{i}", f"{CLASSES[label]} #{i}", "fashion-mnist", image))
    return items


def package_photo_paths() -> list[Path]:
    """Paths of the sample photos found among installed packages (found without importing them)."""
    out = []
    for package, rel in PACKAGE_PHOTOS:
        spec = importlib.util.find_spec(package)
        for base in (spec.submodule_search_locations or []) if spec else []:
            if (Path(base) / rel).is_file():
                out.append(Path(base) / rel)
                break
    return out


def sample_photo_items() -> list[ImageItem]:
    items = []
    for i, path in enumerate(package_photo_paths()):
        with Image.open(path) as img:
            items.append(ImageItem(f"sample-{i}", path.name, "samples", _from_pil(img)))
    return items


def folder_items(root: str | Path, *, limit: int = 256) -> list[ImageItem]:
    """Images under `root` (recursively, sorted); unreadable files are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    items = []
    for p in paths:
        try:
            image = decode_image(p.read_bytes(), str(p))
        except ValueError:
            continue
        items.append(ImageItem(f"folder-{len(items)}", str(p.relative_to(root)), "folder", image))
        if len(items) == limit:
            break
    if not items:
        raise ValueError(f"{root}: no readable images (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    return items


def square_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` and centre-crop: what the model and the page both see."""
    image = TF.resize(image, size, antialias=True)
    return TF.center_crop(image, [size, size])


def to_model_input(
    crop: torch.Tensor, *, in_chans: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 crop [C, H, W] -> normalised float [in_chans, H, W] (grayscale <-> RGB made explicit)."""
    if crop.shape[0] == 3 and in_chans == 1:
        crop = TF.rgb_to_grayscale(crop, num_output_channels=1)
    elif crop.shape[0] == 1 and in_chans == 3:
        crop = crop.expand(3, -1, -1)
    if len(mean) != in_chans:
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    x = crop.float() / 255
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def to_rgb(image: torch.Tensor) -> torch.Tensor:
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image
