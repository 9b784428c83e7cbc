"""ImageNet-style ImageFolder trees with errors that name the offending path."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from ijepa.data.files import open_image


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
