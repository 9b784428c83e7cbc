"""`ijepa eval detection`: Mask R-CNN's options (`DetectionConfig`, `DetectionRun`), what it prints, its registry entry.

Torch-free, so the command's help and a wrong option or recipe key answer before torch is
imported; `run` names the code that runs it (`ijepa.evals.detection`), imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ijepa.evals.core.config import DENSE_FIXTURE_ENCODER
from ijepa.evals.registry import Eval, Fixture, Record, register
from ijepa.typedconfig import COUNT, NON_NEGATIVE, POSITIVE, Range, checked


@dataclass(frozen=True)
class DetectionConfig:
    """Defaults: a CPU-sized run; `evals/detection_coco_vitb.yaml` holds ViTDet's schedule."""

    EVAL_LIMIT: ClassVar[str] = "max_val_images"  # the field `--eval-limit` sets
    img_size: int = checked(256, COUNT)  # long side, padded to a square (ViTDet: 1024)
    batch_size: int = checked(4, COUNT)
    max_iters: int = checked(1000, COUNT)
    lr: float = checked(1e-4, POSITIVE)
    weight_decay: float = checked(0.1, NON_NEGATIVE)
    layer_decay: float = checked(0.7, Range(gt=0, le=1))
    warmup_iters: int = checked(50, NON_NEGATIVE)
    grad_clip: float = checked(0.0, NON_NEGATIVE)  # 0 = off
    mode: Literal["frozen", "finetune"] = "frozen"
    out_channels: int = checked(256, COUNT)  # pyramid width
    head_channels: int = checked(256, COUNT)  # conv width of the box and mask heads
    head_convs: int = checked(4, NON_NEGATIVE)  # ViTDet: 4conv1fc box head, 4-conv mask head, LayerNorm
    fc_dim: int = checked(1024, COUNT)
    rpn_convs: int = checked(2, NON_NEGATIVE)
    proposals: int = checked(1000, COUNT)  # RPN boxes kept after NMS (from 2x as many before it when training)
    rois_per_image: int = checked(512, COUNT)
    roi_sampling: int = checked(0, NON_NEGATIVE)  # RoIAlign samples per bin; 0 = adaptive (Detectron2's ROIAlignV2)
    flip: bool = True
    workers: int = checked(0, NON_NEGATIVE)
    eval_batch_size: int = checked(4, COUNT)
    max_val_images: int = checked(0, NON_NEGATIVE)  # 0 = the whole val split
    seed: int = 0


@dataclass(frozen=True)
class DetectionRun(DetectionConfig):
    """`ijepa eval detection` options and recipe keys: the config plus the data root."""

    data: str = ""  # COCO-layout root


def _ap(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def rows(rec: Record) -> list[tuple[str, str]]:
    box, mask = rec["box"], rec["mask"]
    return [("box AP (val, %)", _ap(box["ap"])), ("box AP50 / AP75", f"{_ap(box['ap50'])} / {_ap(box['ap75'])}"),
            ("box AP S / M / L", " / ".join(_ap(box[k]) for k in ("ap_s", "ap_m", "ap_l"))),
            ("mask AP (val, %)", _ap(mask["ap"])), ("mask AP50 / AP75", f"{_ap(mask['ap50'])} / {_ap(mask['ap75'])}"),
            ("backbone", rec["config"]["mode"]), ("train / val images", f"{rec['n_train']} / {rec['n_val']}"),
            ("train / eval time", f"{rec['train_s']:.1f} s / {rec['eval_s']:.1f} s")]


register(Eval(
    name="detection", spec=DetectionRun, run="ijepa.evals.detection:run", rows=rows, headline="box_ap", unit="fraction",
    summary="Train Mask R-CNN on the ViTDet pyramid over the encoder; COCOeval box and mask AP on val.",
    example="ijepa eval detection --encoder RUN --data /data/coco -c detection_coco_vitb",
    fixture=Fixture("coco.make_coco", (*DENSE_FIXTURE_ENCODER,
                                       "-c", "detection_fixture", "--max-iters", "1", "--eval-limit", "2")),
    help={"data": "COCO-layout root: annotations/instances_{train,val}2017.json + {train,val}2017/",
          "img_size": "Input size: long side, padded square (ViTDet 1024); also the random-init size",
          "mode": "frozen or finetune (layer-wise lr decay; ViTDet ViT-B: 0.7)", "max_val_images": "Score only the first N val images (0 = all)"},
))
