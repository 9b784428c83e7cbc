"""Frozen features, extracted once per (encoder, dataset content, split, transform, layers) and cached.

The data's content is a digest of the bytes its images come from (`SplitData.content`), never
a path, size or mtime: an image rewritten in place with both kept gets new features.

Pooled features (below) for the probes on vectors; the last block's patch tokens
(`extract_tokens`) for evals that pool themselves (the attentive probe).

Feature sets follow the paper's VISSL protocol for an encoder without [cls]: `lastPOOL`
(average pool of the last block) and `concatPOOL4` (average pools of the last 4 blocks,
concatenated; all blocks when fewer than 4). Only `concatPOOL4` is stored: its last chunk
*is* `lastPOOL`. Features are stored as float16 (half the disk; far below the heads' noise)
and always returned as the float32 of what is stored, so cold and warm runs see the same
features bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

from ijepa.atomic import atomic_save, remove_stale_temps
from ijepa.data import DataSpec, build_dataset, clutter, eval_transform
from ijepa.data.files import open_image, read_bytes
from ijepa.data.loader import worker_errors
from ijepa.evals.core.config import FEATURE_SETS
from ijepa.models.load import weights_digest
from ijepa.models.vit import VisionTransformer
from ijepa.progress import progress

CACHE_DIR = Path(".cache/features")
STALE_TEMP_S = 600.0  # a cache temp file untouched this long belongs to a killed eval
N_LAYERS = 4


@dataclass
class Features:
    """Pooled features of one split: `concat` is [N, n_layers * D], `labels` [N]."""

    concat: torch.Tensor
    labels: torch.Tensor
    width: int
    transform: str = ""  # the preprocessing the images went through

    def get(self, name: str) -> torch.Tensor:
        start, stop = self._span(name)
        return self.concat[:, start:stop]

    def distinct(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """`names` less any set whose columns an earlier one already has: with one pooled
        layer (raw pixels) every set is the whole vector, and a head fitted twice on one
        input would only double the time."""
        spans: dict[tuple[int, int], str] = {}
        for name in names:
            spans.setdefault(self._span(name), name)
        return tuple(spans.values())

    def _span(self, name: str) -> tuple[int, int]:
        total = self.concat.shape[1]
        if name == "lastPOOL":
            return total - self.width, total
        if name == "concatPOOL4":
            return 0, total
        raise ValueError(f"feature set {name!r}: expected one of {', '.join(FEATURE_SETS)}")

    def subset(self, idx: torch.Tensor) -> Features:
        return Features(self.concat[idx], self.labels[idx], self.width, self.transform)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Tokens:
    """Patch tokens of one split: `tokens` [N, T, D] (float16), `labels` [N]."""

    tokens: torch.Tensor
    labels: torch.Tensor
    transform: str = ""  # the preprocessing the images went through

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> Tokens:
        return Tokens(self.tokens[idx], self.labels[idx], self.transform)


def pooled(encoder: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> concatenated average pools of the last (up to) 4 blocks, [B, k * D]."""
    outs = encoder.forward_intermediates(x, min(N_LAYERS, encoder.depth), norm=True)
    return torch.cat([o.mean(1) for o in outs], dim=1)


def fmnist_batches(images: torch.Tensor, *, size: int, in_chans: int, mean: tuple, std: tuple, batch_size: int) -> Iterator[torch.Tensor]:
    """Whole-batch eval transform for the in-memory uint8 [N, 1, 28, 28] Fashion-MNIST tensor.

    Same math as `eval_transform` (antialiased bilinear resize; the center crop is a no-op on
    a square image), without the per-image v2 pipeline that dominates the cost at 28x28.
    """
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].float().div_(255)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = (x - mean[0]) / std[0]
        yield x.expand(-1, in_chans, -1, -1) if in_chans != 1 else x


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def forward_settings(encoder: VisionTransformer) -> dict[str, object]:
    """What the features depend on besides the weights and the input: settings no tensor of
    the state dict holds (heads split the width; the position table at other grids; the
    LayerNorm's eps). With `weights_digest` they key the cache, and the file the weights came
    from does not: an exported or moved copy of a checkpoint reuses its features."""
    return {"grid": list(encoder.grid), "patch": encoder.patch_size, "heads": encoder.num_heads,
            "pos_embed": encoder.pos_embed_mode, "eps": encoder.norm.eps}


def _save(path: Path, obj: dict, console: Console | None) -> None:
    """Cache the features; a cache that cannot be written (disk full, read-only) costs only
    the next run's extraction, so it is one warning line, not a lost result."""
    try:
        atomic_save(obj, path)
    except OSError as e:
        (console or Console(stderr=True)).print(
            f"warning: {e.filename or path}: cannot write the feature cache ({e.strerror or e}); continuing without it",
            highlight=False, soft_wrap=True,
        )


def _load(path: Path) -> dict | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated/foreign cache file is recomputed, never trusted
        return None


def _digest(lines) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode() + b"\n")
    return h.hexdigest()[:24]


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(t.numpy()).data).hexdigest()[:24]


def fmnist_content(ds, split: str) -> str:
    """Content id of a Fashion-MNIST (or clutter) split: sha256 of its uint8 images and its
    labels, the very pixels the encoder sees (about 20 ms for the 50,000 train images), and
    for the clutter family its generator version, level and background bank."""
    level = getattr(ds, "level", None)
    extra = [] if level is None else [f"clutter={clutter.VERSION}:{level!r}:{clutter.sources_digest()}"]
    return _digest([f"split={split}", f"rows={len(ds.targets)}", f"images={_sha(ds.images)}", f"labels={_sha(ds.targets)}", *extra])


@dataclass
class SplitData:
    """One split as the extractor reads it: labels [N], the transform's id, image batches, and
    `content()`, the id of the images' bytes the features depend on."""

    labels: torch.Tensor
    transform: str
    batches: Iterator[torch.Tensor]
    content: Callable[[], str]


class HashedImages(Dataset):
    """Rows of an ImageFolder split, each file read once: (image, sha256 of the bytes read),
    the image decoded from those bytes. `decode=False`: the digest only."""

    def __init__(self, ds: ImageFolder, rows: list[int], *, decode: bool = True) -> None:
        self.ds, self.rows, self.decode = ds, rows, decode

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str] | str:
        path = self.ds.samples[self.rows[i]][0]
        data = read_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        if not self.decode:
            return digest
        img = open_image(path, data=data)
        return (img if self.ds.transform is None else self.ds.transform(img)), digest


class FolderContent:
    """Content id of rows of an ImageFolder split: sha256 over each file's path (relative to
    the split), label and bytes' digest.

    What it costs: the digests are taken by the extraction's own loader as it reads each file
    (`batches`), so an extraction reads every file once. Only a lookup before extraction (where
    the cache holds features of this encoder and split) calls for the id first: a pass that
    reads every file's bytes once more and decodes none (`workers` in parallel; sha256 runs at
    about 1.5 GB/s a core). On a hit that pass is all the data read; on a miss (the data
    changed) extraction reads the files again, usually from the page cache.
    """

    def __init__(self, ds: ImageFolder, rows: list[int], *, batch_size: int, workers: int, console: Console | None) -> None:
        self.ds, self.rows, self.batch_size, self.workers, self.console = ds, rows, batch_size, workers, console
        self.digests: list[str] | None = None

    def _loader(self, decode: bool) -> Iterator:
        ds = HashedImages(self.ds, self.rows, decode=decode)
        return worker_errors(DataLoader(ds, batch_size=self.batch_size, num_workers=self.workers, shuffle=False))

    def batches(self) -> Iterator[torch.Tensor]:
        """Image batches; once all are read, the content id is that of the bytes decoded."""
        digests = []
        for x, d in self._loader(decode=True):
            digests += d
            yield x
        self.digests = digests

    def __call__(self) -> str:
        if self.digests is None:
            self.digests = []
            with progress(self.console, "checking data") as bar:
                task = bar.add_task("", total=len(self.rows), rate="")
                for d in self._loader(decode=False):
                    self.digests += d
                    bar.advance(task, len(d))
        root = self.ds.root
        return _digest(f"{os.path.relpath(path, root)}:{label}:{d}"
                       for (path, label), d in zip((self.ds.samples[r] for r in self.rows), self.digests, strict=True))


def split_batches(spec: DataSpec, split: str, *, size: int, in_chans: int, indices: torch.Tensor | None, batch_size: int, workers: int,
                  console: Console | None = None) -> SplitData:
    """The images of one split (or its rows `indices`) as the eval transform makes them, with
    their labels and content id (`fmnist_content`, `FolderContent`)."""
    if spec.in_memory:
        ds = build_dataset(spec, split)
        images, labels = ds.images, ds.targets
        if indices is not None:
            images, labels = images[indices], labels[indices]
        tid = f"fmnist-batched:bilinear-aa:{size}:c{in_chans}:{spec.mean}:{spec.std}"
        it = fmnist_batches(images, size=size, in_chans=in_chans, mean=spec.mean, std=spec.std, batch_size=batch_size)
        return SplitData(labels, tid, it, lambda: fmnist_content(ds, split))
    tf = eval_transform(size, in_chans=in_chans, mean=spec.mean, std=spec.std)
    ds = build_dataset(spec, split, tf)
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    rows = list(range(len(ds))) if indices is None else indices.tolist()
    if indices is not None:
        labels = labels[indices]
    content = FolderContent(ds, rows, batch_size=batch_size, workers=workers, console=console)
    return SplitData(labels, repr(tf), content.batches(), content)


def _lookup(cache_dir: Path | None, base: str, data: SplitData) -> dict | None:
    """The cached features of `data`, if any. Its content id is asked for (for a folder: its
    files read) only where features of the same encoder, split and rows (`base`) are kept."""
    if cache_dir is None or not cache_dir.is_dir():
        return None
    remove_stale_temps(cache_dir, STALE_TEMP_S)
    if not any(cache_dir.glob(f"{base}-*.pt")):
        return None
    path = cache_dir / f"{base}-{data.content()}.pt"
    hit = _load(path) if path.exists() else None
    return hit if hit is not None and len(hit["labels"]) == len(data.labels) else None


def _extract(
    encoder: VisionTransformer, encoder_key: str, spec: DataSpec, split: str, *, forward, layers: str, pool: str,
    device: torch.device, img_size: int | None, indices: torch.Tensor | None, batch_size: int, workers: int,
    cache_dir: Path | None, console: Console | None,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(float16 `forward(encoder, images)` of every image of `split`, labels, the transform's
    id), from cache if present."""
    size = img_size or encoder.img_size
    data = split_batches(spec, split, size=size, in_chans=encoder.in_chans, indices=indices, batch_size=batch_size, workers=workers, console=console)
    rows = None if indices is None else hashlib.sha256(indices.numpy().tobytes()).hexdigest()[:16]
    base = cache_key(weights=weights_digest(encoder), forward=forward_settings(encoder), data=spec.id, split=split, transform=data.transform,
                     layers=layers, pool=pool, rows=rows)
    cache_dir = None if cache_dir is None else Path(cache_dir)
    if (hit := _lookup(cache_dir, base, data)) is not None:
        return hit["concat"], hit["labels"], data.transform
    encoder = encoder.to(device).eval()
    chunks = []
    with torch.inference_mode(), progress(console, f"features {split}") as bar:
        task = bar.add_task("", total=len(data.labels), rate="")
        for x in data.batches:
            chunks.append(forward(encoder, x.to(device, non_blocking=True)).to("cpu", torch.float16))
            done = bar.tasks[task].completed + len(x)
            bar.update(task, completed=done, rate=f"{done / max(bar.tasks[task].elapsed or 1e-9, 1e-9):.0f} img/s")
    out = torch.cat(chunks) if chunks else torch.zeros(0, encoder.embed_dim, dtype=torch.float16)
    if cache_dir is not None:
        key = f"{base}-{data.content()}"  # the content of the bytes just decoded
        _save(cache_dir / f"{key}.pt", {"concat": out, "labels": data.labels, "width": encoder.embed_dim, "key": key,
                                        "encoder_key": encoder_key}, console)
    return out, data.labels, data.transform


def extract_features(
    encoder: VisionTransformer, encoder_key: str, spec: DataSpec, split: str, *,
    device: torch.device, img_size: int | None = None, indices: torch.Tensor | None = None,
    batch_size: int = 256, workers: int = 0, cache_dir: Path | None = CACHE_DIR,
    console: Console | None = None,
) -> Features:
    """Pooled frozen features of `split` (optionally the rows `indices`), from cache if present.

    The cache key covers a digest of all the encoder's weights (`weights_digest`) and its
    `forward_settings`, the dataset id, the split, the transform, the data's content (a
    digest of its bytes, `SplitData.content`), the pooled layers and the chosen rows.
    `encoder_key` (the records' id of the encoder: weights digest and key, or random-init
    recipe) is stored beside the features, not keyed on: the same weights are the same
    features, whichever file, checkpoint key or recipe named them.
    """
    concat, labels, transform = _extract(encoder, encoder_key, spec, split, forward=pooled, layers=f"last{N_LAYERS}", pool="avg", device=device,
                              img_size=img_size, indices=indices, batch_size=batch_size, workers=workers, cache_dir=cache_dir, console=console)
    return Features(concat.float(), labels, encoder.embed_dim, transform)


def extract_tokens(
    encoder: VisionTransformer, encoder_key: str, spec: DataSpec, split: str, *,
    device: torch.device, img_size: int | None = None, indices: torch.Tensor | None = None,
    batch_size: int = 256, workers: int = 0, cache_dir: Path | None = CACHE_DIR,
    console: Console | None = None,
) -> Tokens:
    """Patch tokens of the last block, LayerNorm-ed ([N, T, D], float16), cached like pooled
    features (under another key): for evals that pool themselves."""
    return Tokens(*_extract(encoder, encoder_key, spec, split, forward=lambda enc, x: enc(x), layers="last1-norm", pool="tokens", device=device,
                    img_size=img_size, indices=indices, batch_size=batch_size, workers=workers, cache_dir=cache_dir, console=console))


def pixel_features(spec: DataSpec, split: str, *, indices: torch.Tensor | None = None) -> tuple[Features, int]:
    """(the raw-pixel baseline's features, the images' side in pixels): each image's pixels /
    255 at its native size, as one vector (every feature set is that vector). Tensor datasets
    only (Fashion-MNIST): folder datasets have no native size the heads could share."""
    if not spec.in_memory:
        raise ValueError(f"--raw-pixels: data {spec.id!r} is an image folder; raw pixels are scored on fashion-mnist (and fmnist-clutter) only")
    ds = build_dataset(spec, split)
    images, labels = (ds.images, ds.targets) if indices is None else (ds.images[indices], ds.targets[indices])
    if images.shape[-2] != images.shape[-1]:
        raise ValueError(f"--raw-pixels: data {spec.id!r} split {split}: expected square images [N, C, H, H], got {list(images.shape)}")
    x = images.flatten(1).float() / 255
    return Features(x, labels.long(), x.shape[1], "raw pixels / 255"), images.shape[-1]


def split_labels(spec: DataSpec, split: str) -> tuple[torch.Tensor, int]:
    """(labels [N], number of classes) without decoding any image."""
    ds = build_dataset(spec, split)
    labels = ds.targets if isinstance(ds.targets, torch.Tensor) else torch.as_tensor(ds.targets, dtype=torch.long)
    return labels.long(), len(ds.classes)
