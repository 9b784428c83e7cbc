"""ImageNet-style ImageFolder trees with errors that name the offending path."""

from __future__ import annotations

import math
import os
from pathlib import Path

from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from ijepa.data.files import IMAGE_ERRORS, open_image

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def image_folder(root: str | Path, split: str, transform=None) -> ImageFolder:
    """`root/split/<class>/<image>`; a missing or empty tree is one clear error."""
    path = Path(root) / split
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory (expected an ImageFolder tree with class subfolders)")
    refuse_symlink_loops(path)
    try:
        return ImageFolder(str(path), transform=transform, loader=open_image)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no images found in class subfolders ({e})") from None


def refuse_symlink_loops(root: Path) -> None:
    """torchvision follows folder symlinks, so a link to a folder above it (`loop -> .`) reads
    the same images again at every depth until the path is too long: refuse it, naming the
    link. One walk over the folders (no image is opened); only symlinked folders are resolved."""
    above: dict[str, tuple[str, ...]] = {}  # walked folder -> the real folders it sits in, itself included
    for folder, subdirs, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        chain = above.pop(folder, ()) + (real,)
        for name in subdirs:
            sub = os.path.join(folder, name)
            if os.path.islink(sub):
                target = os.path.realpath(sub)
                if any(c == target or c.startswith(target + os.sep) for c in chain):
                    raise ValueError(f"{sub}: symlink loop (it points to {target}, a folder it sits in); "
                                     "remove it, or link to a copy")
            above[sub] = chain


def check_classes(root: str | Path, split: str, classes: list[str], reference: str = "train") -> None:
    """Labels are class-folder indices, so a split whose class folders differ from
    `reference`'s would shift every label after the difference: refuse it, naming the class."""
    ref_dir = Path(root) / reference
    if split == reference or not ref_dir.is_dir():
        return
    ref = find_classes(str(ref_dir))[0]
    if classes == ref:
        return
    missing, extra = sorted(set(ref) - set(classes)), sorted(set(classes) - set(ref))
    what = [f"lacks class folder(s) {', '.join(missing[:5])} of {reference}/"] if missing else []
    what += [f"has class folder(s) {', '.join(extra[:5])} that {reference}/ lacks"] if extra else []
    raise ValueError(f"{Path(root) / split}: {'; '.join(what)} ({len(classes)} classes vs {len(ref)}): "
                     "labels would not line up; give every split the same class folders")


def sample_images(split_dir: Path, n: int = 64) -> list[Path]:
    """Up to `n` images spread over the class folders (the first few of each picked class,
    in ImageFolder's order), found without listing the whole tree."""
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: not a directory (expected an ImageFolder tree with class subfolders)")
    classes = sorted(d for d in split_dir.iterdir() if d.is_dir())
    picked = classes[:: max(1, len(classes) // n)][:n]
    per_class, out = math.ceil(n / max(1, len(picked))), []
    for d in picked:
        names = sorted(f for f in d.iterdir() if f.name.lower().endswith(IMG_EXTENSIONS) and f.is_file())
        out += names[:per_class]
    return out[:n]


def file_channels(path: Path) -> int | None:
    """1 for a grayscale file (a gray mode, or a palette of grays), else 3, from its header;
    None if it does not open (the loader names it when it reaches it)."""
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA"):
                pal = im.getpalette() or []
                gray = all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3))
            else:
                gray = im.mode in GRAY_MODES
    except IMAGE_ERRORS:
        return None
    return 1 if gray else 3


def folder_channels(split_dir: str | Path, n: int = 64) -> tuple[int, Path]:
    """The channels of a split's images, from up to `n` of them: 3 if any is colour (a gray
    one is then read as RGB, as ImageFolder does), else 1; and a file that shows it."""
    images = sample_images(Path(split_dir), n)
    channels = {p: file_channels(p) for p in images}
    if not any(channels.values()):
        raise FileNotFoundError(f"{split_dir}: no readable images found in class subfolders (expected an ImageFolder tree)")
    return max((c, p) for p, c in channels.items() if c)
