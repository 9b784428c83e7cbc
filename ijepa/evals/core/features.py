"""Frozen features, extracted once per (encoder, dataset content, split, transform, layers) and cached.

The data's content is a digest of the bytes its images come from (the row ids of `SplitData`),
never a path, size or mtime: an image rewritten in place with both kept gets new features. The
cache is written in chunks as they finish, so a killed extraction resumes (`_extract`), and a
subset of a cached split is read from that split's chunks (`_from_full_split`). Under torchrun
each rank extracts its share of the chunks and the cache is how they meet (`_gathered`).

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
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

from ijepa.atomic import atomic_save, remove_stale_temps
from ijepa.data import DataSpec, build_dataset, eval_transform
from ijepa.data.files import open_image, read_bytes
from ijepa.data.loader import worker_errors
from ijepa.distributed import DistInfo
from ijepa.evals.core.config import CHUNK_ROWS, FEATURE_SETS
from ijepa.models.load import weights_digest
from ijepa.models.vit import VisionTransformer
from ijepa.progress import progress

CACHE_DIR = Path(".cache/features")
STALE_TEMP_S = 600.0  # a cache temp file untouched this long belongs to a killed eval
N_LAYERS = 4
ROW_ID_BYTES = 16


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


def _save(path: Path, obj: dict, console: Console | None) -> bool:
    """Cache one chunk; a cache that cannot be written (disk full, read-only) costs only the
    next run's extraction, so it is one warning line (and no further tries), not a lost result."""
    try:
        atomic_save(obj, path)
        return True
    except OSError as e:
        (console or Console(stderr=True)).print(
            f"warning: {e.filename or path}: cannot write the feature cache ({e.strerror or e}); continuing without it",
            highlight=False, soft_wrap=True,
        )
        return False


def _load(path: Path) -> dict | None:
    """A chunk, memory-mapped: assembling a split copies each chunk once, into its output."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a truncated/foreign cache file is recomputed, never trusted
        return None


def _row_id(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(hashlib.sha256(data).digest()[:ROW_ID_BYTES]), dtype=torch.uint8)


def _stack_ids(ids: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(ids) if ids else torch.zeros(0, ROW_ID_BYTES, dtype=torch.uint8)


def fmnist_salt(ds) -> str:
    """What a Fashion-MNIST (or family) split's features depend on besides each image's pixels
    and label: for a family its generator (`Generator.salt`: version, level, sources)."""
    gen = getattr(ds, "generator", None)
    return "" if gen is None else gen.salt(ds.level)


@dataclass
class SplitData:
    """One split (or its chosen rows) as the extractor reads it: labels [N], the transform's id,
    `salt` (what the features depend on beyond the rows), and two reads by row position:
    `read(ranges)`, image batches with their row ids (no batch spans two ranges), and
    `row_ids(positions)`, the ids alone, no image decoded.

    A row's id (16 bytes of sha256) covers what its features depend on besides the encoder
    and the transform: for a folder the file's path in the split, its label and its bytes'
    digest, for a tensor split its pixels and label; never a path's size or mtime.
    """

    labels: torch.Tensor
    transform: str
    read: Callable[[list[tuple[int, int]]], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    row_ids: Callable[[list[int]], torch.Tensor]
    salt: str = ""

    @property
    def batches(self) -> Iterator[torch.Tensor]:
        """Every row's image, in order, in batches (for evals that read a split once)."""
        return (x for x, _ in self.read([(0, len(self.labels))]))


class TensorRows:
    """Rows of an in-memory uint8 [N, 1, 28, 28] split (Fashion-MNIST): batches by
    `fmnist_batches`, row ids from each image's pixels and label (a few µs a row)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, **tf) -> None:
        self.images, self.labels, self.batch_size, self.tf = images, labels, batch_size, tf

    def row_ids(self, positions: list[int]) -> torch.Tensor:
        images, labels = self.images.numpy(), self.labels.numpy()
        return _stack_ids([_row_id(images[p].tobytes() + labels[p].tobytes())[None] for p in positions])

    def read(self, ranges: list[tuple[int, int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = self.batch_size
        for a, b in ranges:
            ids = self.row_ids(list(range(a, b)))
            for i, x in enumerate(fmnist_batches(self.images[a:b], batch_size=bs, **self.tf)):
                yield x, ids[i * bs : (i + 1) * bs]


class HashedImages(Dataset):
    """Rows of an ImageFolder split, each file read once: (image, row id), the image decoded
    from the bytes the id was taken of. `decode=False`: the row id only."""

    def __init__(self, ds: ImageFolder, rows: list[int], *, decode: bool = True) -> None:
        self.ds, self.rows, self.decode = ds, rows, decode

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        path, label = self.ds.samples[self.rows[i]]
        data = read_bytes(path)
        rid = _row_id(f"{os.path.relpath(path, self.ds.root)}:{label}:{hashlib.sha256(data).hexdigest()}".encode())
        if not self.decode:
            return rid
        img = open_image(path, data=data)
        return (img if self.ds.transform is None else self.ds.transform(img)), rid


class FolderRows:
    """Rows of an ImageFolder split, read by position.

    What it costs: the row ids are taken by the extraction's own loader as it reads each file
    (`read`), so an extraction reads every file once. Only a cache lookup (where chunks of this
    encoder and split are kept) calls for the ids first: a pass that reads the files of those
    chunks once more and decodes none (`workers` in parallel; sha256 runs at about 1.5 GB/s a
    core). On a hit that pass is all the data read; on a miss (the data changed) extraction
    reads the files again, usually from the page cache.
    """

    def __init__(self, ds: ImageFolder, rows: list[int], *, batch_size: int, workers: int, console: Console | None) -> None:
        self.ds, self.rows, self.batch_size, self.workers, self.console = ds, rows, batch_size, workers, console

    def _loader(self, batches: list[list[int]], decode: bool) -> Iterator:
        ds = HashedImages(self.ds, self.rows, decode=decode)
        return worker_errors(DataLoader(ds, batch_sampler=batches, num_workers=self.workers))

    def read(self, ranges: list[tuple[int, int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = self.batch_size
        yield from self._loader([list(range(s, min(s + bs, b))) for a, b in ranges for s in range(a, b, bs)], decode=True)

    def row_ids(self, positions: list[int]) -> torch.Tensor:
        ids, bs = [], self.batch_size
        with progress(self.console, "checking data") as bar:
            task = bar.add_task("", total=len(positions), rate="")
            for d in self._loader([positions[i : i + bs] for i in range(0, len(positions), bs)], decode=False):
                ids.append(d)
                bar.advance(task, len(d))
        return _stack_ids(ids)


def split_batches(spec: DataSpec, split: str, *, size: int, in_chans: int, indices: torch.Tensor | None, batch_size: int, workers: int,
                  console: Console | None = None) -> SplitData:
    """The images of one split (or its rows `indices`) as the eval transform makes them, with
    their labels and row ids (`TensorRows`, `FolderRows`)."""
    if spec.in_memory:
        ds = build_dataset(spec, split)
        images, labels = ds.images, ds.targets
        if indices is not None:
            images, labels = images[indices], labels[indices]
        tid = f"fmnist-batched:bilinear-aa:{size}:c{in_chans}:{spec.mean}:{spec.std}"
        rows = TensorRows(images, labels, batch_size=batch_size, size=size, in_chans=in_chans, mean=spec.mean, std=spec.std)
        return SplitData(labels, tid, rows.read, rows.row_ids, fmnist_salt(ds))
    tf = eval_transform(size, in_chans=in_chans, mean=spec.mean, std=spec.std)
    ds = build_dataset(spec, split, tf)
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    positions = list(range(len(ds))) if indices is None else indices.tolist()
    if indices is not None:
        labels = labels[indices]
    rows = FolderRows(ds, positions, batch_size=batch_size, workers=workers, console=console)
    return SplitData(labels, repr(tf), rows.read, rows.row_ids)


def _chunk_path(cache_dir: Path, base: str, a: int, b: int, ids: torch.Tensor) -> Path:
    return cache_dir / f"{base}-{a:09d}-{b:09d}-{hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:24]}.pt"


def _kept(cache_dir: Path | None, base: str) -> dict[tuple[int, int], list[Path]]:
    """The chunk files kept under `base`, by the row range each covers."""
    if cache_dir is None or not cache_dir.is_dir():
        return {}
    remove_stale_temps(cache_dir, STALE_TEMP_S)
    kept: dict[tuple[int, int], list[Path]] = {}
    for path in sorted(cache_dir.glob(f"{base}-*.pt")):
        if m := re.fullmatch(rf"{base}-(\d{{9}})-(\d{{9}})-[0-9a-f]{{24}}\.pt", path.name):
            kept.setdefault((int(m[1]), int(m[2])), []).append(path)
    return kept


def _place(out: torch.Tensor | None, n: int, a: int, feats: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`feats` copied into rows a.. of the split's output, made at the first chunk's shape."""
    if out is None:
        out = torch.empty((n, *feats.shape[1:]), dtype=dtype)
    out[a : a + len(feats)] = feats
    return out


def _finished(cache_dir: Path | None, base: str, data: SplitData, ranges: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[Path, torch.Tensor]]:
    """(file, features) of each chunk of `ranges` a run (this one killed, or an earlier one)
    finished, each found by the row ids of the rows it covers: the ids are asked for (for a
    folder: those files read) only for the ranges some chunk is kept for."""
    kept = _kept(cache_dir, base)
    todo = [r for r in ranges if r in kept]
    ids = data.row_ids([p for a, b in todo for p in range(a, b)]) if todo else None
    found, i = {}, 0
    for a, b in todo:
        path = _chunk_path(cache_dir, base, a, b, ids[i : i + b - a])
        hit = _load(path) if path in kept[(a, b)] else None
        if hit is not None and len(hit["concat"]) == b - a:
            found[(a, b)] = path, hit["concat"]
        i += b - a
    return found


def _from_full_split(cache_dir: Path | None, base: str, data: SplitData, indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """The rows `indices` taken from the full split's kept chunks (same encoder, transform and
    layers), each row checked against the id stored beside its features: a subset after its
    split (low-shot after linear, a train limit) reads its own files once and forwards none.
    None unless every row is found."""
    kept = _kept(cache_dir, base)
    covered = torch.zeros(len(indices), dtype=torch.bool)
    for a, b in kept:
        covered |= (indices >= a) & (indices < b)
    if not len(indices) or not bool(covered.all()):
        return None
    ids, out = data.row_ids(list(range(len(indices)))), None
    filled = torch.zeros(len(indices), dtype=torch.bool)
    for (a, b), paths in kept.items():
        sel = ((indices >= a) & (indices < b) & ~filled).nonzero().squeeze(1)
        for hit in filter(None, map(_load, paths) if len(sel) else ()):
            if len(hit["row_ids"]) == b - a and torch.equal(hit["row_ids"][indices[sel] - a], ids[sel]):
                out = torch.empty((len(indices), *hit["concat"].shape[1:]), dtype=dtype) if out is None else out
                out[sel] = hit["concat"][indices[sel] - a].to(dtype)
                filled[sel] = True
                break
    return out if bool(filled.all()) else None


def img_rate(done: int, elapsed: float | None) -> str:
    """Images per second as the bar shows it; below 1 (ViT-H on a CPU core), seconds per image,
    where `0 img/s` would say nothing."""
    rate = done / max(elapsed or 1e-9, 1e-9)
    return f"{rate:.0f} img/s" if rate >= 1 or done == 0 else f"{1 / rate:.1f} s/img"


def forward_autocast(device: torch.device, forward_dtype: str) -> AbstractContextManager:
    """The context of the frozen encoder's forward in `forward_dtype` (`--dtype`): bfloat16
    autocast, or nothing for float32. One for every extracting path: cached chunks and
    `--augment`'s views."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if forward_dtype == "bfloat16" else nullcontext()


def _forward_chunks(encoder: VisionTransformer, forward, data: SplitData, missing: list[tuple[int, int]], *, device: torch.device,
                    chunk_rows: int, n_chunks: int, forward_dtype: str, what: str, console: Console | None,
                    ) -> Iterator[tuple[tuple[int, int], torch.Tensor, torch.Tensor]]:
    """(range, float16 features, row ids) of each range of `missing`, as it finishes, the
    forward run in `forward_dtype` (`forward_autocast`; its features stored as float16 like any)."""
    encoder = encoder.to(device).eval()
    feats, ids, j = [], [], 0
    with progress(console, what) as bar:
        task = bar.add_task("", total=sum(b - a for a, b in missing), rate="")
        for x, rid in data.read(missing):
            with torch.inference_mode(), forward_autocast(device, forward_dtype):
                feats.append(forward(encoder, x.to(device, non_blocking=True)).to("cpu", torch.float16))
            ids.append(rid)
            done = bar.tasks[task].completed + len(x)
            rate = f"{img_rate(done, bar.tasks[task].elapsed)}  chunk {missing[j][0] // chunk_rows + 1}/{n_chunks}"
            bar.update(task, completed=done, rate=rate)
            if sum(map(len, ids)) == missing[j][1] - missing[j][0]:
                yield missing[j], torch.cat(feats), torch.cat(ids)
                feats, ids, j = [], [], j + 1


Chunk = tuple[tuple[int, int], Path | None, torch.Tensor, bool]  # (row range, its cache file if kept, features, extracted now)


def _share(encoder: VisionTransformer, encoder_key: str, forward, data: SplitData, base: str, mine: list[tuple[int, int]], *,
           n_chunks: int, chunk_rows: int, forward_dtype: str, device: torch.device, cache_dir: Path | None, what: str,
           console: Console | None) -> Iterator[Chunk]:
    """Every chunk of `mine`: those a run finished, read from the cache, then the others
    forwarded and cached as each finishes (a cache that cannot be written is not tried again)."""
    done = _finished(cache_dir, base, data, mine)
    for r, (path, feats) in done.items():
        yield r, path, feats, False
    missing = [r for r in mine if r not in done]
    for (a, b), feats, ids in _forward_chunks(encoder, forward, data, missing, device=device, chunk_rows=chunk_rows, n_chunks=n_chunks,
                                              forward_dtype=forward_dtype, what=what, console=console):
        path = None if cache_dir is None else _chunk_path(cache_dir, base, a, b, ids)
        if path is not None and not _save(path, {"concat": feats, "labels": data.labels[a:b], "row_ids": ids,
                                                 "width": encoder.embed_dim, "encoder_key": encoder_key}, console):
            cache_dir = path = None
        yield (a, b), path, feats, True


def _agreed(flag: bool, group: DistInfo) -> bool:
    """Rank 0's `flag` on every rank: a choice the ranks must make alike (whether a split is to
    be extracted at all) is made once, whatever each rank's view of the cache."""
    if not group.enabled:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def _gathered(files: dict[tuple[int, int], Path], ranges: list[tuple[int, int]], n: int, *, group: DistInfo, dtype: torch.dtype,
              what: str) -> torch.Tensor | None:
    """Rank 0's split, read from the chunk files every rank cached for its share; None on the
    other ranks. The cache is the gather: only file names cross the group, once every rank has
    finished its share (the collective waits for all), so no rank holds more than its chunks."""
    parts: list = [None] * group.world_size
    dist.all_gather_object(parts, files)
    if not group.is_main:
        return None
    every = {r: path for part in parts for r, path in part.items()}
    out = None
    for a, b in ranges:
        hit = _load(every[(a, b)]) if (a, b) in every else None
        if hit is None or len(hit["concat"]) != b - a:
            raise ValueError(f"{what}: rows {a}-{b} are not in the feature cache after every rank's share; under torchrun "
                             "the ranks share features through --cache-dir, which every rank must be able to write and read")
        out = _place(out, n, a, hit["concat"], dtype)
    return out


def _split_key(encoder: VisionTransformer, spec: DataSpec, split: str, data: SplitData, *, layers: str, pool: str,
               forward_dtype: str) -> Callable[..., str]:
    """The cache key of a split's chunks, less its rows: float32 (the default) adds nothing, so
    the caches written before bfloat16 existed still hit, and other dtypes never share them."""
    amp = {} if forward_dtype == "float32" else {"forward_dtype": forward_dtype}
    return partial(cache_key, weights=weights_digest(encoder), forward=forward_settings(encoder), data=spec.id, split=split,
                   transform=data.transform, salt=data.salt, layers=layers, pool=pool, **amp)


def _extract(
    encoder: VisionTransformer, encoder_key: str, spec: DataSpec, split: str, *, forward, layers: str, pool: str,
    device: torch.device, img_size: int | None, indices: torch.Tensor | None, batch_size: int, workers: int,
    cache_dir: Path | None, console: Console | None, dtype: torch.dtype = torch.float16, chunk_rows: int = CHUNK_ROWS,
    forward_dtype: str = "float32", group: DistInfo = DistInfo(),
) -> tuple[torch.Tensor | None, torch.Tensor, str]:
    """(`forward(encoder, images)` of every image of `split` as float16, returned as `dtype`,
    labels, the transform's id), from cache where present; the features are None on a torchrun
    rank other than 0 (`group`), which only extracts and caches its share.

    The cache is written in chunks of `chunk_rows` rows as they finish, each file named by
    the key of everything but the data (`base`), its row range and a digest of its rows' ids
    (`SplitData`): a killed run keeps its finished chunks and the next forwards only the rest.
    A chunk is keyed by its own rows' content, not the whole split's, because a resumed run
    reads (to hash) only the files of the chunks it finds kept, and decodes and hashes the
    others as it extracts them: the split's content is checked chunk by chunk, never assumed.
    Under torchrun chunk i is rank i % N's, whichever chunks earlier runs left (`_gathered`).
    """
    size = img_size or encoder.img_size
    data = split_batches(spec, split, size=size, in_chans=encoder.in_chans, indices=indices, batch_size=batch_size, workers=workers, console=console)
    key = _split_key(encoder, spec, split, data, layers=layers, pool=pool, forward_dtype=forward_dtype)
    cache_dir = None if cache_dir is None else Path(cache_dir)
    if indices is not None:
        hit = _from_full_split(cache_dir, key(rows=None), data, indices, dtype) if group.is_main else None
        if _agreed(hit is not None, group):
            return hit, data.labels, data.transform
    base = key(rows=None if indices is None else hashlib.sha256(indices.numpy().tobytes()).hexdigest()[:16])
    n = len(data.labels)
    ranges = [(a, min(a + chunk_rows, n)) for a in range(0, n, chunk_rows)]
    what = f"features {split}" + (f" rank {group.rank}/{group.world_size}" if group.enabled else "")
    chunks = _share(encoder, encoder_key, forward, data, base, ranges[group.rank :: group.world_size], n_chunks=len(ranges),
                    chunk_rows=chunk_rows, forward_dtype=forward_dtype, device=device, cache_dir=cache_dir, what=what, console=console)
    if group.enabled:
        out = _sharded(chunks, ranges, n, group=group, dtype=dtype, chunk_rows=chunk_rows, what=what, console=console)
        if not group.is_main:
            return None, data.labels, data.transform
    else:
        out = None
        for (a, _), _, feats, _ in chunks:
            out = _place(out, n, a, feats, dtype)
    return (torch.zeros(0, encoder.embed_dim, dtype=dtype) if out is None else out), data.labels, data.transform


def _sharded(chunks: Iterator[Chunk], ranges: list[tuple[int, int]], n: int, *, group: DistInfo, dtype: torch.dtype, chunk_rows: int,
             what: str, console: Console | None) -> torch.Tensor | None:
    """This rank's share done (one line saying which chunks it extracted), then the split as
    `_gathered` assembles it on rank 0."""
    files, made = {}, []
    for r, path, _, fresh in chunks:
        if path is not None:
            files[r] = path
        if fresh:
            made.append(r[0] // chunk_rows + 1)
    share = len(ranges[group.rank :: group.world_size])
    (console or Console(stderr=True)).print(f"{what}: extracted chunks {', '.join(map(str, made)) or 'none'} of {len(ranges)}; "
                                            f"{share - len(made)} of its {share} found in the cache", highlight=False, soft_wrap=True)
    return _gathered(files, ranges, n, group=group, dtype=dtype, what=what)


def extract_features(
    encoder: VisionTransformer, encoder_key: str, spec: DataSpec, split: str, *,
    device: torch.device, img_size: int | None = None, indices: torch.Tensor | None = None,
    batch_size: int = 256, workers: int = 0, cache_dir: Path | None = CACHE_DIR,
    console: Console | None = None, chunk_rows: int = CHUNK_ROWS, forward_dtype: str = "float32", group: DistInfo = DistInfo(),
) -> Features | None:
    """Pooled frozen features of `split` (optionally the rows `indices`), from cache if present;
    None on a torchrun rank other than 0 (`group`), once its share is cached.

    The cache key covers a digest of all the encoder's weights (`weights_digest`) and its
    `forward_settings`, the dataset id, the split, the transform, the data's content (each
    chunk's rows' ids, `SplitData`), the pooled layers, the chosen rows and a `forward_dtype`
    other than float32; chosen rows whose split is cached are read from its chunks, bit for
    bit what extracting them would give.
    `encoder_key` (the records' id of the encoder: weights digest and key, or random-init
    recipe) is stored beside the features, not keyed on: the same weights are the same
    features, whichever file, checkpoint key or recipe named them.
    """
    concat, labels, transform = _extract(encoder, encoder_key, spec, split, forward=pooled, layers=f"last{N_LAYERS}", pool="avg", device=device,
                              img_size=img_size, indices=indices, batch_size=batch_size, workers=workers, cache_dir=cache_dir, console=console,
                              dtype=torch.float32, chunk_rows=chunk_rows, forward_dtype=forward_dtype, group=group)
    return None if concat is None else Features(concat, labels, encoder.embed_dim, transform)


def extract_tokens(
    encoder: VisionTransformer, encoder_key: str, spec: DataSpec, split: str, *,
    device: torch.device, img_size: int | None = None, indices: torch.Tensor | None = None,
    batch_size: int = 256, workers: int = 0, cache_dir: Path | None = CACHE_DIR,
    console: Console | None = None, chunk_rows: int = CHUNK_ROWS, forward_dtype: str = "float32", group: DistInfo = DistInfo(),
) -> Tokens | None:
    """Patch tokens of the last block, LayerNorm-ed ([N, T, D], float16), cached like pooled
    features (under another key): for evals that pool themselves."""
    tokens, labels, transform = _extract(encoder, encoder_key, spec, split, forward=lambda enc, x: enc(x), layers="last1-norm", pool="tokens",
                                         device=device, img_size=img_size, indices=indices, batch_size=batch_size, workers=workers,
                                         cache_dir=cache_dir, console=console, chunk_rows=chunk_rows, forward_dtype=forward_dtype, group=group)
    return None if tokens is None else Tokens(tokens, labels, transform)


def pixel_features(spec: DataSpec, split: str, *, indices: torch.Tensor | None = None) -> tuple[Features, int]:
    """(the raw-pixel baseline's features, the images' side in pixels): each image's pixels /
    255 at its native size, as one vector (every feature set is that vector). Tensor datasets
    only (Fashion-MNIST): folder datasets have no native size the heads could share."""
    if not spec.in_memory:
        raise ValueError(f"--raw-pixels: data {spec.id!r} is an image folder; raw pixels are scored on fashion-mnist (and its families) only")
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
