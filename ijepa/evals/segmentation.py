"""Semantic segmentation on ADE20K (or any dataset in its layout): DINOv2 "lin." and
BEiT/MAE UperNet protocols, sliding-window inference, mIoU / mAcc / aAcc.

Layout (ADEChallengeData2016): `images/{training,validation}/*.jpg` and
`annotations/{training,validation}/*.png` (same stems; PNG values are class ids, 0 =
"other"). With reduce-zero-label (ADE20K's convention) 0 becomes ignore (255) and every
other id moves down by one, giving 150 classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.core.train import head_param_groups, train_dense
from ijepa.evals.dense.data import (
    check_size,
    normalize,
    pad_multiple,
    random_scale_crop,
    read_array,
    read_rgb,
    resize,
    short_side_size,
)
from ijepa.evals.dense.heads import DenseModel, LinearHead, UperNetHead
from ijepa.evals.dense.setup import (
    base_record,
    dense_backbone,
    eval_items,
    item_rng,
    train_loader,
)
from ijepa.evals.entries.segmentation import SegRun
from ijepa.evals.registry import Context, Record

IGNORE = 255
SPLITS = {"train": "training", "val": "validation"}
HEADS = ("linear", "upernet")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def reduce_zero_label(label: torch.Tensor) -> torch.Tensor:
    """0 -> ignore, k -> k - 1 (mmseg's convention; 255 stays ignore)."""
    out = label.long() - 1
    out[(label == 0) | (label == IGNORE)] = IGNORE
    return out


class ADE20K(Dataset):
    """Items: {"image": uint8 [3, H, W], "label": long [1, H, W] (ignore = 255), "name"}."""

    def __init__(self, root: str | Path, split: str, *, num_classes: int, reduce_zero: bool = True, transform=None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        root = Path(root)
        img_dir, ann_dir = root / "images" / SPLITS[split], root / "annotations" / SPLITS[split]
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"{d}: not found (expected the ADEChallengeData2016 layout: images/ and annotations/ with training/ and validation/)")
        self.images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not self.images:
            raise FileNotFoundError(f"{img_dir}: no images")
        self.labels = [ann_dir / f"{p.stem}.png" for p in self.images]
        missing = [p for p in self.labels if not p.exists()]
        if missing:
            raise FileNotFoundError(f"{missing[0]}: annotation missing ({len(missing)} image(s) in {img_dir} have no PNG)")
        self.num_classes, self.reduce_zero, self.transform = num_classes, reduce_zero, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        label = torch.from_numpy(read_array(self.labels[i], np.int64))
        if label.ndim != 2:
            raise ValueError(f"{self.labels[i]}: expected a single-channel class-id PNG, got shape {tuple(label.shape)}")
        label = reduce_zero_label(label) if self.reduce_zero else label
        bad = (label != IGNORE) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            raise ValueError(f"{self.labels[i]}: class id {int(label[bad].max())} outside [0, {self.num_classes}) (after reduce-zero-label={self.reduce_zero}); set --num-classes")
        image = read_rgb(self.images[i])
        check_size(self.labels[i], label, image, "annotation")
        item = {"image": image, "label": label[None], "name": self.images[i].stem}
        return self.transform(item) if self.transform else item


class TrainTransform:
    """Random rescale of the short side (img_size x ratio), pad, crop, flip; normalise."""

    def __init__(self, run: SegRun, in_chans: int) -> None:
        self.run, self.in_chans = run, in_chans

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        r = self.run
        img, out = random_scale_crop(
            item["image"], {"label": (item["label"], "nearest", IGNORE)}, crop=r.img_size,
            short_side=r.img_size, scale_range=r.scale_range, rng=item_rng(),
        )
        return {"image": normalize(img, self.in_chans), "label": out["label"][0]}


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K, K] counts, rows = ground truth, columns = prediction; ignore-labelled pixels skipped."""
    keep = label != IGNORE
    idx = label[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def seg_metrics(conf: torch.Tensor) -> dict[str, Any]:
    """mmseg's definitions: per-class IoU and accuracy averaged over classes present in the
    ground truth or predictions (NaN classes skipped); aAcc = pixel accuracy."""
    conf = conf.double()
    tp, gt, pr = conf.diag(), conf.sum(1), conf.sum(0)
    iou = tp / (gt + pr - tp)  # 0/0 -> NaN: class absent everywhere
    acc = tp / gt
    return {
        "miou": float(np.nanmean(iou.numpy())), "macc": float(np.nanmean(acc.numpy())),
        "aacc": float(tp.sum() / gt.sum()), "iou_per_class": [None if np.isnan(v) else round(v, 6) for v in iou.tolist()],
    }


def slide_logits(model: nn.Module, image: torch.Tensor, *, crop: int, stride: int, num_classes: int, patch: int) -> torch.Tensor:
    """mmseg's slide inference on [1, C, H, W]: overlapping crop windows, logits averaged;
    windows are zero-padded to a multiple of the patch and cut back."""
    H, W = image.shape[-2:]
    logits = image.new_zeros(1, num_classes, H, W)
    count = image.new_zeros(1, 1, H, W)
    for gy in range(max(H - crop + stride - 1, 0) // stride + 1):
        for gx in range(max(W - crop + stride - 1, 0) // stride + 1):
            y2, x2 = min(gy * stride + crop, H), min(gx * stride + crop, W)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            win = pad_multiple(image[..., y1:y2, x1:x2], patch)
            logits[..., y1:y2, x1:x2] += model(win)[..., : y2 - y1, : x2 - x1]
            count[..., y1:y2, x1:x2] += 1
    return logits / count


def evaluate(model: nn.Module, dataset: ADE20K, run: SegRun, *, device: torch.device, in_chans: int, patch: int) -> dict[str, Any]:
    """Resize the short side to img_size, slide, resize logits back to the label, argmax."""
    K = run.num_classes
    conf = torch.zeros(K, K, dtype=torch.long)
    stride = run.stride or max(1, run.img_size * 2 // 3)
    for i in eval_items(dataset, run.max_eval_images):
        item = dataset[i]
        H, W = item["label"].shape[-2:]
        img = resize(item["image"], short_side_size(H, W, run.img_size), "bilinear")
        x = normalize(img, in_chans)[None].to(device)
        logits = slide_logits(model, x, crop=run.img_size, stride=stride, num_classes=K, patch=patch)
        pred = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False).argmax(1)[0]
        conf += confusion_matrix(pred.cpu(), item["label"][0], K)
    return seg_metrics(conf)


def build_head(run: SegRun, embed_dim: int) -> nn.Module:
    if run.head not in HEADS:
        raise ValueError(f"segmentation head must be one of {HEADS}, got {run.head!r}")
    if run.head == "linear":
        return LinearHead(embed_dim, run.num_classes)
    return UperNetHead(embed_dim, run.num_classes, channels=run.channels)


def run_segmentation(spec: EncoderSpec, run: SegRun, *, device: torch.device, console: Console | None = None) -> dict[str, Any]:
    """Train a head (and the encoder in fine-tune mode) on train, score val; the record."""
    backbone, info = dense_backbone(spec, run, device)
    in_chans, patch = backbone.encoder.in_chans, backbone.patch_size
    if run.img_size % patch:
        raise ValueError(f"--img-size {run.img_size} must be a multiple of the patch size {patch}")
    mk = dict(num_classes=run.num_classes, reduce_zero=run.reduce_zero_label)
    train_set = ADE20K(run.data, "train", transform=TrainTransform(run, in_chans), **mk)
    val_set = ADE20K(run.data, "val", **mk)
    model = DenseModel(backbone, build_head(run, backbone.embed_dim)).to(device)
    groups = head_param_groups(model.head, run.lr, weight_decay=run.weight_decay)
    groups += backbone.param_groups(run.lr, layer_decay=run.layer_decay, weight_decay=run.weight_decay)

    def loss_fn(m: nn.Module, batch: dict) -> torch.Tensor:
        return F.cross_entropy(m(batch["image"]), batch["label"], ignore_index=IGNORE)

    def score() -> dict[str, Any]:
        return evaluate(model, val_set, run, device=device, in_chans=in_chans, patch=patch)

    history = train_dense(
        model, train_loader(train_set, run), loss_fn, param_groups=groups, cfg=run.train_config(),
        device=device, evaluate=score, console=console, desc=f"segmentation/{run.head}",
    )
    final = history[-1]
    rec = base_record("eval.segmentation", run, info, [{k: v for k, v in h.items() if k != "iou_per_class"} for h in history])
    return {**rec, "num_classes": run.num_classes, "n_train": len(train_set), "n_val": len(val_set),
            "miou": final["miou"], "macc": final["macc"], "aacc": final["aacc"], "iou_per_class": final["iou_per_class"]}


def run(encoder: EncoderSpec, spec: SegRun, ctx: Context) -> Record:
    return run_segmentation(encoder, spec, device=ctx.device, console=ctx.console)
