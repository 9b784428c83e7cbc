"""How well tokens decode, and how good predictions are once decoded.

Reconstruction: the decoder on the target encoder's own tokens, pixel MSE (normalised
pixels) and SSIM (torchmetrics, on [0, 1] pixels) of the whole image, and MSE per target
block. Predictions: per target block, the pixel MSE of the decoded prediction against the
truth beside three references decoded the same way: the target tokens themselves (the
decoder's ceiling), the mean target token of each position (a prediction that knows nothing
about the image) and a random-init predictor on the same context. Retrieval: does a
predicted block land nearest to its own image's target among the batch, compared at the
same patch positions (so position alone cannot retrieve)?
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from ijepa.decoder.model import TokenDecoder, layer_normed, to_unit_pixels
from ijepa.masks import MultiBlockMaskCollator, apply_masks
from ijepa.models.mae import patchify, unpatchify


def val_batches(dataset: Dataset, collator: MultiBlockMaskCollator, *, n_images: int, batch_size: int, device: torch.device):
    """(imgs, masks_enc, masks_pred) over the first `n_images`, masks fixed by the collator's seed."""
    collator.set_epoch(0)
    sub = Subset(dataset, range(min(n_images, len(dataset))))
    for (imgs, _), enc, pred in DataLoader(sub, batch_size=batch_size, collate_fn=collator):
        yield imgs.to(device), [m.to(device) for m in enc], [m.to(device) for m in pred]


def per_block_mse(decoder: TokenDecoder, tokens: torch.Tensor, idx: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
    """[M] pixel MSE of each block (tokens [M, K, D] at idx [M, K] vs true pixels [M, K, P])."""
    return (decoder(tokens, idx) - pix).pow(2).mean((1, 2))


@torch.no_grad()
def reconstruction_metrics(encoder: nn.Module, decoder: TokenDecoder, dataset: Dataset, collator: MultiBlockMaskCollator, *,
                           n_images: int = 1000, batch_size: int = 64, device: torch.device = torch.device("cpu")) -> dict:
    """Whole-image MSE and SSIM, and per-block MSE, of decoded target-encoder tokens."""
    spec, totals = decoder.spec, defaultdict(float)
    for imgs, _, masks in val_batches(dataset, collator, n_images=n_images, batch_size=batch_size, device=device):
        tokens, pix = layer_normed(encoder(imgs)), patchify(imgs, spec.patch_size)
        full = torch.arange(tokens.size(1), device=device).expand(len(imgs), -1)
        rec = unpatchify(decoder(tokens, full), spec.patch_size, spec.grid, spec.in_chans)
        totals["mse"] += float(F.mse_loss(rec, imgs, reduction="sum")) / imgs[0].numel()
        unit_rec, unit = to_unit_pixels(rec, spec), to_unit_pixels(imgs, spec)
        totals["ssim"] += float(ssim(unit_rec, unit, data_range=1.0, reduction="sum"))
        blocks = per_block_mse(decoder, apply_masks(tokens, masks), torch.cat(masks), apply_masks(pix, masks))
        totals["block_mse"] += float(blocks.sum())
        totals["n"] += len(imgs)
        totals["n_blocks"] += len(blocks)
    n = int(totals["n"])
    return {"mse": totals["mse"] / n, "ssim": totals["ssim"] / n, "block_mse": totals["block_mse"] / totals["n_blocks"],
            "n_images": n, "n_blocks": int(totals["n_blocks"])}


@torch.no_grad()
def mean_tokens(encoder: nn.Module, dataset: Dataset, *, n_images: int, batch_size: int, device: torch.device) -> torch.Tensor:
    """[N, D] mean layer-normed target token at each position over the first `n_images`."""
    total, n = None, 0
    for imgs, _ in DataLoader(Subset(dataset, range(min(n_images, len(dataset)))), batch_size=batch_size):
        t = layer_normed(encoder(imgs.to(device))).sum(0)
        total, n = (t if total is None else total + t), n + len(imgs)
    return total / n


def retrieval_hits(pred: torch.Tensor, targets: torch.Tensor, idx: torch.Tensor, batch_size: int) -> tuple[int, int, int, int]:
    """(token hits, tokens, block hits, blocks): is each prediction closest (cosine) to its own
    image's target among the batch's targets at the same patches?

    pred [npred * B, K, D] (mask-major, as `apply_masks`), targets [B, N, D], idx [npred * B, K].
    """
    owner = torch.arange(batch_size, device=pred.device).repeat(len(pred) // batch_size)
    unit, pooled = F.normalize(pred, dim=-1), F.normalize(pred.mean(1), dim=-1)
    tok, blk = [], []  # per candidate image: [M, K] and [M] cosines (one image at a time: ViT-H sized batches fit)
    for cand in targets:
        at = cand[idx]  # [M, K, D]: this image's target tokens at each prediction's patches
        tok.append((unit * F.normalize(at, dim=-1)).sum(-1))
        blk.append((pooled * F.normalize(at.mean(1), dim=-1)).sum(-1))
    tok_hit = torch.stack(tok).argmax(0) == owner[:, None]
    blk_hit = torch.stack(blk).argmax(0) == owner
    return int(tok_hit.sum()), tok_hit.numel(), int(blk_hit.sum()), blk_hit.numel()


PREDICTORS = ("prediction", "random_predictor")


def _predict(encoder: nn.Module, predictor: nn.Module, imgs, masks_enc, masks_pred) -> torch.Tensor:
    return predictor(encoder(imgs, masks_enc), masks_enc, masks_pred)


@torch.no_grad()
def measure_predictions(model, random_model, decoder: TokenDecoder, dataset: Dataset, collator: MultiBlockMaskCollator,
                        mean_token: torch.Tensor, *, n_images: int = 1000, batch_size: int = 64,
                        device: torch.device = torch.device("cpu")) -> dict:
    """Decoded-prediction error per target block size and retrieval accuracy (see the module doc).

    `model`/`random_model`: `Networks`-likes (encoder, predictor, target_encoder); the
    random-init predictor runs on the trained context encoder; `random_init` retrieval runs
    all three random networks against their own targets.
    """
    err, ret = defaultdict(lambda: defaultdict(float)), defaultdict(lambda: [0, 0, 0, 0])
    for imgs, enc, pred in val_batches(dataset, collator, n_images=n_images, batch_size=batch_size, device=device):
        b = len(imgs)
        targets = layer_normed(model.target_encoder(imgs))
        idx, pix = torch.cat(pred), apply_masks(patchify(imgs, decoder.spec.patch_size), pred)
        outputs = {
            "target": apply_masks(targets, pred),
            "prediction": _predict(model.encoder, model.predictor, imgs, enc, pred),
            "mean_token": mean_token.to(device)[idx],
            "random_predictor": _predict(model.encoder, random_model.predictor, imgs, enc, pred),
        }
        size = str(idx.size(1))
        for name, tokens in outputs.items():
            err[size][name] += float(per_block_mse(decoder, tokens, idx, pix).sum())
        err[size]["n_blocks"] += len(idx)
        for name in PREDICTORS:
            _add(ret[name], retrieval_hits(outputs[name], targets, idx, b))
        rand_targets = layer_normed(random_model.target_encoder(imgs))
        _add(ret["random_init"], retrieval_hits(_predict(random_model.encoder, random_model.predictor, imgs, enc, pred),
                                                rand_targets, idx, b))
        ret["chance"][0] += len(idx) / b
        ret["chance"][1] += len(idx)
    return {"pixel_mse_by_block_size": _table(err), "pixel_mse": _overall(err), "retrieval": _retrieval(ret)}


def _add(acc: list, hits: tuple[int, int, int, int]) -> None:
    for i, v in enumerate(hits):
        acc[i] += v


def _table(err: dict) -> dict:
    out = {}
    for size in sorted(err, key=int):
        row = err[size]
        out[size] = {"n_blocks": int(row["n_blocks"]), **{k: v / row["n_blocks"] for k, v in row.items() if k != "n_blocks"}}
    return out


def _overall(err: dict) -> dict:
    n = sum(row["n_blocks"] for row in err.values())
    names = [k for k in next(iter(err.values())) if k != "n_blocks"]
    return {"n_blocks": int(n), **{k: sum(row[k] for row in err.values()) / n for k in names}}


def _retrieval(ret: dict) -> dict:
    chance = ret.pop("chance")
    out = {name: {"token_top1": t / nt, "block_top1": bh / nb, "n_blocks": nb} for name, (t, nt, bh, nb) in ret.items()}
    out["chance"] = chance[0] / chance[1]
    return out
