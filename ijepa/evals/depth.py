"""Monocular depth on NYU Depth v2: DINOv2's lin.1 / lin.4 and a DPT head, scale-invariant
log loss, the standard metrics on the Eigen crop (max depth 10 m).

Two layouts:
- list layout (BTS / Monocular-Depth-Estimation-Toolbox, what DINOv2 used): a root holding
  the scene folders and one file list per split (`nyu_train.txt` / `nyu_test.txt`, at the
  root or in `splits/`, or BTS's `nyudepthv2_{train,test}_files_with_gt.txt`); each line is
  `rgb_path depth_path [focal]`, relative to the root, or, as BTS downloads it, to `sync/`
  (train) and `official_splits/test/` (test) under the root (`LIST_BASES`); depth is a
  16-bit PNG in millimetres (0 = no measurement); lines whose depth is `None` are skipped.
- the official labelled `nyu_depth_v2_labeled.mat` (HDF5, read with h5py: `images`
  [N, 3, W, H] uint8, `depths` [N, W, H] metres) with the official `splits.mat`
  (`trainNdxs` / `testNdxs`, 1-based) beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from ijepa.data.files import read_text
from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.core.train import head_param_groups, train_dense
from ijepa.evals.dense.data import (
    check_size,
    normalize,
    pad_multiple,
    random_scale_crop,
    read_array,
    read_rgb,
)
from ijepa.evals.dense.heads import DenseModel, DPTHead, LinearHead, upsample
from ijepa.evals.dense.setup import (
    base_record,
    dense_backbone,
    eval_items,
    item_rng,
    train_loader,
)
from ijepa.evals.entries.depth import DepthRun
from ijepa.evals.registry import Context, Record
from ijepa.extras import missing_extra

HEADS = ("lin1", "lin4", "dpt")
LISTS = {
    "train": ("nyu_train.txt", "splits/nyu_train.txt", "nyudepthv2_train_files_with_gt.txt"),
    "test": ("nyu_test.txt", "splits/nyu_test.txt", "nyudepthv2_test_files_with_gt.txt"),
}
# Folders (under the root) a list's paths may be relative to: the root itself (the Toolbox),
# then BTS's `sync/` (train) and `official_splits/test/` (test).
LIST_BASES = {"train": ("", "sync"), "test": ("", "official_splits/test")}
EIGEN_CROP = (45, 471, 41, 601)  # rows, cols of the 480 x 640 NYU frame
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "d1", "d2", "d3")


def list_base(root: Path, split: str, found: Path, first_rgb: str) -> Path:
    """The folder a list's paths are relative to: the first of `LIST_BASES` holding its first image."""
    bases = [root / b for b in LIST_BASES[split]]
    for base in bases:
        if (base / first_rgb).is_file():
            return base
    tried = ", ".join(str(b) for b in bases)
    raise FileNotFoundError(f"{found}: its first image {first_rgb} is not under {tried} (expected paths relative to one of them)")


class NYUList(Dataset):
    """List layout. Items: {"image": uint8 [3, H, W], "depth": float [1, H, W] metres}."""

    def __init__(self, root: str | Path, split: str, *, depth_scale: float = 1000.0, transform=None) -> None:
        root = Path(root)
        lists = [root / n for n in LISTS[split]]
        found = next((p for p in lists if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{root}: no {split} file list (expected one of {', '.join(LISTS[split])})")
        pairs = []
        for n, line in enumerate(read_text(found).splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{found}:{n}: expected 'rgb_path depth_path [focal]', got {line!r}")
            if parts[1] != "None":
                pairs.append((parts[0].lstrip("/\\"), parts[1].lstrip("/\\")))
        if not pairs:
            raise ValueError(f"{found}: no image/depth pairs")
        base = list_base(root, split, found, pairs[0][0])
        self.pairs = [(base / rgb, base / depth) for rgb, depth in pairs]
        self.depth_scale, self.transform = depth_scale, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rgb, dpath = self.pairs[i]
        if not dpath.exists():
            raise FileNotFoundError(f"{dpath}: depth PNG not found")
        depth = torch.from_numpy(read_array(dpath, np.float32) / self.depth_scale)
        image = read_rgb(rgb)
        check_size(dpath, depth, image, "depth map")
        check_depth(depth, str(dpath))
        item = {"image": image, "depth": depth[None]}
        return self.transform(item) if self.transform else item


class NYUMat(Dataset):
    """Official labelled .mat + splits.mat; the arrays are read once (1449 frames, ~2.8 GB
    for the real file: pass the list layout for less memory)."""

    def __init__(self, path: str | Path, split: str, *, transform=None) -> None:
        from scipy.io import loadmat

        try:
            import h5py
        except ImportError:
            raise missing_extra("h5py", "reading nyu_depth_v2_labeled.mat") from None

        path = Path(path)
        splits = path.with_name("splits.mat")
        if not splits.is_file():
            raise FileNotFoundError(f"{splits}: official splits.mat (trainNdxs/testNdxs) not found beside {path.name}")
        key = {"train": "trainNdxs", "test": "testNdxs"}[split]
        idx = np.asarray(loadmat(splits)[key]).reshape(-1).astype(np.int64) - 1
        try:
            with h5py.File(path, "r") as f:
                self.images = torch.from_numpy(np.asarray(f["images"])[idx]).permute(0, 1, 3, 2).contiguous()
                self.depths = torch.from_numpy(np.asarray(f["depths"], dtype=np.float32)[idx]).transpose(1, 2).contiguous()
        except (OSError, KeyError) as e:
            raise ValueError(f"{path}: not the labelled NYU .mat (HDF5 with 'images' and 'depths'): {e}") from None
        for i, d in zip(idx.tolist(), self.depths, strict=True):
            check_depth(d, f"{path} frame {i + 1}")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"image": self.images[i], "depth": self.depths[i][None]}
        return self.transform(item) if self.transform else item


def check_depth(depth: torch.Tensor, where: str) -> None:
    """A frame must hold finite depths and at least one measurement (> 0): an all-zero
    training set trains nothing and still writes a record."""
    if not bool(torch.isfinite(depth).all()):
        raise ValueError(f"{where}: depth holds NaN or inf")
    if not bool((depth > 0).any()):
        raise ValueError(f"{where}: depth is all zero (no measured pixel; 0 = no measurement)")


def nyu_dataset(data: str | Path, split: str, *, depth_scale: float = 1000.0, transform=None) -> Dataset:
    """A `.mat` file -> NYUMat, a directory -> NYUList."""
    p = Path(data)
    if p.suffix == ".mat":
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not found")
        return NYUMat(p, split, transform=transform)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: NYU root (file lists + scenes) or labelled .mat not found")
    return NYUList(p, split, depth_scale=depth_scale, transform=transform)


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """DINOv2/AdaBins scale-invariant log loss: sqrt(Var(g) + 0.15 * mean(g)^2), g = log ratio."""
    g = torch.log(pred[valid] + eps) - torch.log(gt[valid] + eps)
    return torch.sqrt(g.var() + 0.15 * g.mean() ** 2)


def eval_mask(gt: torch.Tensor, *, min_depth: float, max_depth: float, eigen_crop: bool) -> torch.Tensor:
    """Valid pixels (min < gt < max), inside the Eigen crop scaled to the frame size."""
    valid = (gt > min_depth) & (gt < max_depth)
    if eigen_crop:
        H, W = gt.shape[-2:]
        t, b, left, r = EIGEN_CROP
        crop = torch.zeros_like(valid)
        crop[..., round(t * H / 480) : round(b * H / 480), round(left * W / 640) : round(r * W / 640)] = True
        valid &= crop
    return valid


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The standard eight over valid pixels of one image (pred already clamped)."""
    thresh = np.maximum(gt / pred, pred / gt)
    err = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(err) / gt)), "sq_rel": float(np.mean(err**2 / gt)),
        "rmse": float(np.sqrt(np.mean(err**2))), "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "log10": float(np.mean(np.abs(np.log10(gt) - np.log10(pred)))),
        "d1": float(np.mean(thresh < 1.25)), "d2": float(np.mean(thresh < 1.25**2)), "d3": float(np.mean(thresh < 1.25**3)),
    }


class BinsDepth(nn.Module):
    """DINOv2 linear depth: logits over uniform bins -> ReLU-normalised weights -> expected
    depth at the head's resolution, then bilinear to the image."""

    def __init__(self, head: LinearHead, *, bins: int, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("centers", torch.linspace(min_depth, max_depth, bins).view(1, bins, 1, 1))

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        w = torch.relu(self.head(maps, None)) + 0.1
        return upsample((w / w.sum(1, keepdim=True) * self.centers).sum(1, keepdim=True), size)


class ExpDepth(nn.Module):
    """A one-channel regression head read as log-depth, softly capped at max_depth: exp
    never saturates at 0, so the log loss keeps its gradient (a sigmoid can die there)."""

    def __init__(self, head: nn.Module, *, max_depth: float) -> None:
        super().__init__()
        self.head, self.log_max = head, math.log(max_depth)

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.head(maps, size)
        return torch.exp(self.log_max - F.softplus(self.log_max - x))


def build_head(run: DepthRun, embed_dim: int) -> nn.Module:
    if run.head not in HEADS:
        raise ValueError(f"depth head must be one of {HEADS}, got {run.head!r}")
    if run.head == "dpt":
        return ExpDepth(DPTHead(embed_dim, 1, features=run.channels), max_depth=run.max_depth)
    lin = LinearHead(embed_dim, run.bins, num_maps=1 if run.head == "lin1" else 4, upsample=4, mean_token=True)
    return BinsDepth(lin, bins=run.bins, min_depth=run.min_depth, max_depth=run.max_depth)


class TrainTransform:
    """Random crop (img_size square) + flip, no rescaling (metric depth is scale-aware)."""

    def __init__(self, run: DepthRun, in_chans: int) -> None:
        self.run, self.in_chans = run, in_chans

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        img, out = random_scale_crop(item["image"], {"depth": (item["depth"], "nearest", 0.0)}, crop=self.run.img_size, short_side=None, rng=item_rng())
        return {"image": normalize(img, self.in_chans), "depth": out["depth"]}


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, run: DepthRun, *, device: torch.device, in_chans: int, patch: int) -> dict[str, float]:
    """Full frames (zero-padded to the patch), predictions clamped to [min, max] depth,
    metrics per image on the Eigen crop, then averaged over images (BTS / toolbox)."""
    rows = []
    for i in eval_items(dataset, run.max_eval_images):
        item = dataset[i]
        H, W = item["depth"].shape[-2:]
        x = pad_multiple(normalize(item["image"], in_chans)[None].to(device), patch)
        pred = model(x)[0, 0, :H, :W].clamp(run.min_depth, run.max_depth).cpu()
        gt = item["depth"][0]
        valid = eval_mask(gt, min_depth=run.min_depth, max_depth=run.max_depth, eigen_crop=run.eigen_crop)
        if valid.any():
            rows.append(depth_metrics(pred[valid].double().numpy(), gt[valid].double().numpy()))
    if not rows:
        raise ValueError(f"{run.data}: no valid depth pixels in the test split")
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def mean_depth_baseline(train: Dataset, test: Dataset, run: DepthRun) -> dict[str, float]:
    """The trivial predictor: every pixel = the mean valid training depth."""
    vals = [it["depth"][it["depth"] > run.min_depth] for it in (train[i] for i in range(len(train)))]
    mean = float(torch.cat(vals).mean())
    rows = []
    for i in eval_items(test, run.max_eval_images):
        gt = test[i]["depth"][0]
        valid = eval_mask(gt, min_depth=run.min_depth, max_depth=run.max_depth, eigen_crop=run.eigen_crop)
        g = gt[valid].double().numpy()
        rows.append(depth_metrics(np.full_like(g, mean), g))
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS} | {"mean_depth": mean}


def run_depth(spec: EncoderSpec, run: DepthRun, *, device: torch.device, console: Console | None = None) -> dict[str, Any]:
    """Train the head on train, score test; the record (headline abs_rel and rmse)."""
    backbone, info = dense_backbone(spec, run, device)
    in_chans, patch = backbone.encoder.in_chans, backbone.patch_size
    if run.img_size % patch:
        raise ValueError(f"--img-size {run.img_size} must be a multiple of the patch size {patch}")
    train_set = nyu_dataset(run.data, "train", depth_scale=run.depth_scale, transform=TrainTransform(run, in_chans))
    test_set = nyu_dataset(run.data, "test", depth_scale=run.depth_scale)
    model = DenseModel(backbone, build_head(run, backbone.embed_dim)).to(device)
    groups = head_param_groups(model.head, run.lr, weight_decay=run.weight_decay)
    groups += backbone.param_groups(run.lr, layer_decay=run.layer_decay, weight_decay=run.weight_decay)

    def loss_fn(m: nn.Module, batch: dict) -> torch.Tensor:
        gt = batch["depth"]
        valid = (gt > run.min_depth) & (gt <= run.max_depth)
        if not valid.any():
            return m(batch["image"]).sum() * 0.0
        return silog_loss(m(batch["image"]), gt, valid)

    def score() -> dict[str, float]:
        return evaluate(model, test_set, run, device=device, in_chans=in_chans, patch=patch)

    history = train_dense(
        model, train_loader(train_set, run), loss_fn, param_groups=groups, cfg=run.train_config(),
        device=device, evaluate=score, console=console, desc=f"depth/{run.head}",
    )
    final = {k: v for k, v in history[-1].items() if k in METRICS}
    rec = base_record("eval.depth", run, info, history)
    out = {**rec, "n_train": len(train_set), "n_test": len(test_set), **final}
    if not all(math.isfinite(v) for v in final.values()):
        raise ValueError("depth metrics are not finite: the head diverged (lower --lr?)")
    return out


def run(encoder: EncoderSpec, spec: DepthRun, ctx: Context) -> Record:
    return run_depth(encoder, spec, device=ctx.device, console=ctx.console)
