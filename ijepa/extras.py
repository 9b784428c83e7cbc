"""Optional dependencies. The dense evals' packages (pycocotools, segmentation-models-pytorch,
h5py) come with `pip install 'ijepa[dense]'`; a plain install runs pretraining and the
classification evals without them."""

from __future__ import annotations


class MissingExtra(ImportError):
    """A package of an extra is not installed; the message is one line naming the extra."""


def missing_extra(package: str, needed_by: str, extra: str = "dense") -> MissingExtra:
    return MissingExtra(f"{package} is not installed; {needed_by} needs it: pip install 'ijepa[{extra}]'")
