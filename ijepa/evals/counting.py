"""Class-agnostic counting on FSC-147 (or any COCO-style point/box data): a density head on
frozen features, optionally conditioned on 3 exemplar boxes (FamNet/CounTR style); count = sum
of the density.

Official FSC-147 layout: `images_384_VarV2/<name>.jpg`, `gt_density_map_adaptive_384_VarV2/
<stem>.npy` (float density, sums to the count), `annotation_FSC147_384.json` ({name: {"points":
[[x, y], ...], "box_examples_coordinates": [[[x1, y1], [x1, y2], [x2, y2], [x2, y1]] x 3], ...}})
and `Train_Test_Val_FSC_147.json` ({"train" | "val" | "test": [name, ...]}).

COCO-style layout (read when `annotation_FSC147_384.json` is absent; one file per split named
as COCO's and the FSCD-147 / FSCD-LVIS releases', exemplars flagged in place of their separate
exemplar lists): `images/<file_name>` and
`annotations/instances_{train,val,test}.json` with `images` [{"id", "file_name", "width",
"height"}] and `annotations`, one per object to count: {"image_id", "bbox": [x, y, w, h]
and/or "keypoints": [x, y, v, ...], "exemplar": true (optional)}. The object's point is its
first keypoint with v > 0 (a pixel index, as COCO keypoints; +0.5 as Detectron2 reads them),
else its box centre. Exemplars are the boxes flagged `"exemplar": true` (at most 3), or, where
an image flags none, its first 3 boxes; fewer than 3 are repeated. Crowd regions
(`iscrowd: 1`) are refused: they are not one object. `categories` is not read: every
annotation of an image counts (one target class per image, as FSC-147). The density is a unit
mass at each point's pixel blurred by a Gaussian of sigma = 1/4 of the image's mean exemplar
side (at least 1 px; FSC-147's adaptive maps also scale with the objects), with reflected
borders, so it sums to the count.

Exemplars are cut from the image (before any crop, as CounTR), resized to a fixed square and
encoded by the same frozen backbone; their mean features are correlated (cosine) with every
location of the scene's feature map, and the correlations join the features into the decoder.
The density is predicted on a grid 2**up_steps finer than the patches; training targets are
the ground truth averaged over those cells (MSE, as FamNet and CounTR); count = sum x cell area.
"""

from __future__ import annotations

import math
from collections import defaultdict
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from scipy.ndimage import gaussian_filter
from torch import nn
from torch.utils.data import Dataset

from ijepa.data.files import check_fields, read_json
from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.core.train import head_param_groups, train_dense
from ijepa.evals.dense.data import normalize, random_scale_crop, read_rgb, resize, short_side_size
from ijepa.evals.dense.setup import (
    base_record,
    dense_backbone,
    eval_items,
    item_rng,
    train_loader,
)
from ijepa.evals.entries.counting import CountRun
from ijepa.evals.registry import Context, Record

IMAGES, DENSITY = "images_384_VarV2", "gt_density_map_adaptive_384_VarV2"
ANNOTATIONS, SPLITS = "annotation_FSC147_384.json", "Train_Test_Val_FSC_147.json"
COCO_IMAGES, COCO_ANNOTATIONS = "images", "annotations/instances_{split}.json"
HEADS = ("exemplar", "plain")
SIGMA_PER_SIDE = 0.25  # COCO-style data: density sigma / mean exemplar side


def exemplar_boxes(entry: dict, name: str) -> torch.Tensor:
    """[3, 4] xyxy from FSC-147's 4-corner boxes (min/max of the corners)."""
    boxes = entry.get("box_examples_coordinates")
    if not boxes:
        raise ValueError(f"{ANNOTATIONS}: {name} has no 'box_examples_coordinates'")
    pts = torch.tensor(boxes, dtype=torch.float32)[:3]  # [3, 4, 2]
    if not bool(torch.isfinite(pts).all()):
        raise ValueError(f"{ANNOTATIONS}: {name} has a NaN or inf in 'box_examples_coordinates'")
    return torch.cat([pts.amin(1), pts.amax(1)], dim=1)


def fsc_points(entry: Any, name: str, path: Path) -> list:
    """An image's object points: FSC-147 counts them, so a missing or empty list (a count of
    0 beside a density that sums to the count) is an error naming the image."""
    pts = entry.get("points") if isinstance(entry, dict) else None
    if not pts:
        raise ValueError(f"{path}: {name} has {'an empty' if pts == [] else 'no'} 'points' list (its count would be 0)")
    if not all(_numbers(p, 2) for p in pts):
        raise ValueError(f"{path}: {name} 'points' must be [[x, y], ...] finite numbers")
    return pts


def check_points(points: list, hw: tuple[int, int], path: Path, name: str, slack: float = 1.0) -> None:
    """Every point inside its H x W image (`slack` pixels of rounding allowed): a point off the
    image would be counted all the same, as COCO's off-image boxes would be clipped."""
    H, W = hw
    for x, y in points:
        if not (-slack <= x <= W + slack and -slack <= y <= H + slack):
            raise ValueError(f"{path}: {name} point [{x}, {y}] lies outside its {W}x{H} image")


def read_density(path: Path) -> np.ndarray:
    """A float density map [H, W]; one that is not a 2-D finite array is a data error."""
    try:
        density = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npy density map ({e.__class__.__name__})") from None
    if density.ndim != 2 or not np.issubdtype(density.dtype, np.number):
        raise ValueError(f"{path}: expected a 2-D numeric density map, got {density.dtype} {density.shape}")
    if not np.isfinite(density).all():
        raise ValueError(f"{path}: density map holds NaN or inf")
    return density.astype(np.float32)


class FSC147(Dataset):
    """Items: {"image": uint8 [3, H, W], "density": [1, H, W], "boxes": [3, 4], "count"}."""

    def __init__(self, root: str | Path, split: str, *, transform=None) -> None:
        root = Path(root)
        for p in (root / IMAGES, root / ANNOTATIONS, root / SPLITS):
            if not p.exists():
                raise FileNotFoundError(f"{p}: not found (expected the official FSC-147 layout)")
        names = read_json(root / SPLITS)
        if split not in names:
            raise ValueError(f"{root / SPLITS}: no {split!r} split (keys: {', '.join(names)})")
        self.anno = read_json(root / ANNOTATIONS)
        self.names = list(names[split])
        missing = [n for n in self.names if n not in self.anno]
        if missing:
            raise ValueError(f"{root / ANNOTATIONS}: no annotation for {missing[0]} ({len(missing)} missing)")
        self.counts = [float(len(fsc_points(self.anno[n], n, root / ANNOTATIONS))) for n in self.names]
        self.root, self.transform = root, transform

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name = self.names[i]
        image = read_rgb(self.root / IMAGES / name)
        dpath = self.root / DENSITY / f"{Path(name).stem}.npy"
        if not dpath.exists():
            raise FileNotFoundError(f"{dpath}: density map not found")
        density = torch.from_numpy(read_density(dpath))[None]
        if density.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"{dpath}: shape {tuple(density.shape[-2:])} != image {tuple(image.shape[-2:])}")
        check_points(self.anno[name]["points"], tuple(image.shape[-2:]), self.root / ANNOTATIONS, name)
        item = {"image": image, "density": density, "boxes": exemplar_boxes(self.anno[name], name), "count": self.counts[i]}
        return self.transform(item) if self.transform else item


def _numbers(v: Any, n: int | None = None) -> bool:
    return isinstance(v, list) and (n is None or len(v) == n) and all(isinstance(x, Real) and math.isfinite(x) for x in v)


def validate_counting(data: Any, path: Path) -> None:
    """Fail on the first malformed entry of a COCO-style counting file, naming it and what
    was expected."""
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise ValueError(f"{path}: expected a JSON object with 'images' and 'annotations' lists (COCO style)")
    for i, img in enumerate(data["images"]):
        check_fields(path, f"images[{i}]", img, ("id", "file_name", "width", "height"))
    ids = {img["id"] for img in data["images"]}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        check_fields(path, where, ann, ("image_id",))
        box, kp = ann.get("bbox"), ann.get("keypoints")
        if ann["image_id"] not in ids:
            raise ValueError(f"{path}: {where} refers to image_id {ann['image_id']!r}, which is not in 'images'")
        if ann.get("iscrowd"):
            raise ValueError(f"{path}: {where} is a crowd region (iscrowd 1); counting needs one annotation per object")
        if box is not None and not (_numbers(box, 4) and box[2] > 0 and box[3] > 0):
            raise ValueError(f"{path}: {where} bbox must be [x, y, width, height] with width, height > 0, got {box!r}")
        if kp is not None and not (_numbers(kp) and len(kp) % 3 == 0):
            raise ValueError(f"{path}: {where} keypoints must be COCO triplets [x, y, v, ...], got {kp!r}")
        if box is None and not (kp and any(v > 0 for v in kp[2::3])):
            raise ValueError(f"{path}: {where} has no point: expected 'keypoints' [x, y, v > 0] or a 'bbox' [x, y, width, height]")
        if ann.get("exemplar") and box is None:
            raise ValueError(f"{path}: {where} is flagged as an exemplar but has no 'bbox' [x, y, width, height]")


def point_of(ann: dict) -> tuple[float, float]:
    """Continuous (x, y), pixel edges at integers: the first labelled keypoint + 0.5, else the
    box centre."""
    kp = ann.get("keypoints") or []
    for x, y, v in zip(kp[0::3], kp[1::3], kp[2::3], strict=True):
        if v > 0:
            return x + 0.5, y + 0.5
    x, y, w, h = ann["bbox"]
    return x + w / 2, y + h / 2


def coco_exemplars(anns: list[dict], path: Path, name: str) -> torch.Tensor:
    """[3, 4] xyxy: the flagged boxes, else the first 3; fewer than 3 are repeated."""
    boxes = [a["bbox"] for a in anns if a.get("exemplar")] or [a["bbox"] for a in anns if a.get("bbox") is not None]
    if not boxes:
        raise ValueError(f"{path}: image {name} has no box to use as an exemplar (give 1-3 of its annotations a 'bbox' and \"exemplar\": true)")
    t = torch.tensor(boxes[:3], dtype=torch.float32)
    t[:, 2:] += t[:, :2]
    return t[torch.arange(3) % len(t)]


def point_density(points: list[tuple[float, float]], hw: tuple[int, int], sigma: float) -> torch.Tensor:
    """[1, H, W]: a unit mass at each point's pixel, blurred; reflected borders keep the mass."""
    H, W = hw
    d = np.zeros((H, W), np.float64)
    for x, y in points:
        d[min(max(math.floor(y), 0), H - 1), min(max(math.floor(x), 0), W - 1)] += 1.0
    return torch.from_numpy(gaussian_filter(d, sigma, mode="reflect").astype(np.float32))[None]


class CocoCounting(Dataset):
    """FSC147's items from the COCO-style layout (see the module docstring)."""

    def __init__(self, root: str | Path, split: str, *, transform=None) -> None:
        root = Path(root)
        path = root / COCO_ANNOTATIONS.format(split=split)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: not found (expected FSC-147's {ANNOTATIONS} + {SPLITS}, or COCO-style "
                f"{COCO_ANNOTATIONS.format(split='{train,val,test}')} + {COCO_IMAGES}/ under {root})"
            )
        if not (root / COCO_IMAGES).is_dir():
            raise FileNotFoundError(f"{root / COCO_IMAGES}: image folder not found (expected next to annotations/)")
        data = read_json(path)
        validate_counting(data, path)
        anns = defaultdict(list)
        for a in data["annotations"]:
            anns[a["image_id"]].append(a)
        self.images = data["images"]
        self.points = [[point_of(a) for a in anns[img["id"]]] for img in self.images]
        self.boxes = [coco_exemplars(anns[img["id"]], path, img["file_name"]) for img in self.images]
        self.counts = [float(len(p)) for p in self.points]
        self.root, self.path, self.transform = root, path, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        info, boxes = self.images[i], self.boxes[i]
        file = self.root / COCO_IMAGES / info["file_name"]
        image = read_rgb(file)
        if tuple(image.shape[-2:]) != (info["height"], info["width"]):
            raise ValueError(f"{file}: size {image.shape[-1]}x{image.shape[-2]} differs from {info['width']}x{info['height']} in {self.path}")
        check_points(self.points[i], tuple(image.shape[-2:]), self.path, f"image {info['file_name']}")
        sigma = max(1.0, SIGMA_PER_SIDE * float((boxes[:, 2:] - boxes[:, :2]).mean()))
        item = {"image": image, "density": point_density(self.points[i], image.shape[-2:], sigma), "boxes": boxes, "count": self.counts[i]}
        return self.transform(item) if self.transform else item


def counting_dataset(root: str | Path, split: str, *, transform=None) -> FSC147 | CocoCounting:
    """FSC-147's own layout when its annotation file is there, else the COCO-style one."""
    cls = FSC147 if (Path(root) / ANNOTATIONS).exists() else CocoCounting
    return cls(root, split, transform=transform)


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
    """BatchNorm over the feature vectors (scene locations and exemplars alike) -> projection
    [+ cosine correlation with each exemplar and their max] -> conv decoder with `up_steps` x2
    upsamplings -> mean density (x density_scale) per cell.

    BatchNorm first (as DINOv2's linear heads): frozen features share a large common component
    (for a random-init ViT, what varies with the image is ~4% of the variance; the rest is
    position and a constant), which leaves gradient descent stuck at the mean density. No
    GroupNorm in the decoder (as CSRNet's back-end): it normalises each image's activations,
    and with them the amount of object it holds, pulling every count toward the mean. No final
    ReLU (as CounTR): a ReLU'd output collapses to all-zero early under MSE and never recovers."""

    def __init__(self, embed_dim: int, *, exemplars: bool, channels: int = 128, up_steps: int = 2) -> None:
        super().__init__()
        c = channels
        self.exemplars = exemplars
        self.norm = nn.BatchNorm1d(embed_dim)
        self.proj = nn.Linear(embed_dim, c)
        layers: list[nn.Module] = [nn.Conv2d(c + (4 if exemplars else 0), c, 3, padding=1), nn.ReLU()]
        for _ in range(up_steps):
            layers += [upsample2(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]
        self.decoder = nn.Sequential(*layers, nn.Conv2d(c, 1, 1))

    def forward(self, feat: torch.Tensor, ex: torch.Tensor | None) -> torch.Tensor:
        """feat [B, D, h, w], ex [B, K, D] (or None) -> [B, 1, h * 2**up_steps, w * 2**up_steps]."""
        B, D, h, w = feat.shape
        tokens = feat.permute(0, 2, 3, 1).reshape(-1, D)
        if self.exemplars:
            tokens = torch.cat([tokens, ex.reshape(-1, D)])
        tokens = self.proj(self.norm(tokens))
        x = tokens[: B * h * w].view(B, h, w, -1).permute(0, 3, 1, 2)
        if self.exemplars:
            k = tokens[B * h * w :].view(B, ex.shape[1], -1)
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
def evaluate(model: CountingModel, dataset: FSC147 | CocoCounting, run: CountRun, *, device: torch.device) -> dict[str, float]:
    """Count = the predicted density integrated over the image, against the number of points."""
    preds, gts = [], []
    for i in eval_items(dataset, run.max_eval_images):
        item = dataset[i]
        d = model(item["image"][None].to(device), item["exemplars"][None].to(device))
        preds.append(float(to_count(d, item["image"].shape[-2:], run.density_scale)))
        gts.append(item["count"])
    return count_metrics(np.array(preds), np.array(gts))


def mean_count_baseline(mean: float, dataset: FSC147 | CocoCounting, limit: int | None) -> dict[str, float]:
    """MAE / RMSE of predicting `mean` (the train split's, never the scored split's) everywhere."""
    n = len(eval_items(dataset, limit))
    return count_metrics(np.full(n, mean), np.array(dataset.counts[:n]))


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
    train_set = counting_dataset(run.data, "train", transform=Transform(run, in_chans, patch, train=True))
    val_set, test_set = (counting_dataset(run.data, s, transform=Transform(run, in_chans, patch, train=False)) for s in ("val", "test"))
    model = CountingModel(backbone, CountingHead(backbone.embed_dim, exemplars=run.head == "exemplar", channels=run.channels, up_steps=run.up_steps)).to(device)
    groups = head_param_groups(model.head, run.lr, weight_decay=run.weight_decay)
    groups += backbone.param_groups(run.lr, layer_decay=run.layer_decay, weight_decay=run.weight_decay)

    def loss_fn(m: nn.Module, batch: dict) -> torch.Tensor:
        pred = m(batch["image"], batch["exemplars"])
        return F.mse_loss(pred, cell_means(batch["density"], pred.shape[-2:]) * run.density_scale)

    def score() -> dict[str, float]:
        return {f"val_{k}": v for k, v in evaluate(model, val_set, run, device=device).items()}

    history = train_dense(
        model, train_loader(train_set, run), loss_fn, param_groups=groups, cfg=run.train_config(),
        device=device, evaluate=score, console=console, desc=f"counting/{run.head}",
    )
    model.eval()
    test = evaluate(model, test_set, run, device=device)
    mean = float(np.mean(train_set.counts))
    base = {s: mean_count_baseline(mean, d, run.max_eval_images) for s, d in (("val", val_set), ("test", test_set))}
    rec = base_record("eval.counting", run, info, history)
    val = {k: history[-1][k] for k in ("val_mae", "val_rmse")}
    return {**rec, "n_train": len(train_set), "n_val": len(val_set), "n_test": len(test_set),
            "mae": test["mae"], "rmse": test["rmse"], **val, "test_mae": test["mae"], "test_rmse": test["rmse"],
            "baseline_mean_count": mean, **{f"baseline_{s}_{k}": v for s, m in base.items() for k, v in m.items()}}


def run(encoder: EncoderSpec, spec: CountRun, ctx: Context) -> Record:
    return run_counting(encoder, spec, device=ctx.device, console=ctx.console)
