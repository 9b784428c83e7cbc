"""The pretraining input pipeline: dataset -> seeded views -> sharded sampler -> mask collator."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler, Subset

from ijepa.data import PretrainViews, build_dataset, data_spec
from ijepa.masks import MultiBlockMaskCollator
from ijepa.masks.random import RandomMaskCollator
from ijepa.training.config import Config, ConfigError
from ijepa.training.distributed import DistInfo


class EpochSampler(Sampler[int]):
    """Seeded per-epoch shuffle, sharded over ranks, that can start mid-epoch on resume."""

    def __init__(self, n: int, *, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.n, self.rank, self.world, self.seed = n, rank, world_size, seed
        self.per_rank = (n // world_size) // batch_size * batch_size  # whole batches only
        if self.per_rank == 0:
            raise ValueError(f"dataset of {n} images is smaller than one batch of {batch_size} per rank")
        self.batch_size = batch_size
        self.set_epoch(0)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = epoch, start_batch * self.batch_size

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[self.rank :: self.world][: self.per_rank]
        return iter(perm[self.start :].tolist())


def dataset_root(cfg: Config) -> str:
    if cfg.data.dataset == "fashion-mnist" or cfg.data.dataset.startswith("fmnist-clutter:"):
        return cfg.data.dataset if not cfg.data.root_path else f"{cfg.data.dataset}:{cfg.data.root_path}"
    return str(Path(cfg.data.root_path) / cfg.data.image_folder)


def build_collator(cfg: Config, method: str, *, rank: int = 0) -> MultiBlockMaskCollator:
    """The method's mask sampler: random masking for MAE, multi-block for I-JEPA."""
    m = cfg.mask
    if method == "mae":
        return RandomMaskCollator(cfg.data.crop_size, m.patch_size, m.mask_ratio, seed=cfg.meta.seed, rank=rank)
    return MultiBlockMaskCollator(
        input_size=cfg.data.crop_size, patch_size=m.patch_size, enc_mask_scale=m.enc_mask_scale,
        pred_mask_scale=m.pred_mask_scale, aspect_ratio=m.aspect_ratio, nenc=m.num_enc_masks,
        npred=m.num_pred_masks, min_keep=m.min_keep, allow_overlap=m.allow_overlap,
        seed=cfg.meta.seed, rank=rank, sampler=m.sampler,
    )


class PretrainData:
    """Holds the pieces whose epoch position must move together."""

    def __init__(self, cfg: Config, info: DistInfo, pin_memory: bool, method: str = "ijepa") -> None:
        spec = data_spec(dataset_root(cfg))
        base = build_dataset(spec, "train")
        self.num_classes = len(base.classes)
        if cfg.data.subset > len(base):  # a budget computed from it would silently shrink
            raise ConfigError(f"data.subset: {cfg.data.subset} images asked, the train split of {spec.root} has {len(base)}")
        if cfg.data.subset:
            base = Subset(base, range(cfg.data.subset))
        self.views = PretrainViews(
            base, cfg.data.crop_size, crop_scale=cfg.data.crop_scale, in_chans=cfg.meta.in_chans,
            mean=spec.mean, std=spec.std, horizontal_flip=cfg.data.use_horizontal_flip, seed=cfg.meta.seed,
        )
        self.sampler = EpochSampler(
            len(base), batch_size=cfg.data.batch_size, rank=info.rank, world_size=info.world_size, seed=cfg.meta.seed,
        )
        self.collator = build_collator(cfg, method, rank=info.rank)
        self.batch_size, self.num_workers, self.pin_memory = cfg.data.batch_size, cfg.data.num_workers, pin_memory
        self.spec = spec

    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.per_rank // self.batch_size

    def epoch_loader(self, epoch: int, start_batch: int = 0) -> DataLoader:
        self.views.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_batch)
        self.collator.set_epoch(epoch, start_batch)
        return DataLoader(
            self.views, batch_size=self.batch_size, sampler=self.sampler, collate_fn=self.collator,
            num_workers=self.num_workers, pin_memory=self.pin_memory, drop_last=True,
            persistent_workers=False,
        )
