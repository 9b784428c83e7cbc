"""`ijepa eval detection`: COCO boxes + instance masks with Mask R-CNN on the ViTDet pyramid.

The encoder (frozen by default, or fine-tuned with layer-wise lr decay) feeds ViTDet's
simple feature pyramid (`ijepa.evals.dense.backbone`), which is the `backbone=` of
torchvision's Mask R-CNN; boxes and masks train together through the one dense loop, and
pycocotools' COCOeval scores both on the val split. Paper-scale recipe:
`evals/detection_coco_vitb.yaml`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from timm.layers import LayerNorm2d
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from ijepa.extras import missing_extra

try:
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
except ImportError:
    raise missing_extra("pycocotools", "ijepa eval detection") from None

from ijepa.data.coco import CocoInstances, collate, quiet_coco
from ijepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.train import DenseTrainConfig, head_param_groups, train_dense
from ijepa.evals.dense.backbone import DenseBackbone, PyramidBackbone, SimpleFeaturePyramid
from ijepa.evals.entries.detection import DetectionConfig, DetectionRun
from ijepa.evals.registry import Context, Record
from ijepa.models.vit import VisionTransformer

STATS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")
LEVELS = ["0", "1", "2", "3"]  # pyramid strides p/4, p/2, p, 2p; "pool" (4p) feeds the RPN only


def build_model(encoder: VisionTransformer, num_classes: int, cfg: DetectionConfig) -> MaskRCNN:
    """Mask R-CNN over ViTDet's pyramid; anchors 8 x stride (32..512 for patch 16, as ViTDet)."""
    p = encoder.patch_size
    if cfg.img_size % (2 * p):
        raise ValueError(f"--img-size {cfg.img_size} must be a multiple of twice the patch size ({2 * p})")
    dense = DenseBackbone(encoder, taps=[encoder.depth - 1], mode=cfg.mode)
    body = PyramidBackbone(dense, SimpleFeaturePyramid(encoder.embed_dim, out_channels=cfg.out_channels, top_block=True))
    strides = (p / 4, p / 2, p, 2 * p, 4 * p)
    anchors = AnchorGenerator(tuple((max(1, round(8 * s)),) for s in strides), ((0.5, 1.0, 2.0),) * len(strides))
    c, convs = cfg.out_channels, [cfg.head_channels] * cfg.head_convs
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if encoder.in_chans == 3 else ((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
    return MaskRCNN(
        body,
        num_classes=None,
        min_size=cfg.img_size, max_size=cfg.img_size, size_divisible=cfg.img_size,  # square pad, as ViTDet
        image_mean=list(mean), image_std=list(std),
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(c, 3, conv_depth=cfg.rpn_convs),
        rpn_pre_nms_top_n_train=2 * cfg.proposals, rpn_post_nms_top_n_train=cfg.proposals,
        rpn_pre_nms_top_n_test=cfg.proposals, rpn_post_nms_top_n_test=cfg.proposals,
        box_roi_pool=MultiScaleRoIAlign(LEVELS, output_size=7, sampling_ratio=cfg.roi_sampling),
        box_head=FastRCNNConvFCHead((c, 7, 7), convs, [cfg.fc_dim], norm_layer=LayerNorm2d),
        box_predictor=FastRCNNPredictor(cfg.fc_dim, num_classes),
        box_batch_size_per_image=cfg.rois_per_image,
        mask_roi_pool=MultiScaleRoIAlign(LEVELS, output_size=14, sampling_ratio=cfg.roi_sampling),
        mask_head=MaskRCNNHeads(c, convs, 1, norm_layer=LayerNorm2d),
        mask_predictor=MaskRCNNPredictor(convs[-1] if convs else c, cfg.head_channels, num_classes),
    )


def param_groups(model: MaskRCNN, cfg: DetectionConfig) -> list[dict]:
    """Encoder groups with layer decay (fine-tune only) + everything else at the base lr."""
    body = model.backbone
    heads = nn.ModuleList([body.pyramid, model.rpn, model.roi_heads])
    return body.backbone.param_groups(cfg.lr, layer_decay=cfg.layer_decay, weight_decay=cfg.weight_decay) + head_param_groups(
        heads, cfg.lr, weight_decay=cfg.weight_decay
    )


def detection_loss(model: nn.Module, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """Sum of the RPN, box and mask losses (torchvision computes them inside the model)."""
    images = [im.to(device) for im in batch["images"]]
    targets = [{k: v.to(device) for k, v in t.items()} for t in batch["targets"]]
    return sum(model(images, targets).values())


def to_coco_results(output: dict[str, torch.Tensor], image_id: int, cat_ids: list[int]) -> tuple[list[dict], list[dict]]:
    """One image's detections as COCO results: (bbox list, segm list). The segm list carries no
    box, so COCOeval sizes S/M/L by mask area (as Detectron2 does)."""
    boxes = output["boxes"].cpu().numpy().astype(float)
    scores = output["scores"].cpu().tolist()
    cats = [cat_ids[int(label) - 1] for label in output["labels"].cpu()]
    masks = (output["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8)
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
    bbox, segm = [], []
    for (x1, y1, x2, y2), score, cat, rle in zip(boxes, scores, cats, rles, strict=True):
        common = {"image_id": image_id, "category_id": cat, "score": score}
        bbox.append({**common, "bbox": [x1, y1, x2 - x1, y2 - y1]})
        segm.append({**common, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
    return bbox, segm


def coco_scores(gt: COCO, results: list[dict], iou_type: str, *, img_ids: list[int] | None = None) -> dict[str, float | None]:
    """COCOeval AP, AP50, AP75, AP_S/M/L as fractions; None where no ground truth is in range."""
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results) if results else quiet_coco({**gt.dataset, "annotations": []})
        ev = COCOeval(gt, dt, iou_type)
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (float(v) if v >= 0 else None) for k, v in zip(STATS, ev.stats[:6], strict=True)}


@torch.no_grad()
def predict(
    model: MaskRCNN, dataset: CocoInstances | Subset, cat_ids: list[int], *, device: torch.device, batch_size: int
) -> tuple[list[dict], list[dict]]:
    """COCO results for every image of `dataset`, in original image coordinates."""
    model.eval()
    bbox, segm = [], []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    for batch in loader:
        outputs = model([im.to(device) for im in batch["images"]])
        for out, t in zip(outputs, batch["targets"], strict=True):
            b, s = to_coco_results(out, int(t["image_id"]), cat_ids)
            bbox += b
            segm += s
    return bbox, segm


def score(model: MaskRCNN, dataset: CocoInstances, *, device: torch.device, batch_size: int = 4) -> dict[str, dict]:
    """{"bbox": stats, "segm": stats} on `dataset` (a CocoInstances or a Subset of one)."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    ids = [base.ids[i] for i in dataset.indices] if isinstance(dataset, Subset) else list(base.ids)
    bbox, segm = predict(model, dataset, base.cat_ids, device=device, batch_size=batch_size)
    return {t: coco_scores(base.coco, res, t, img_ids=ids) for t, res in (("bbox", bbox), ("segm", segm))}


def run_detection(
    encoder: EncoderSpec, data: str | Path, cfg: DetectionConfig, *, device: torch.device | str = "cpu",
    console: Console | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Train Mask R-CNN on `data`/train2017, score val2017; return the results record."""
    device, root, t0 = torch.device(device), Path(data), time.perf_counter()
    enc, name, key = build_encoder(encoder)
    train_set = CocoInstances(root, "train", in_chans=enc.in_chans, flip=cfg.flip, skip_empty=True)
    val_set = CocoInstances(root, "val", in_chans=enc.in_chans)
    if val_set.cat_ids != train_set.cat_ids:
        raise ValueError(f"{val_set.ann_file}: categories {val_set.cat_ids} differ from {train_set.ann_file}'s {train_set.cat_ids}")
    torch.manual_seed(cfg.seed)
    model = build_model(enc, train_set.num_classes, cfg).to(device)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_set) >= cfg.batch_size,
                        collate_fn=collate, num_workers=cfg.workers, generator=torch.Generator().manual_seed(cfg.seed))
    train_cfg = DenseTrainConfig(max_iters=cfg.max_iters, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_iters=cfg.warmup_iters,
                                 layer_decay=cfg.layer_decay, grad_clip=cfg.grad_clip, progress=progress)
    history = train_dense(model, loader, lambda m, b: detection_loss(m, b, device), param_groups=param_groups(model, cfg),
                          cfg=train_cfg, device=device, console=console, desc="detection")
    t1 = time.perf_counter()
    val = Subset(val_set, range(min(cfg.max_val_images, len(val_set)))) if cfg.max_val_images else val_set
    scores = score(model, val, device=device, batch_size=cfg.eval_batch_size)
    return {
        "kind": "eval.detection", "encoder": name, "encoder_key": key, "dataset": f"coco:{root.resolve()}",
        "box_ap": scores["bbox"]["ap"], "mask_ap": scores["segm"]["ap"],
        "box": scores["bbox"], "mask": scores["segm"],
        "protocol": "Mask R-CNN, ViTDet simple feature pyramid (torchvision)", "config": dataclasses.asdict(cfg),
        "num_classes": train_set.num_classes - 1, "n_train": len(train_set), "n_val": len(val),
        "patch_size": enc.patch_size, "depth": enc.depth, "width": enc.embed_dim, "num_heads": enc.num_heads,
        "train_loss": history[-1]["loss"] if history else None,
        "train_s": round(t1 - t0, 2), "eval_s": round(time.perf_counter() - t1, 2), "device": str(device),
    }


def run(encoder: EncoderSpec, spec: DetectionRun, ctx: Context) -> Record:
    cfg = DetectionConfig(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(DetectionConfig)})
    return run_detection(encoder, spec.data, cfg, device=ctx.device, console=ctx.console)
