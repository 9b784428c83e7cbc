"""From the shared command-line contract to frozen train/val features: what every
classification eval does first (encoder, optional stratified train subset, cached features)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

from ijepa.data import data_spec
from ijepa.distributed import DistInfo
from ijepa.evals.core.config import CHUNK_ROWS
from ijepa.evals.core.encoders import EncoderSpec, build_encoder, check_choice
from ijepa.evals.core.features import (
    CACHE_DIR,
    Features,
    extract_features,
    pixel_features,
    split_labels,
)
from ijepa.evals.core.fit import check_classes, check_limit, stratified_sample
from ijepa.evals.registry import ShareDone
from ijepa.models.load import weights_digest
from ijepa.models.vit import VisionTransformer
from ijepa.typedconfig import OptionError

EncoderLike = EncoderSpec | str | Path | VisionTransformer


def as_spec(encoder: EncoderSpec | str | Path) -> EncoderSpec:
    """A path (run dir or checkpoint) is shorthand for `EncoderSpec(encoder=path)`."""
    return encoder if isinstance(encoder, EncoderSpec) else EncoderSpec(encoder=str(encoder))


def resolve_encoder(encoder: EncoderLike) -> tuple[VisionTransformer, str, str]:
    """(frozen encoder, id, records' `encoder_key`). An in-memory encoder (e.g. mid-training)
    is named by the digest of its weights, the one a loaded encoder's key holds."""
    if not isinstance(encoder, VisionTransformer):
        return build_encoder(as_spec(encoder))
    key = f"module-{weights_digest(encoder)[:16]}"
    return encoder.eval(), key, key


def check_img_size(img_size: int | None, patch_size: int) -> None:
    """The encoder's patches must tile the input, as pretraining requires of its crop: a
    remainder would be dropped by the patch embedding without a word."""
    if img_size is not None and img_size % patch_size:
        raise OptionError("img_size", img_size, f"a multiple of the encoder's patch size {patch_size} "
                                                f"(the last {img_size % patch_size} px would be dropped)")


def frozen_splits(
    encoder: EncoderLike, data: str, *, device: torch.device | str = "cpu",
    train_limit: int | float | None = None, train_rows: torch.Tensor | None = None,
    val_limit: int | float | None = None, eval_split: str | None = None, seed: int = 0, img_size: int | None = None,
    batch_size: int = 256, workers: int = 0, cache_dir: Path | None = CACHE_DIR,
    console: Console | None = None, extract: Callable = extract_features,
    chunk_rows: int = CHUNK_ROWS, forward_dtype: str = "float32", group: DistInfo = DistInfo(),
) -> tuple[Features, Features, dict]:
    """(train features, eval features, record fields naming encoder, data and splits).

    Heads fit on `train` (every choice on a held-out part of it); the eval features are
    `eval_split`, by default the dataset's report split (`test` for Fashion-MNIST). Sweeps
    pass `eval_split="val"` so that no recipe is ever chosen on test.

    `train_limit` keeps a seeded class-stratified subset of train (rows, or a fraction < 1):
    the encoder then runs on those rows only. `train_rows` names the rows explicitly instead;
    `val_limit` subsamples val the same way (quick checks only: scores get noisier).
    `extract` is what each split becomes: pooled features, or `extract_tokens`, in chunks of
    `chunk_rows`, the encoder run in `forward_dtype`. An `EncoderSpec(raw_pixels=True)` is the
    raw-pixel baseline: the pixels are the features. Under torchrun (`group`) every rank
    extracts its share of both splits, then all but rank 0 raise `ShareDone`.
    """
    t0 = time.perf_counter()
    check_limit("train_limit", train_limit)
    check_limit("val_limit", val_limit)
    spec = data_spec(data)
    labels, num_classes = split_labels(spec, "train")
    rows = train_rows if train_limit is None else stratified_sample(labels, train_limit, seed=seed)
    if train_limit is not None:
        check_classes(labels, rows, key="train_limit", value=train_limit)
    eval_split = eval_split or spec.report_split
    val_rows = None if val_limit is None else stratified_sample(split_labels(spec, eval_split)[0], val_limit, seed=seed)
    if isinstance(encoder, EncoderSpec) and encoder.raw_pixels:
        check_choice(encoder)
        if forward_dtype != "float32":
            raise OptionError("dtype", forward_dtype, "float32 with --raw-pixels (no encoder runs)")
        if extract is not extract_features:
            raise ValueError("--raw-pixels: this eval reads patch tokens; raw pixels are scored by the pooled-feature evals only")
        (train, side), (val, _) = pixel_features(spec, "train", indices=rows), pixel_features(spec, eval_split, indices=val_rows)
        arch = {"encoder": "raw-pixels", "encoder_key": "raw-pixels", "img_size": side, "patch_size": None, "depth": 0, "width": train.width}
    else:
        enc, name, key = resolve_encoder(encoder)
        check_img_size(img_size, enc.patch_size)
        kw = dict(device=torch.device(device), img_size=img_size, batch_size=batch_size, workers=workers, cache_dir=cache_dir, console=console,
                  chunk_rows=chunk_rows, forward_dtype=forward_dtype, group=group)
        train, val = extract(enc, key, spec, "train", indices=rows, **kw), extract(enc, key, spec, eval_split, indices=val_rows, **kw)
        arch = {"encoder": name, "encoder_key": key, "img_size": img_size or enc.img_size, "patch_size": enc.patch_size, "depth": enc.depth,
                "width": enc.embed_dim, "num_heads": enc.num_heads}  # heads: a bare state dict's may be assumed from its width
    if not group.is_main:  # its share of both splits is cached: rank 0 reads them and fits
        raise ShareDone(f"rank {group.rank}/{group.world_size}: its share of the features is cached")
    info = {
        **arch, **spec.fields(), "num_classes": num_classes, "n_train": len(train), f"n_{eval_split}": len(val),
        "train_limit": train_limit, "val_limit": val_limit, "preprocessing": train.transform, "selected_on": "train-heldout",
        "reported_on": eval_split, "feature_dtype": forward_dtype, "world_size": group.world_size,
        "feature_s": round(time.perf_counter() - t0, 2),
    }
    return train, val, info
