"""The evals' configuration dataclasses and their shared defaults, free of torch: the CLI builds
every eval's options from them and checks a command line and its recipe before torch is
imported (`ijepa eval NAME --help` and a wrong option answer at once). The code that runs an
eval imports them from here (and from its entry in `ijepa.evals.entries`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product
from typing import ClassVar, Literal, get_args

from ijepa.schedule import peak_held, warmup_cosine
from ijepa.typedconfig import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, Range, checked

FEATURE_SETS = ("lastPOOL", "concatPOOL4")
CHUNK_ROWS = 4096  # rows per feature-cache file: what a killed extraction can lose, and a resumed one redoes
FeatureDtype = Literal["float32", "bfloat16"]  # the encoder's forward during extraction (bfloat16: autocast)
FEATURE_DTYPES = get_args(FeatureDtype)
NORMS = ("linear", "bn")  # "bn": BatchNorm1d(affine=False) + linear (MAE/VISSL)
OPTIMIZERS = ("sgd", "lars")
SCHEDULES = ("cosine", "step")
# A random-init encoder for the small classification data (Fashion-MNIST: 32 px, grey, patch 4)
SMALL_RANDOM_INIT = {"img_size": 32, "patch_size": 4, "in_chans": 1}
# The encoder of the classification fixtures (tests/fixtures/imagefolder.py: RGB 32 px)
FIXTURE_ENCODER = ("--random-init", "vit_tiny", "--depth", "1", "--patch-size", "8", "--in-chans", "3", "--device", "cpu")
# The encoder of the dense fixtures (tests/fixtures: ade20k, nyu, fsc147, coco)
DENSE_FIXTURE_ENCODER = ("--random-init", "vit_tiny", "--depth", "2", "--patch-size", "8", "--device", "cpu")


class Rows:
    """A row limit (`--train-limit`, `--eval-limit`): a count >= 1, or a fraction in (0, 1)."""

    def ok(self, n: object) -> bool:
        return not isinstance(n, bool) and isinstance(n, (int, float)) and n > 0 and not (isinstance(n, float) and n >= 1 and n != int(n))

    def __str__(self) -> str:
        return "a number of rows >= 1 or a fraction in (0, 1)"


ROWS = Rows()


class RandAugmentString:
    """A timm RandAugment string (`rand-m9-mstd0.5-inc1`, MAE's `--aa`): 'rand', then dash-separated
    m (magnitude), n (ops per image), p (each op's probability), mstd, mmax, inc (0/1). Checked
    here, not left to timm, because timm asserts on some bad strings and ignores others."""

    PATTERN = re.compile(r"rand(-(m\d+|n\d+|p\d*\.?\d+|mstd\d*\.?\d+|mmax\d+|inc[01]))*")

    def ok(self, value: object) -> bool:
        return isinstance(value, str) and self.PATTERN.fullmatch(value) is not None

    def __str__(self) -> str:
        return "a timm RandAugment string such as 'rand-m9-mstd0.5-inc1' (rand, then -m, -n, -p, -mstd, -mmax, -inc sections)"


RAND_AUGMENT = RandAugmentString()


@dataclass(frozen=True)
class FrozenData:
    """Spec fields of every eval on frozen features: which data, and how it is read."""

    EVAL_LIMIT: ClassVar[str] = "val_limit"  # the field `--eval-limit` sets
    data: str = "fashion-mnist"
    val_limit: int | float | None = checked(None, ROWS)  # the evaluation split's limit (`--eval-limit`)
    img_size: int | None = checked(None, COUNT)  # None: the encoder's own (a multiple of its patch size)
    feature_batch_size: int = checked(256, COUNT)
    workers: int = checked(0, NON_NEGATIVE)
    chunk_rows: int = checked(CHUNK_ROWS, COUNT)  # smaller: a killed extraction loses less, more files
    dtype: FeatureDtype = "float32"


@dataclass(frozen=True)
class FrozenSpec(FrozenData):
    """... plus a seeded train subset (and the seed of every choice made on it)."""

    train_limit: int | float | None = checked(None, ROWS)  # at least an image of each class (`check_classes`)
    seed: int = 0


@dataclass(frozen=True)
class HeadSpec:
    """One head of the grid: its input (feature set, norm), lr and weight decay; a plain value,
    so the grid (`GridConfig.specs`) makes them without importing torch."""

    features: str
    norm: str
    lr: float
    wd: float

    @property
    def name(self) -> str:
        return f"{self.features}/{self.norm}/lr{self.lr:g}/wd{self.wd:g}"


@dataclass(frozen=True)
class GridConfig:
    feature_sets: tuple[str, ...] = FEATURE_SETS
    norms: tuple[str, ...] = NORMS
    lrs: tuple[float, ...] = checked((0.001, 0.003, 0.01, 0.03, 0.1, 0.3), POSITIVE)
    wds: tuple[float, ...] = checked((0.0, 5e-4), NON_NEGATIVE)
    epochs: int = checked(30, COUNT)
    min_steps: int = checked(1000, NON_NEGATIVE)  # small (low-shot) sets get more epochs, not too few updates
    batch_size: int = checked(256, COUNT)
    momentum: float = checked(0.9, Range(ge=0, lt=1))
    heldout: float = checked(0.1, FRACTION)  # fraction of train used to pick the head
    optimizer: Literal["sgd", "lars"] = "sgd"  # "lars": timm's Lars, the paper's ImageNet protocol
    lr_base_batch: int = checked(0, NON_NEGATIVE)  # lrs are for this batch size, scaled linearly to batch_size (VISSL); 0: as given
    schedule: Literal["cosine", "step"] = "cosine"  # "step": lr / 10 every `step_epochs` (the paper's ImageNet recipe)
    step_epochs: int = checked(15, COUNT)
    warmup_epochs: int = checked(0, NON_NEGATIVE)  # cosine only: linear warm-up from 0 over these epochs (MAE's probe: 10)
    standardize: bool = True  # linear heads see train-standardised features ...
    whiten: float = checked(0.01, NON_NEGATIVE)  # ... PCA-whitened, eigenvalues floored here (0: per-feature only); see heads.Standardize
    extend_lrs: int = checked(3, NON_NEGATIVE)  # rounds of growing the lr grid past its edge while the best head sits there
    refit: bool = True  # retrain the chosen head on all of train before scoring it

    def specs(self, lrs: tuple[float, ...] | None = None) -> list[HeadSpec]:
        for n in self.norms:
            if n not in NORMS:
                raise ValueError(f"head norm {n!r}: expected one of {', '.join(NORMS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"head optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"lr schedule {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if self.warmup_epochs and self.schedule != "cosine":  # the step schedule has no warm-up: it would be ignored
            raise ValueError(f"grid.warmup_epochs is {self.warmup_epochs}; expected 0 with grid.schedule {self.schedule!r} (warm-up is cosine's)")
        lrs = self.lrs if lrs is None else lrs
        return [HeadSpec(f, n, lr, wd) for f, n, lr, wd in product(self.feature_sets, self.norms, lrs, self.wds)]

    @property
    def lr_scale(self) -> float:
        """Linear batch scaling of the lrs (VISSL, MAE: lr = blr x batch / 256); 1 without `lr_base_batch`."""
        return self.batch_size / self.lr_base_batch if self.lr_base_batch else 1.0

    def lr_factor(self, step: int, total: int, epoch: int, *, warmup: int = 0) -> float:
        """Schedule x linear batch scaling: what multiplies each head's lr at `step` (`warmup`:
        the warm-up's steps, `warmup_epochs` of the caller's epochs)."""
        scale = self.lr_scale
        if self.schedule == "step":
            return scale * 0.1 ** (epoch // max(self.step_epochs, 1))
        return scale * warmup_cosine(peak_held(step, warmup), total=total, warmup=warmup)  # a factor: the heads of one grid share it


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = checked(50, COUNT)
    batch_size: int = checked(64, COUNT)
    lr: float = checked(1e-3, POSITIVE)
    weight_decay: float = checked(0.05, NON_NEGATIVE)
    layer_decay: float = checked(0.75, Range(gt=0, le=1))
    label_smoothing: float = checked(0.1, Range(ge=0, lt=1))
    warmup_epochs: int = checked(5, NON_NEGATIVE)
    crop_scale: tuple[float, float] = checked((0.3, 1.0), Range(gt=0, le=1))
    horizontal_flip: bool = True
    rand_augment: str | None = checked(None, RAND_AUGMENT)  # timm RandAugment after crop and flip (MAE: rand-m9-mstd0.5-inc1); None: off


@dataclass(frozen=True)
class DenseTrainConfig:
    max_iters: int = 1000
    lr: float = 1e-3  # head lr; the encoder's groups get lr * their lr_scale
    weight_decay: float = 0.01
    warmup_iters: int = 0
    min_lr: float = 0.0
    layer_decay: float = 1.0
    grad_clip: float = 0.0  # 0 = off
    eval_every: int = 0  # 0 = only at the end
    progress: bool = True


@dataclass(frozen=True)
class DenseRun:
    """Fields shared by segmentation, depth and counting (each task subclasses it)."""

    EVAL_LIMIT: ClassVar[str] = "max_eval_images"  # the field `--eval-limit` sets
    data: str = ""
    img_size: int = checked(512, COUNT)  # train crop side (a multiple of the patch size); eval resizes the short side to it
    batch_size: int = checked(16, COUNT)
    max_iters: int = checked(1000, COUNT)
    lr: float = checked(1e-3, POSITIVE)
    weight_decay: float = checked(0.01, NON_NEGATIVE)
    warmup_iters: int = checked(0, NON_NEGATIVE)
    layer_decay: float = checked(1.0, Range(gt=0, le=1))  # fine-tune mode only
    mode: Literal["frozen", "finetune"] = "frozen"
    taps: tuple[int, ...] | None = None  # None = DenseBackbone's default 4
    head: str = "linear"
    eval_every: int = checked(0, NON_NEGATIVE)
    max_eval_images: int | None = checked(None, COUNT)  # quick runs: score the first N images of each split
    workers: int = checked(0, NON_NEGATIVE)
    seed: int = 0
    progress: bool = True

    def train_config(self) -> DenseTrainConfig:
        return DenseTrainConfig(
            max_iters=self.max_iters, lr=self.lr, weight_decay=self.weight_decay, warmup_iters=self.warmup_iters,
            layer_decay=self.layer_decay, eval_every=self.eval_every, progress=self.progress,
        )
