"""How the diffusion decoder's samples compare with the truth, and how much they vary.

Reconstruction: one sample of the whole image from all its target tokens (MSE on normalised
pixels, SSIM on [0, 1] pixels). Predictions: per target block, with the image's context
patches known, `n_samples` samples each from the prediction, the target tokens (the
ceiling) and the mean target token (a prediction that knows nothing of the image): the
mean pixel MSE of a sample, the MSE of the samples' mean (what a deterministic decoder aims
at), and the diversity (per-pixel standard deviation across samples, averaged).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.utils.data import Dataset
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from ijepa.decoder.diffusion import DiffusionDecoder, mse_per_block, sample
from ijepa.decoder.metrics import _predict, _table, val_batches
from ijepa.decoder.model import layer_normed, to_unit_pixels
from ijepa.masks import MultiBlockMaskCollator, apply_masks
from ijepa.models.mae import patchify, unpatchify


@torch.no_grad()
def sample_reconstruction(encoder: nn.Module, decoder: DiffusionDecoder, dataset: Dataset, collator: MultiBlockMaskCollator, *,
                          n_images: int, batch_size: int, steps: int, seed: int = 0,
                          device: torch.device = torch.device("cpu")) -> dict:
    """Whole-image MSE and SSIM of one sample per image from all its target tokens."""
    spec, g, totals = decoder.spec, torch.Generator(device).manual_seed(seed), defaultdict(float)
    for imgs, _, _ in val_batches(dataset, collator, n_images=n_images, batch_size=batch_size, device=device):
        tokens = layer_normed(encoder(imgs))
        full = torch.arange(tokens.size(1), device=device).expand(len(imgs), -1)
        rec = unpatchify(sample(decoder, tokens, full, n_samples=1, steps=steps, generator=g)[0], spec.patch_size, spec.grid, spec.in_chans)
        totals["mse"] += float((rec - imgs).pow(2).mean((1, 2, 3)).sum())
        totals["ssim"] += float(ssim(to_unit_pixels(rec, spec), to_unit_pixels(imgs, spec), data_range=1.0, reduction="sum"))
        totals["n"] += len(imgs)
    n = int(totals["n"])
    return {"mse": totals["mse"] / n, "ssim": totals["ssim"] / n, "n_images": n, "samples": 1, "sample_steps": steps}


NAMES = ("target", "prediction", "mean_token")


@torch.no_grad()
def measure_samples(model, decoder: DiffusionDecoder, dataset: Dataset, collator: MultiBlockMaskCollator, mean_token: torch.Tensor, *,
                    n_images: int, batch_size: int, n_samples: int, steps: int, seed: int = 0,
                    device: torch.device = torch.device("cpu")) -> dict:
    """Per target block size: sample MSE, samples'-mean MSE and diversity for each of `NAMES`."""
    if n_samples < 2:
        raise ValueError(f"n_samples={n_samples}: diversity needs at least 2 samples")
    g, err = torch.Generator(device).manual_seed(seed), defaultdict(lambda: defaultdict(float))
    p = decoder.spec.patch_size
    for imgs, enc, pred in val_batches(dataset, collator, n_images=n_images, batch_size=batch_size, device=device):
        targets, pix_all = layer_normed(model.target_encoder(imgs)), patchify(imgs, p)
        idx, pix = torch.cat(pred), apply_masks(pix_all, pred)
        known_idx, known_pix = enc[0].repeat(len(pred), 1), pix_all.repeat(len(pred), 1, 1)  # mask-major, as apply_masks
        tokens = {"target": apply_masks(targets, pred), "prediction": _predict(model.encoder, model.predictor, imgs, enc, pred),
                  "mean_token": mean_token.to(device)[idx]}
        size = str(idx.size(1))
        for name, tok in tokens.items():
            s = sample(decoder, tok, idx, n_samples=n_samples, steps=steps, known_pix=known_pix, known_idx=known_idx, generator=g)
            err[size][f"{name}_sample"] += float(mse_per_block(s, pix).mean(0).sum())
            err[size][f"{name}_samples_mean"] += float(mse_per_block(s.mean(0, keepdim=True), pix).sum())
            err[size][f"{name}_diversity"] += float(s.std(0).mean((1, 2)).sum())
        err[size]["n_blocks"] += len(idx)
    table = _table(err)
    n = sum(r["n_blocks"] for r in table.values())
    overall = {"n_blocks": n, **{k: sum(r[k] * r["n_blocks"] for r in table.values()) / n for k in next(iter(table.values())) if k != "n_blocks"}}
    return {"by_block_size": table, "all": overall, "n_images": min(n_images, len(dataset)), "n_samples": n_samples,
            "sample_steps": steps, "sample_seed": seed,
            "columns": {"*_sample": "mean pixel MSE of one sample (normalised pixels)",
                        "*_samples_mean": "pixel MSE of the mean of the samples",
                        "*_diversity": "per-pixel std across samples (n - 1 denominator), averaged (normalised pixels)"}}
