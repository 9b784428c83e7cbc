"""The pretraining input pipeline: dataset -> seeded views -> sharded sampler -> mask collator."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler, Subset

from ijepa.data import DataSpec, PretrainViews, build_dataset, data_spec, fashion_mnist
from ijepa.data.imagefolder import folder_channels
from ijepa.distributed import DistInfo
from ijepa.families import family
from ijepa.masks import MultiBlockMaskCollator
from ijepa.masks.random import RandomMaskCollator
from ijepa.training.config import Config
from ijepa.typedconfig import ConfigError


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
    if cfg.data.dataset == "fashion-mnist" or family(cfg.data.dataset) is not None:
        return cfg.data.dataset if not cfg.data.root_path else f"{cfg.data.dataset}:{cfg.data.root_path}"
    root = Path(cfg.data.root_path) / cfg.data.image_folder
    if not root.is_dir():  # name the keys that make the path: the official defaults point at the authors' cluster
        raise FileNotFoundError(f"{root}: dataset not found (data.root_path {cfg.data.root_path!r} + data.image_folder "
                                f"{cfg.data.image_folder!r}); for a folder of your own images: ijepa pretrain --data DIR")
    return str(root)


def data_channels(spec: DataSpec) -> tuple[int, str]:
    """The channels of the train images (Fashion-MNIST and its families: 1) and what shows it."""
    if spec.in_memory:
        return 1, spec.id
    channels, example = folder_channels(spec.root / "train")
    return channels, str(example)


def data_overrides(data: str) -> list[str]:
    """The `--set` items that point a config at `data` (`ijepa pretrain --data`): the dataset,
    its root, and the model's channels as the data has them (an ImageFolder's from its images)."""
    spec = data_spec(data)
    channels = data_channels(spec)[0]
    if spec.kind == "imagefolder":
        root = spec.root.resolve()
        where = [f"data.root_path={json.dumps(str(root.parent))}", f"data.image_folder={json.dumps(root.name or '.')}"]
        return ["data.dataset=imagefolder", *where, f"meta.in_chans={channels}"]
    dataset = "fashion-mnist" if spec.kind == "fashion-mnist" else spec.id
    root = "" if spec.root == fashion_mnist.DEFAULT_ROOT else str(spec.root)  # "": the default IDX folder
    return [f"data.dataset={dataset}", f"data.root_path={json.dumps(root)}", f"meta.in_chans={channels}"]


def check_channels(spec: DataSpec, in_chans: int) -> int:
    """The data's channels; colour images into a 1-channel model are refused, naming both (a
    grayscale one into a 3-channel model is replicated, and the run says so)."""
    channels, example = data_channels(spec)
    if channels == 3 and in_chans == 1:
        raise ConfigError(f"meta.in_chans: 1 (a grayscale model), but {spec.root / 'train'} holds colour images (e.g. {example}): "
                          "set meta.in_chans=3 (ijepa pretrain --data DIR sets it from the images), or convert them to grayscale first")
    return channels


def _leave_signals_to_main(worker_id: int) -> None:
    """A loader worker ignores Ctrl-C (sent to the whole process group): the main process saves
    and stops the run (a worker killed by it would make the loader raise mid-step). SIGTERM is
    left alone: the loader's own shutdown terminates a worker that does not exit, and a worker
    deaf to it hangs the run (seen: an unreadable image's error waited forever on its worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
        self.channels = check_channels(spec, cfg.meta.in_chans)
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

    def describe(self, *, in_chans: int, crop_size: int) -> str:
        """One line: what the run reads and how it becomes the model's input."""
        spec = self.spec
        name = str(spec.root.resolve()) if spec.kind == "imagefolder" else spec.id
        if self.channels == in_chans:
            chans = f"{'colour' if in_chans == 3 else 'grayscale'} images, {in_chans} channel{'s' * (in_chans > 1)} (meta.in_chans)"
        else:
            chans = "grayscale images replicated to the model's 3 channels (meta.in_chans: 3; 1 trains them as one channel)"
        norm = "ImageNet mean/std" if spec.kind == "imagefolder" else "its own mean/std"
        return (f"data: {name}: {len(self.views)} train images, {self.num_classes} classes; {chans}; "
                f"random crops resized to {crop_size} px (data.crop_size), {norm}")

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
            persistent_workers=False, worker_init_fn=_leave_signals_to_main,
        )
