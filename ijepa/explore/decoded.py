"""What was predicted, as pixels: decoded target tokens, decoded predictions, MAE's answer.

All four pictures are built at the model's input resolution (what the encoders see) and
scaled up to the page's: (a) the context patches alone; (b) each target block's target
tokens decoded (the decoder's ceiling); (c) each block's predictor output decoded by the
same decoder; (d) an MAE run's pixel reconstruction of the same blocks from the same context.
With a diffusion decoder, (c) also shows a 2 x 2 sheet of its samples of the predictions,
each drawn with the context patches known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ijepa.decoder.diffusion import DiffusionDecoder, sample
from ijepa.decoder.model import TokenDecoder, layer_normed
from ijepa.explore import render
from ijepa.explore.analysis import Analysis
from ijepa.models.checkpoint import read_checkpoint
from ijepa.models.mae import patchify, unpatchify
from ijepa.training.config import from_dict
from ijepa.training.mae import MAE
from ijepa.training.networks import Networks, mean_std_of


@dataclass
class MAERun:
    """An MAE run's encoder and pixel decoder, at the explored model's grid."""

    model: MAE
    mean_std: tuple[tuple[float, ...], tuple[float, ...]]
    label: str


def load_mae(path: str | Path, like: Networks) -> MAERun:
    """An `ijepa pretrain --method mae` run; refused in one line if its grid or channels differ."""
    ckpt = read_checkpoint(path)
    if "decoder" not in ckpt or not isinstance(ckpt.get("config"), dict) or "predictor" in ckpt:
        raise ValueError(f"{path}: not an MAE run (expected encoder + decoder weights and a config, from `ijepa pretrain --method mae`)")
    cfg = from_dict(ckpt["config"])
    mae = MAE(cfg)
    for k in ("encoder", "decoder"):
        getattr(mae, k).load_state_dict(ckpt[k])
    enc = mae.encoder
    if (enc.grid, enc.patch_size, enc.in_chans) != (like.grid, like.encoder.patch_size, like.in_chans):
        raise ValueError(f"{path}: MAE run has grid {enc.grid[0]}x{enc.grid[1]}, patch {enc.patch_size}, {enc.in_chans} channel(s); "
                         f"the explored model has grid {like.grid[0]}x{like.grid[1]}, patch {like.encoder.patch_size}, {like.in_chans}")
    when = f", step {ckpt['step']}" if "step" in ckpt else ""
    return MAERun(mae.eval().requires_grad_(False), mean_std_of(cfg), f"MAE {Path(path).name}{when}")


def _unit(x: torch.Tensor, mean_std) -> torch.Tensor:
    """Normalised [C, H, W] -> [0, 1]."""
    mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype).view(-1, 1, 1) for v in mean_std)
    if len(mean) != len(x):
        mean, std = mean.mean().view(1, 1, 1), std.mean().view(1, 1, 1)
    return (x * std + mean).clamp(0, 1)


def _paste(x: torch.Tensor, patch_size: int, grid, blocks: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Image x [C, H, W] (normalised) with each (indices [K], patches [K, p*p*C]) written in."""
    pix = patchify(x[None], patch_size)[0].clone()
    for idx, patches in blocks:
        pix[idx.to(pix.device)] = patches.to(pix.dtype)
    return unpatchify(pix[None], patch_size, grid, len(x))[0]


def _display(unit: torch.Tensor, size: int, *, dim: torch.Tensor | None = None, factor: float = 0.25) -> np.ndarray:
    """[C, H, W] in [0, 1] -> RGB uint8 [size, size, 3]; pixels where `dim` [H, W] is True scaled by `factor`."""
    if dim is not None:
        unit = torch.where(dim, factor * unit, unit)
    up = F.interpolate(unit[None].float().cpu(), size=(size, size), mode="nearest")[0]
    return (up.expand(3, -1, -1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _outside(indices: list[torch.Tensor], grid, patch_size: int) -> torch.Tensor:
    """[H, W] True outside the union of the given patches."""
    m = torch.ones(grid[0] * grid[1], dtype=torch.bool)
    for idx in indices:
        m[idx.cpu()] = False
    return m.view(grid).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)


def _outlined(rgb: np.ndarray, grid, targets: list[torch.Tensor]) -> np.ndarray:
    out = rgb.astype(np.float64)
    cell = out.shape[0] // grid[0]
    for k, t in enumerate(targets):
        render._outline(out, t, grid, cell, render.target_colour(k))
    return out.clip(0, 255).astype(np.uint8)


def context_image(model: Networks, x: torch.Tensor, a: Analysis, size: int) -> np.ndarray:
    """(a) the pixels of the context patches; every other patch all but black."""
    p = model.encoder.patch_size
    unit = _unit(x[0], model.mean_std).cpu()
    return _outlined(_display(unit, size, dim=_outside([a.context], a.grid, p), factor=0.08), a.grid, a.targets)


@torch.no_grad()
def decoded_images(model: Networks, decoder: TokenDecoder, x: torch.Tensor, a: Analysis, size: int) -> tuple[dict, list[dict]]:
    """(b) and (c) as RGB arrays, and per block the pixel MSE (normalised pixels) of each vs the truth."""
    p, dev = model.encoder.patch_size, x.device
    tokens = layer_normed(a.features.to(dev))[None]  # [1, N, D]
    truth = patchify(x, p)[0]
    blocks = {"decoded_target": [], "decoded_pred": []}
    errors = []
    for k, t in enumerate(a.targets):
        idx = t.to(dev)[None]
        target_px = decoder(tokens[:, idx[0]], idx)[0]
        pred_px = decoder(a.predictions[k : k + 1].to(dev), idx)[0]
        blocks["decoded_target"].append((t, target_px))
        blocks["decoded_pred"].append((t, pred_px))
        errors.append({name: float(F.mse_loss(v, truth[t.to(dev)])) for name, v in (("target_mse", target_px), ("pred_mse", pred_px))})
    dim = _outside(a.targets, a.grid, p)
    images = {name: _outlined(_display(_unit(_paste(x[0], p, a.grid, bl), model.mean_std).cpu(), size, dim=dim), a.grid, a.targets)
              for name, bl in blocks.items()}
    return images, errors


SAMPLES = 4  # a 2 x 2 sheet
SAMPLE_STEPS = 25


@torch.no_grad()
def sampled_images(model: Networks, decoder: DiffusionDecoder, x: torch.Tensor, a: Analysis, size: int, seed: int) -> np.ndarray:
    """(c, sampled) `SAMPLES` diffusion samples of every block's prediction pasted into the image,
    tiled 2 x 2 into one [size, size, 3] picture; the context patches condition each sample."""
    p, dev = model.encoder.patch_size, x.device
    g = torch.Generator(dev).manual_seed(seed)
    known_pix, known_idx = patchify(x, p), a.context.to(dev)[None]
    per_block = [sample(decoder, a.predictions[k : k + 1].to(dev), t.to(dev)[None], n_samples=SAMPLES, steps=SAMPLE_STEPS,
                        known_pix=known_pix, known_idx=known_idx, generator=g)[:, 0] for k, t in enumerate(a.targets)]
    dim, half = _outside(a.targets, a.grid, p), size // 2
    tiles = [_outlined(_display(_unit(_paste(x[0], p, a.grid, [(t, b[s]) for t, b in zip(a.targets, per_block, strict=True)]),
                                      model.mean_std).cpu(), half, dim=dim), a.grid, a.targets) for s in range(SAMPLES)]
    return np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0)


@torch.no_grad()
def mae_image(mae: MAERun, x_mae: torch.Tensor, a: Analysis, size: int) -> np.ndarray:
    """(d) MAE's reconstruction of the target patches from the context patches.

    MAE predicts each patch standardised (norm_pix_loss); it is shown with the true patch's
    mean and standard deviation put back, as MAE's own visualisations of such models do.
    """
    dec = mae.model.decoder
    p, dev = dec.patch_size, x_mae.device
    union = torch.unique(torch.cat(a.targets)).to(dev)
    keep = a.context.to(dev)[None]
    pred = dec(mae.model.encoder(x_mae, [keep]), keep, union[None])[0]
    true = patchify(x_mae, p)[0][union]
    mean, var = true.mean(-1, keepdim=True), true.var(-1, keepdim=True)
    pasted = _paste(x_mae[0], p, a.grid, [(union, pred * (var + 1e-6) ** 0.5 + mean)])
    return _outlined(_display(_unit(pasted, mae.mean_std).cpu(), size, dim=_outside(a.targets, a.grid, p)), a.grid, a.targets)
