"""`ijepa eval segmentation`: the segmentation run's options (`SegRun`), what it prints, its registry entry.

Torch-free, so the command's help and a wrong option or recipe key answer before torch is
imported; `run` names the code that runs it (`ijepa.evals.segmentation`), imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass

from ijepa.evals.core.config import DENSE_FIXTURE_ENCODER, DenseRun
from ijepa.evals.registry import Eval, Fixture, Record, pct, register
from ijepa.typedconfig import COUNT, POSITIVE, checked


@dataclass(frozen=True)
class SegRun(DenseRun):
    num_classes: int = checked(150, COUNT)
    reduce_zero_label: bool = True
    scale_range: tuple[float, float] = checked((0.5, 2.0), POSITIVE)  # mmseg's ratio_range
    stride: int | None = checked(None, COUNT)  # sliding window stride; None = 2/3 of the crop (341 for 512)
    channels: int = checked(512, COUNT)  # UperNet width


def rows(rec: Record) -> list[tuple[str, str]]:
    return [("mIoU (val)", pct(rec["miou"])), ("mAcc (val)", pct(rec["macc"])), ("aAcc (val)", pct(rec["aacc"])),
            ("head / backbone", f"{rec['head']} / {rec['mode']}"), ("train / val images", f"{rec['n_train']} / {rec['n_val']}")]


register(Eval(
    name="segmentation", spec=SegRun, run="ijepa.evals.segmentation:run", rows=rows, headline="miou", unit="fraction",
    summary="Train a segmentation head (linear or UperNet); sliding-window mIoU / mAcc / aAcc on validation.",
    example="ijepa eval segmentation --encoder RUN --data /data/ADEChallengeData2016 -c segmentation_ade20k_vitb",
    fixture=Fixture("ade20k.make_ade20k", (*DENSE_FIXTURE_ENCODER, "-c", "segmentation_fixture", "--max-iters", "2")),
    help={"data": "ADEChallengeData2016 root (images/ + annotations/, training/ + validation/)", "head": "linear (DINOv2 lin.) or upernet (BEiT/MAE)",
          "num_classes": "Classes after reduce-zero-label (ADE20K: 150)", "mode": "frozen or finetune (layer-wise lr decay)",
          "taps": "Blocks to tap, comma-separated (default: 4 evenly spaced, last included)", "img_size": "Train crop / eval short side (and the random-init size)"},
))
