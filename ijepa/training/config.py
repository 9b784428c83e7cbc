"""Typed pretraining config: the official YAML sections, one set of defaults, dotted overrides.

Defaults are the official `in1k_vith14_ep300.yaml`; the official files load unchanged.
Keys this project adds are marked `# ours`. The typed loader every eval recipe goes through
(`ijepa.typedconfig`) reads the YAML and the `--set` overrides, coerces the values and names
a bad or unknown key (and the key it likely meant); the checks across keys are here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ijepa import families, typedconfig
from ijepa.typedconfig import ConfigError


@dataclass
class DataConfig:
    batch_size: int = 128
    color_jitter_strength: float = 0.0
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_size: int = 224
    image_folder: str = "imagenet_full_size/061417/"
    num_workers: int = 10
    pin_mem: bool = True
    root_path: str = "/datasets01/"
    use_color_distortion: bool = False
    use_gaussian_blur: bool = False
    use_horizontal_flip: bool = False
    dataset: str = "imagefolder"  # ours: "fashion-mnist", "fmnist-clutter:LEVEL", "fmnist-noise:LEVEL" (root_path: the IDX files) or "imagefolder" (root_path/image_folder)
    subset: int = 0  # ours: train on the first N images only (0 = all); for tests and sweeps


@dataclass
class MaskConfig:
    allow_overlap: bool = False
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    enc_mask_scale: tuple[float, float] = (0.85, 1.0)
    min_keep: int = 10
    num_enc_masks: int = 1
    num_pred_masks: int = 4
    patch_size: int = 14
    pred_mask_scale: tuple[float, float] = (0.15, 0.2)
    mask_ratio: float = 0.75  # ours: MAE, fraction of patches hidden from the encoder
    sampler: str = "official"  # ours: "official" (the official statistics) or "uniform" (independent scale/aspect, full grid)


@dataclass
class MetaConfig:
    copy_data: bool = False
    load_checkpoint: bool = False
    model_name: str = "vit_huge"
    pred_depth: int = 12
    pred_emb_dim: int = 384
    read_checkpoint: str | None = None
    use_bfloat16: bool = True  # bf16 autocast on CUDA
    cpu_bfloat16: bool = False  # ours: bf16 autocast on CPU too (about 3x slower on a CPU without AVX512-BF16/AMX)
    depth: int = 0  # ours: encoder depth override (0 = the named architecture's)
    in_chans: int = 3  # ours: 1 trains directly on grayscale
    loss: str = "smooth_l1"  # ours: "smooth_l1" (official code) or "l2" (paper text)
    patch_embed_std: float = 0.0  # ours: init std of the patch projection (0 = official 0.02)
    init: str = "official"  # ours: "official" (as official training: no depth rescale) or "rescaled" (constructor's sqrt(2 * layer))
    var_weight: float = 0.0  # ours: C-JEPA (Mo & Tong, 2024) variance term on pooled context features
    cov_weight: float = 0.0  # ours: C-JEPA covariance term on the same features
    sigreg_weight: float = 0.0  # ours: LeJEPA's SIGReg (Epps-Pulley on random 1-D projections) on the same features
    target_layers: int = 1  # ours: average the last K target blocks, each layer-normed (data2vec)
    seed: int = 0  # ours
    compile: bool = False  # ours: torch.compile the encoder and predictor
    device: str = "auto"  # ours: "auto", "cpu", "cuda", "cuda:N"
    reset_optimizer: bool = False  # ours: on resume, load the weights but restart AdamW's moments (a checkpoint without matching 'opt')
    dec_depth: int = 8  # ours: MAE decoder blocks
    dec_emb_dim: int = 512  # ours: MAE decoder width
    norm_pix_loss: bool = True  # ours: MAE's target, each patch standardised (its paper's setting; False: raw pixels)


@dataclass
class OptimizationConfig:
    ema: tuple[float, float] = (0.996, 1.0)
    epochs: float = 300  # fractional epochs allowed (ours): small budgets on small data
    final_lr: float = 1.0e-06
    final_weight_decay: float = 0.4
    ipe_scale: float = 1.0
    lr: float = 0.001
    start_lr: float = 0.0002
    warmup: float = 40
    weight_decay: float = 0.04
    accum_steps: int = 1  # ours: gradient accumulation (effective batch = batch_size x this)
    max_steps: int = 0  # ours: stop after this many optimizer steps (0 = run the schedule out)


@dataclass
class LoggingConfig:
    folder: str = "runs/"
    write_tag: str = "jepa"
    log_every: int = 10  # ours: steps between CSV rows
    checkpoint_every: int = 500  # ours: steps between checkpoints (and one at the end)
    diag_every: int = 50  # ours: steps between RankMe / collapse checks
    collapse_ratio: float = 0.2  # ours: warn when target-feature std < ratio x its start
    stop_on_collapse: bool = False  # ours
    online_probe: bool = True  # ours: linear head on detached target features, trained online
    progress: bool = True  # ours: a progress bar on a terminal, one line per log row otherwise
    keep_last: int = 2  # ours: also keep checkpoint-step{N}.pt of the last N checkpoints (0 = only checkpoint.pt)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {s: {k: list(v) if isinstance(v, tuple) else v for k, v in sec.items()} for s, sec in d.items()}


def from_dict(raw: dict[str, Any], base: Config | None = None) -> Config:
    """Merge a nested dict into `base` (defaults if None), checking every key and type."""
    cfg = typedconfig.build(Config, raw, where="", base=base)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    if cfg.mask.sampler not in ("official", "uniform"):
        raise ConfigError(f"mask.sampler: expected official or uniform, got {cfg.mask.sampler!r}")
    if cfg.meta.init not in ("official", "rescaled"):
        raise ConfigError(f"meta.init: expected official or rescaled, got {cfg.meta.init!r}")
    if cfg.meta.loss not in ("smooth_l1", "l2"):
        raise ConfigError(f"meta.loss: expected smooth_l1 or l2, got {cfg.meta.loss!r}")
    if cfg.meta.target_layers < 1:
        raise ConfigError(f"meta.target_layers: expected >= 1, got {cfg.meta.target_layers}")
    validate_dataset(cfg.data.dataset)
    for key in ("use_color_distortion", "use_gaussian_blur"):
        if getattr(cfg.data, key):
            raise ConfigError(f"data.{key}: not supported (the official I-JEPA recipe leaves it off)")
    if cfg.data.batch_size < 1 or cfg.optimization.epochs <= 0 or cfg.optimization.accum_steps < 1:
        raise ConfigError("data.batch_size, optimization.accum_steps must be >= 1 and optimization.epochs > 0")
    if cfg.optimization.warmup > cfg.optimization.epochs:
        raise ConfigError(f"optimization.warmup: {cfg.optimization.warmup:g} epochs of warm-up are longer than the run's "
                          f"optimization.epochs {cfg.optimization.epochs:g} (the lr would never reach its peak); expected warmup <= epochs")
    for key, low in (("log_every", 1), ("checkpoint_every", 1), ("diag_every", 0), ("keep_last", 0)):
        if getattr(cfg.logging, key) < low:
            raise ConfigError(f"logging.{key}: expected >= {low}{' (0 = off)' if low == 0 else ''}, got {getattr(cfg.logging, key)}")
    validate_ranges(cfg)
    validate_official(cfg)


def validate_dataset(dataset: str) -> None:
    """`data.dataset`: fashion-mnist, imagefolder or a family's `FAMILY:LEVEL` (its root in
    data.root_path), checked without importing the data stack."""
    if dataset in ("fashion-mnist", "imagefolder"):
        return
    try:
        parsed = families.parse(dataset)
    except ValueError as e:
        raise ConfigError(f"data.dataset: {e}") from None
    if parsed is None or parsed[2]:
        raise ConfigError(f"data.dataset: expected fashion-mnist, {families.spellings()} or imagefolder (a root in data.root_path), "
                          f"got {dataset!r}")


# (section.key, lowest value, whether the lowest is allowed): numbers outside their meaning.
MINIMA = (
    ("data.crop_size", 1, True), ("mask.patch_size", 1, True), ("data.num_workers", 0, True), ("data.subset", 0, True),
    ("mask.num_enc_masks", 1, True), ("mask.num_pred_masks", 1, True), ("mask.min_keep", 1, True),
    ("meta.depth", 0, True), ("meta.pred_depth", 1, True), ("meta.pred_emb_dim", 1, True),
    ("meta.dec_depth", 1, True), ("meta.dec_emb_dim", 1, True), ("meta.patch_embed_std", 0, True),
    ("meta.var_weight", 0, True), ("meta.cov_weight", 0, True), ("meta.sigreg_weight", 0, True),
    ("optimization.lr", 0, True), ("optimization.start_lr", 0, True), ("optimization.final_lr", 0, True),
    ("optimization.weight_decay", 0, True), ("optimization.final_weight_decay", 0, True),
    ("optimization.warmup", 0, True), ("optimization.ipe_scale", 0, False), ("optimization.max_steps", 0, True),
    ("logging.collapse_ratio", 0, True),
)
# (section.key, lowest, highest, lowest allowed): pairs [a, b] with lowest <= a <= b <= highest.
PAIRS = (
    ("optimization.ema", 0.0, 1.0, True), ("data.crop_scale", 0.0, 1.0, False), ("mask.enc_mask_scale", 0.0, 1.0, False),
    ("mask.pred_mask_scale", 0.0, 1.0, False), ("mask.aspect_ratio", 0.0, float("inf"), False),
)


def _get(cfg: Config, name: str) -> Any:
    section, key = name.split(".")
    return getattr(getattr(cfg, section), key)


def validate_ranges(cfg: Config) -> None:
    """Values outside their meaning (a negative lr, an EMA momentum above 1 or decreasing, a
    crop the patch does not tile) are one line naming the key and the range."""
    for name, low, inclusive in MINIMA:
        v = _get(cfg, name)
        if v < low or (v == low and not inclusive):
            raise ConfigError(f"{name}: expected {'>=' if inclusive else '>'} {low}, got {v}")
    for name, low, high, inclusive in PAIRS:
        a, b = _get(cfg, name)
        if not ((a >= low if inclusive else a > low) and a <= b <= high):
            lo = f"{low} {'<=' if inclusive else '<'}"
            raise ConfigError(f"{name}: expected [a, b] with {lo} a <= b <= {high}, got {[a, b]}")
    if not 0 < cfg.mask.mask_ratio < 1:
        raise ConfigError(f"mask.mask_ratio: expected 0 < ratio < 1, got {cfg.mask.mask_ratio}")
    if cfg.meta.in_chans not in (1, 3):
        raise ConfigError(f"meta.in_chans: expected 1 or 3, got {cfg.meta.in_chans}")
    if cfg.data.crop_size % cfg.mask.patch_size:
        raise ConfigError(f"data.crop_size: {cfg.data.crop_size} is not a multiple of mask.patch_size {cfg.mask.patch_size} "
                          f"(the last {cfg.data.crop_size % cfg.mask.patch_size} px would be dropped)")


def validate_official(cfg: Config) -> None:
    """Official keys this trainer cannot honour are refused, never silently ignored."""
    if cfg.data.dataset == "imagefolder" and not cfg.data.image_folder:
        raise ConfigError("data.image_folder: expected the image tree's folder under data.root_path, got an empty value")
    if cfg.data.color_jitter_strength:
        raise ConfigError("data.color_jitter_strength: not supported (it acts only with data.use_color_distortion, which is not supported)")
    if cfg.meta.copy_data:
        raise ConfigError("meta.copy_data: not supported (the official trainer copies ImageNet to its cluster's local "
                          "scratch); copy the data yourself and point data.root_path at the copy")
    if cfg.meta.read_checkpoint and not cfg.meta.load_checkpoint:
        raise ConfigError("meta.read_checkpoint: set while meta.load_checkpoint is false, so it would be ignored; "
                          "set meta.load_checkpoint: true to resume from it")


def given_values(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The values a person gave, nested and not yet checked: a config file's (a path or a
    shipped config's name) with every `--set` merged over them."""
    values = typedconfig.read_yaml(find_config(path)) if path else {}
    for item in overrides:  # all of them, then one check: the order of --set never matters
        values = typedconfig.merge(values, typedconfig.parse_set(item))
    return values


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML (a path or a shipped config's name; defaults to the packaged Fashion-MNIST
    recipe) and apply `--set` overrides."""
    return from_dict(given_values(path or DEFAULT_CONFIG, overrides))


CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIGS / "fmnist_vit_tiny.yaml"


def find_config(name: str | Path) -> Path:
    """A config file: the path itself if it exists, else a shipped config (`ijepa/configs/`)
    by name, with or without `.yaml`."""
    path = Path(name)
    if path.is_file():
        return path
    if path.parent == Path("."):
        shipped = CONFIGS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
        if shipped.is_file():
            return shipped
        names = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
        raise ConfigError(f"{path}: config file not found, nor a shipped config ({names})")
    raise ConfigError(f"{path}: config file not found")
