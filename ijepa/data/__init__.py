"""One dataset factory for pretraining and every classification eval.

`data` is `fashion-mnist` (optionally `fashion-mnist:/path/to/idx`), a Fashion-MNIST family
`FAMILY:LEVEL` (optionally `FAMILY:LEVEL:/path/to/idx`; `ijepa.families`: `fmnist-clutter`,
Fashion-MNIST in clutter, `ijepa.data.clutter`; `fmnist-noise`, under pixel noise,
`ijepa.data.noise`; LEVEL in [0, 1]) or the root of an ImageFolder tree holding `train/` and
`val/` (and optionally `test/`).

Splits: Fashion-MNIST (and its families) has `train` / `val` (held out of the official train file) / `test`
(t10k). An ImageFolder tree has what its folders hold; without `test/` its `val/` is the
reported split (ImageNet reports on val), and every choice inside an eval is made on
held-out train. `DataSpec.report_split` names the split a final number is read on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ijepa import families
from ijepa.data import clutter, fashion_mnist, generated, noise
from ijepa.data.imagefolder import check_classes, image_folder
from ijepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PretrainViews, eval_transform

__all__ = ["GENERATORS", "DataSpec", "PretrainViews", "build_dataset", "data_spec", "eval_transform"]

GENERATORS = {g.family: g for g in (clutter.GENERATOR, noise.GENERATOR)}  # one per `ijepa.families.FAMILIES` entry


@dataclass(frozen=True)
class DataSpec:
    """What a dataset string resolves to: where it lives and its native statistics."""

    kind: str  # "fashion-mnist" | a family ("fmnist-clutter", "fmnist-noise") | "imagefolder"
    root: Path
    mean: tuple[float, ...]
    std: tuple[float, ...]
    level: float | None = None  # a family's only

    @property
    def in_memory(self) -> bool:
        """A uint8 [N, 1, 28, 28] tensor dataset (`.images`, `.targets`), batched without a loader."""
        return self.kind != "imagefolder"

    @property
    def report_split(self) -> str:
        """The split final numbers are reported on: `test` where one exists, else `val`."""
        if self.in_memory or (self.root / "test").is_dir():
            return "test"
        return "val"

    @property
    def id(self) -> str:
        if self.level is not None:
            return f"{self.kind}:{self.level:g}"
        return "fashion-mnist" if self.kind == "fashion-mnist" else f"imagefolder:{self.root.resolve()}"

    @property
    def name(self) -> str:
        """The dataset's family, as records and tables group by it (`level` says where in it)."""
        return "imagefolder" if self.kind == "imagefolder" else self.kind

    @property
    def record_id(self) -> str:
        """The dataset as records name it: `id`, with the root where it is not Fashion-MNIST's
        default (the spelling of `ijepa bench sweep`), so a copy elsewhere, corrupted or not,
        never passes for Fashion-MNIST in a table or a plot."""
        if self.in_memory and self.root.resolve() != fashion_mnist.DEFAULT_ROOT.resolve():
            return f"{self.id}:{self.root.resolve()}"
        return self.id

    def fields(self) -> dict[str, object]:
        """What a record says of its data: `dataset` (the id tables group by), name, level and root."""
        return {"dataset": self.record_id, "dataset_name": self.name, "dataset_level": self.level, "data_root": str(self.root.resolve())}


def data_spec(data: str) -> DataSpec:
    if data == "fashion-mnist" or data.startswith("fashion-mnist:"):
        root = Path(data.split(":", 1)[1]) if ":" in data else fashion_mnist.DEFAULT_ROOT
        return DataSpec("fashion-mnist", root, fashion_mnist.MEAN, fashion_mnist.STD)
    if (parsed := families.parse(data)) is not None:
        name, level, root_text = parsed
        root = Path(root_text) if root_text else fashion_mnist.DEFAULT_ROOT
        if level == 0.0:  # Fashion-MNIST bit for bit: one dataset, one id, one cache
            return DataSpec("fashion-mnist", root, fashion_mnist.MEAN, fashion_mnist.STD)
        mean, std = generated.train_stats(GENERATORS[name], root, level)
        return DataSpec(name, root, mean, std, level)
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset not found (expected 'fashion-mnist', {families.spellings()} or an ImageFolder "
                                "root with train/ and val/)")
    return DataSpec("imagefolder", root, IMAGENET_MEAN, IMAGENET_STD)


def build_dataset(data: str | DataSpec, split: str, transform=None) -> Dataset:
    """Dataset yielding (image tensor, label) for a split (`train`, `val`, `test`, ...)."""
    spec = data if isinstance(data, DataSpec) else data_spec(data)
    if spec.kind == "fashion-mnist":
        return fashion_mnist.FashionMNIST(spec.root, split, transform)
    if spec.kind in GENERATORS:
        return generated.GeneratedFashionMNIST(spec.root, split, transform, generator=GENERATORS[spec.kind], level=spec.level)
    ds = image_folder(spec.root, split, transform)
    check_classes(spec.root, split, ds.classes)
    return ds
