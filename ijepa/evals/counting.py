"""Class-agnostic counting on FSC-147: a density head on frozen features, optionally
conditioned on the 3 exemplar boxes (FamNet/CounTR style); count = sum of the density.

Official layout: `images_384_VarV2/<name>.jpg`, `gt_density_map_adaptive_384_VarV2/<stem>.npy`
(float density, sums to the count), `annotation_FSC147_384.json` ({name: {"points": [[x, y],
...], "box_examples_coordinates": [[[x1, y1], [x1, y2], [x2, y2], [x2, y1]] x 3], ...}}) and
`Train_Test_Val_FSC_147.json` ({"train" | "val" | "test": [name, ...]}).

Exemplars are cut from the image (before any crop, as CounTR), resized to a fixed square and
encoded by the same frozen backbone; their mean features are correlated (cosine) with every
location of the scene's feature map, and the correlations join the features into the decoder.
The density is predicted on a grid 2**up_steps finer than the patches; training targets are
the ground truth averaged over those cells; count = sum x cell area.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.dense.data import normalize, random_scale_crop, read_rgb, resize, short_side_size
from ijepa.evals.dense.setup import (
    DenseRun,
    base_record,
    dense_backbone,
    eval_items,
    item_rng,
    train_loader,
)
from ijepa.evals.dense.train import head_param_groups, train_dense

IMAGES, DENSITY = "images_384_VarV2", "gt_density_map_adaptive_384_VarV2"
ANNOTATIONS, SPLITS = "annotation_FSC147_384.json", "Train_Test_Val_FSC_147.json"
HEADS = ("exemplar", "plain")


@dataclass(frozen=True)
class CountRun(DenseRun):
    img_size: int = 384  # short side (FSC-147 images are 384 high); train crops are square
    head: str = "exemplar"  # or "plain": no exemplar conditioning
    taps: tuple[int, ...] | None = (-1,)
    exemplar_size: int = 64  # exemplars are resized to this square before encoding
    channels: int = 128
    up_steps: int = 2  # density grid = patch grid x 2**up_steps
    density_scale: float = 100.0  # the head regresses per-pixel density x this (CounTR: 60)
    scale_range: tuple[float, float] = (1.0, 1.0)
    count_loss: float = 0.1  # weight of |predicted - true count| (per image) beside the density MSE


def exemplar_boxes(entry: dict, name: str) -> torch.Tensor:
    """[3, 4] xyxy from FSC-147's 4-corner boxes (min/max of the corners)."""
    boxes = entry.get("box_examples_coordinates")
    if not boxes:
        raise ValueError(f"{ANNOTATIONS}: {name} has no 'box_examples_coordinates'")
    pts = torch.tensor(boxes, dtype=torch.float32)[:3]  # [3, 4, 2]
    return torch.cat([pts.amin(1), pts.amax(1)], dim=1)


class FSC147(Dataset):
    """Items: {"image": uint8 [3, H, W], "density": [1, H, W], "boxes": [3, 4], "count"}."""

    def __init__(self, root: str | Path, split: str, *, transform=None) -> None:
        root = Path(root)
        for p in (root / IMAGES, root / ANNOTATIONS, root / SPLITS):
            if not p.exists():
                raise FileNotFoundError(f"{p}: not found (expected the official FSC-147 layout)")
        names = json.loads((root / SPLITS).read_text())
        if split not in names:
            raise ValueError(f"{root / SPLITS}: no {split!r} split (keys: {', '.join(names)})")
        self.anno = json.loads((root / ANNOTATIONS).read_text())
        self.names = list(names[split])
        missing = [n for n in self.names if n not in self.anno]
        if missing:
            raise ValueError(f"{root / ANNOTATIONS}: no annotation for {missing[0]} ({len(missing)} missing)")
        self.root, self.transform = root, transform

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name = self.names[i]
        entry = self.anno[name]
        image = read_rgb(self.root / IMAGES / name)
        dpath = self.root / DENSITY / f"{Path(name).stem}.npy"
        if not dpath.exists():
            raise FileNotFoundError(f"{dpath}: density map not found")
        density = torch.from_numpy(np.load(dpath).astype(np.float32))[None]
        if density.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"{dpath}: shape {tuple(density.shape[-2:])} != image {tuple(image.shape[-2:])}")
        item = {"image": image, "density": density, "boxes": exemplar_boxes(entry, name), "count": float(len(entry.get("points", [])))}
        return self.transform(item) if self.transform else item


def cut_exemplars(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """[3, 4] xyxy boxes -> [3, C, size, size] uint8 crops (each box at least 1 px)."""
    H, W = image.shape[-2:]
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        x1, y1 = min(max(0, int(x1)), W - 1), min(max(0, int(y1)), H - 1)
        x2, y2 = max(x1 + 1, min(W, math.ceil(x2))), max(y1 + 1, min(H, math.ceil(y2)))
        out.append(resize(image[:, y1:y2, x1:x2], (size, size), "bilinear"))
    return torch.stack(out)


class Transform:
    """Train: exemplars from the full image, then rescale/crop/flip image + density (mass).
    Eval: exemplars, image resized to short side img_size (multiple of the patch)."""

    def __init__(self, run: CountRun, in_chans: int, patch: int, *, train: bool) -> None:
        self.run, self.in_chans, self.patch, self.train = run, in_chans, patch, train

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        r = self.run
        ex = normalize(cut_exemplars(item["image"], item["boxes"], r.exemplar_size), self.in_chans)
        if self.train:
            img, out = random_scale_crop(
                item["image"], {"density": (item["density"], "mass", 0.0)}, crop=r.img_size,
                short_side=r.img_size, scale_range=r.scale_range, rng=item_rng(),
            )
            return {"image": normalize(img, self.in_chans), "density": out["density"], "exemplars": ex}
        size = short_side_size(*item["image"].shape[-2:], r.img_size, self.patch)
        img = resize(item["image"], size, "bilinear")
        return {"image": normalize(img, self.in_chans), "exemplars": ex, "count": item["count"]}


def upsample2() -> nn.Module:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)


class CountingHead(nn.Module):
    """features [+ cosine correlation with each exemplar and their max] -> conv decoder with
    `up_steps` x2 upsamplings -> mean density (x density_scale) per cell. No final ReLU (as
    CounTR): a ReLU'd output collapses to all-zero early under MSE and never recovers."""

    def __init__(self, embed_dim: int, *, exemplars: bool, channels: int = 128, up_steps: int = 2) -> None:
        super().__init__()
        c = channels
        self.exemplars = exemplars
        self.proj = nn.Conv2d(embed_dim, c, 1)
        layers: list[nn.Module] = [nn.Conv2d(c + (4 if exemplars else 0), c, 3, padding=1), nn.GroupNorm(8, c), nn.ReLU()]
        for _ in range(up_steps):
            layers += [upsample2(), nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(8, c), nn.ReLU()]
        self.decoder = nn.Sequential(*layers, nn.Conv2d(c, 1, 1))

    def forward(self, feat: torch.Tensor, ex: torch.Tensor | None) -> torch.Tensor:
        x = self.proj(feat)
        if self.exemplars:
            k = self.proj(ex.flatten(0, 1)[..., None, None]).view(ex.shape[0], ex.shape[1], -1)
            sims = torch.einsum("bchw,bkc->bkhw", F.normalize(x, dim=1), F.normalize(k, dim=-1))
            x = torch.cat([x, sims, sims.amax(1, keepdim=True)], dim=1)
        return self.decoder(x)


class CountingModel(nn.Module):
    def __init__(self, backbone: nn.Module, head: CountingHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor, exemplars: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W], exemplars [B, 3, C, E, E] -> density x scale per cell [B, 1, h', w']."""
        feat = self.backbone(images)[-1]
        ex = None
        if self.head.exemplars:
            ex = self.backbone(exemplars.flatten(0, 1))[-1].mean(dim=(2, 3)).view(*exemplars.shape[:2], -1)
        return self.head(feat, ex)


def cell_means(density: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mean of a [B, 1, H, W] density over each cell of a `size` grid (area pooling)."""
    return F.interpolate(density, size=size, mode="area")


def to_count(pred: torch.Tensor, image_hw: tuple[int, int], scale: float) -> torch.Tensor:
    """Per-image count from a per-cell mean-density map (x scale): sum x cell area / scale."""
    cell = image_hw[0] * image_hw[1] / (pred.shape[-2] * pred.shape[-1])
    return pred.sum(dim=(1, 2, 3)) * cell / scale


def count_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """MAE and RMSE of counts (FamNet / CounTR)."""
    err = np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


@torch.no_grad()
def evaluate(model: CountingModel, dataset: FSC147, run: CountRun, *, device: torch.device) -> dict[str, float]:
    """Count = the predicted density integrated over the image, against the number of points."""
    preds, gts = [], []
    for i in eval_items(dataset, run.max_eval_images):
        item = dataset[i]
        d = model(item["image"][None].to(device), item["exemplars"][None].to(device))
        preds.append(float(to_count(d, item["image"].shape[-2:], run.density_scale)))
        gts.append(item["count"])
    return count_metrics(np.array(preds), np.array(gts))


def run_counting(spec: EncoderSpec, run: CountRun, *, device: torch.device, console: Console | None = None) -> dict[str, Any]:
    """Train the density head on train, score val (during and after) and test; the record
    (headline mae / rmse = test, as FamNet and CounTR report)."""
    if run.head not in HEADS:
        raise ValueError(f"counting head must be one of {HEADS}, got {run.head!r}")
    backbone, info = dense_backbone(spec, run, device)
    in_chans, patch = backbone.encoder.in_chans, backbone.patch_size
    for name, v in (("--img-size", run.img_size), ("exemplar_size", run.exemplar_size)):
        if v % patch:
            raise ValueError(f"{name} {v} must be a multiple of the patch size {patch}")
    train_set = FSC147(run.data, "train", transform=Transform(run, in_chans, patch, train=True))
    val_set, test_set = (FSC147(run.data, s, transform=Transform(run, in_chans, patch, train=False)) for s in ("val", "test"))
    model = CountingModel(backbone, CountingHead(backbone.embed_dim, exemplars=run.head == "exemplar", channels=run.channels, up_steps=run.up_steps)).to(device)
    groups = head_param_groups(model.head, run.lr, weight_decay=run.weight_decay)
    groups += backbone.param_groups(run.lr, layer_decay=run.layer_decay, weight_decay=run.weight_decay)

    def loss_fn(m: nn.Module, batch: dict) -> torch.Tensor:
        pred = m(batch["image"], batch["exemplars"])
        target = cell_means(batch["density"], pred.shape[-2:]) * run.density_scale
        hw = batch["image"].shape[-2:]
        count_err = to_count(pred, hw, run.density_scale) - batch["density"].sum(dim=(1, 2, 3))
        return F.mse_loss(pred, target) + run.count_loss * count_err.abs().mean()

    def score() -> dict[str, float]:
        return {f"val_{k}": v for k, v in evaluate(model, val_set, run, device=device).items()}

    history = train_dense(
        model, train_loader(train_set, run), loss_fn, param_groups=groups, cfg=run.train_config(),
        device=device, evaluate=score, console=console, desc=f"counting/{run.head}",
    )
    model.eval()
    test = evaluate(model, test_set, run, device=device)
    mean = float(np.mean([len(train_set.anno[n].get("points", [])) for n in train_set.names]))
    gts = np.array([len(test_set.anno[n].get("points", [])) for n in test_set.names][: run.max_eval_images])
    base = count_metrics(np.full(len(gts), mean), gts)
    rec = base_record("eval.counting", run, info, history)
    val = {k: history[-1][k] for k in ("val_mae", "val_rmse")}
    return {**rec, "n_train": len(train_set), "n_val": len(val_set), "n_test": len(test_set),
            "mae": test["mae"], "rmse": test["rmse"], **val, "test_mae": test["mae"], "test_rmse": test["rmse"],
            "baseline_mean_count": mean, "baseline_test_mae": base["mae"], "baseline_test_rmse": base["rmse"]}
