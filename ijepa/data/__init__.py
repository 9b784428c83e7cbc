"""One dataset factory for pretraining and every classification eval.

`data` is either `fashion-mnist` (optionally `fashion-mnist:/path/to/idx`) or the root of an
ImageFolder tree holding `train/` and `val/` (and optionally `test/`).

Splits: Fashion-MNIST has `train` / `val` (held out of the official train file) / `test`
(t10k). An ImageFolder tree has what its folders hold; without `test/` its `val/` is the
reported split (ImageNet reports on val), and every choice inside an eval is made on
held-out train. `DataSpec.report_split` names the split a final number is read on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ijepa.data import fashion_mnist
from ijepa.data.imagefolder import check_classes, image_folder
from ijepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PretrainViews, eval_transform

__all__ = ["DataSpec", "PretrainViews", "build_dataset", "data_spec", "eval_transform"]


@dataclass(frozen=True)
class DataSpec:
    """What a dataset string resolves to: where it lives and its native statistics."""

    kind: str  # "fashion-mnist" | "imagefolder"
    root: Path
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def report_split(self) -> str:
        """The split final numbers are reported on: `test` where one exists, else `val`."""
        if self.kind == "fashion-mnist" or (self.root / "test").is_dir():
            return "test"
        return "val"

    @property
    def id(self) -> str:
        return "fashion-mnist" if self.kind == "fashion-mnist" else f"imagefolder:{self.root.resolve()}"


def data_spec(data: str) -> DataSpec:
    if data == "fashion-mnist" or data.startswith("fashion-mnist:"):
        root = Path(data.split(":", 1)[1]) if ":" in data else fashion_mnist.DEFAULT_ROOT
        return DataSpec("fashion-mnist", root, fashion_mnist.MEAN, fashion_mnist.STD)
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset not found (expected 'fashion-mnist' or an ImageFolder root with train/ and val/)")
    return DataSpec("imagefolder", root, IMAGENET_MEAN, IMAGENET_STD)


def build_dataset(data: str | DataSpec, split: str, transform=None) -> Dataset:
    """Dataset yielding (image tensor, label) for a split (`train`, `val`, `test`, ...)."""
    spec = data if isinstance(data, DataSpec) else data_spec(data)
    if spec.kind == "fashion-mnist":
        return fashion_mnist.FashionMNIST(spec.root, split, transform)
    ds = image_folder(spec.root, split, transform)
    check_classes(spec.root, split, ds.classes)
    return ds
