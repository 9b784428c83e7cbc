"""Learning and compute curves: runs of a val-chosen recipe sized to a budget, scored piece by piece.

A point is one pretraining run of a recipe that the sweeps chose on `val`: a variant of a
`benchmarks/sweeps/*.yaml` grid whose `recipe_sweep` record on val must exist (its overrides
less their sizing are the recipe; its warm-up, as a fraction of its run, is kept at every
budget). The budget is minutes at a reference img/s (the learning curve) or FLOPs (the
compute curve: steps = budget / the recipe's closed-form FLOPs per step,
`ijepa.bench.flops.mean_step_flops`). Each piece -- one run's pretraining, one probe of it on
one split -- writes its own record and is skipped when that record exists, so a background
queue runs them one at a time and resumes where it stopped (a half-trained run resumes
exactly from its checkpoint). Runs are named by method, variant and steps, so the learning
curve's and the compute curve's I-JEPA runs of the same steps are one run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ijepa.bench.flops import budget_config, mean_step_flops, pretrain_compute
from ijepa.bench.grids import read_grid
from ijepa.bench.sweep import FMNIST, canonical_data, data_overrides, data_slug, record_dataset
from ijepa.evals.core.features import CACHE_DIR
from ijepa.families import family
from ijepa.results.io import read_records, write_record
from ijepa.training.config import Config, ConfigError, find_config, load_config

N_TRAIN = 50_000  # the Fashion-MNIST train split (val is held out of the official 60k)
DEFAULT_MINUTES = 15  # the budget the packaged recipe is sized to
MATCH_TOL = 0.05  # measured training FLOPs vs the budget
TOKENS = ("method=", "budget_pflops=")  # recipe_sweep's own tokens
SIZING = ("data.subset=", "optimization.epochs=", "optimization.ipe_scale=", "optimization.max_steps=", "logging.")
EVALS = Path(__file__).resolve().parents[2] / "evals"
BASELINES = ("random-init", "raw-pixels")


@dataclass(frozen=True)
class Probe:
    """One way of scoring a run: an eval of the registry, its recipe file and fixed overrides."""

    eval: str
    config: Path | None
    sets: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("test",)  # the splits it can score


PROBES = {
    "linear": Probe("linear", EVALS / "linear_fmnist.yaml", splits=("val", "test")),
    "logreg": Probe("linear", EVALS / "linear_fmnist_logreg.yaml", splits=("val", "test")),
    "knn": Probe("knn", None),
    "lowshot": Probe("lowshot", EVALS / "lowshot_fmnist.yaml"),
    "finetune": Probe("lowshot", EVALS / "lowshot_fmnist.yaml", ("protocol=finetune", "fractions=[0.01]")),
}


@dataclass(frozen=True)
class Recipe:
    """A sweep variant as a recipe: what every budget applies, and where it was chosen."""

    grid: str
    base: str | None  # the config the grid's overrides apply to (None: the packaged default)
    variant: str
    method: str
    overrides: tuple[str, ...]  # the variant's line in the grid
    applied: tuple[str, ...]  # the overrides less their sizing (subset, epochs, budget)
    warmup_fraction: float  # of the variant's sweep run
    val: dict[str, Any]  # its recipe_sweep record on val: path and scores
    extra: tuple[str, ...] = ()  # more overrides (a depth axis, smoke tests); part of every run's identity
    data: str = FMNIST  # the dataset (`canonical_data`) it was chosen on and runs on

    def provenance(self) -> dict[str, Any]:
        return {"grid": self.grid, "base": self.base, "variant": self.variant, "method": self.method, "overrides": list(self.overrides),
                "applied": list(self.applied), "extra": list(self.extra), "warmup_fraction": self.warmup_fraction, "val": self.val,
                "data": self.data}

    @property
    def selected_on(self) -> str:
        return chosen_on(self.val)

    def config(self, *sets: str) -> Config:
        return load_config(self.base, [*self.applied, *data_overrides(self.data), *self.extra, *sets])


def chosen_on(val: dict[str, Any]) -> str:
    """A recipe's `selected_on`: a sweep variant (it has a val record) was chosen on val; a config
    given as it stands was chosen by its user."""
    return "val" if val else "none (a given config)"


def warmup_fraction(o: Any) -> float:
    """A schedule's warm-up as a fraction of its run (`optimization` of a config): what every budget keeps."""
    return min(1.0, o.warmup / (o.ipe_scale * o.epochs))


def _token(overrides: Sequence[str], name: str) -> str | None:
    return next((o.split("=", 1)[1] for o in overrides if o.startswith(f"{name}=")), None)


def val_record(variant: str, overrides: list[str], results_dir: Path, where: str, data: str = FMNIST) -> dict[str, Any]:
    """The variant's latest recipe_sweep record scored on val on `data`: a recipe never scored
    there was not chosen there."""
    recs = [r for r in read_records(results_dir) if r.get("kind") == "recipe_sweep" and r.get("encoder") == variant
            and r.get("overrides") == overrides and record_dataset(r) == data]
    on_val = sorted((r for r in recs if r.get("reported_on") == "val"), key=lambda r: str(r["created"]))
    if not on_val:
        seen = f" (its records report on {', '.join(sorted({str(r.get('reported_on')) for r in recs}))})" if recs else ""
        raise ValueError(f"{where}: no recipe_sweep record on val on {data} under {results_dir}/records{seen}; a recipe is chosen on "
                         f"val first (ijepa bench sweep {where.rpartition(':')[0]} --only {variant} --data {data})")
    r = on_val[-1]
    return {"record": r["_path"], "probe_best": r.get("probe_best"), "grid_val_top1": r.get("grid_val_top1"), "created": r["created"]}


def read_recipe(ref: str, *, results_dir: Path, extra: Sequence[str] = (), data: str = FMNIST) -> Recipe:
    """`GRID.yaml:VARIANT` -> the recipe on `data`, with its val record there (a variant a grid
    takes from another grid is that grid's: its identity is where it is defined)."""
    grid_path, sep, variant = ref.rpartition(":")
    if not sep or not grid_path or not variant:
        raise ValueError(f"recipe {ref!r}: expected GRID.yaml:VARIANT (a variant of a benchmarks/sweeps grid)")
    grid = read_grid(grid_path)
    if variant not in grid.variants:
        raise ValueError(f"{grid.path}: no variant {variant!r} (it has {', '.join(grid.variants) or 'none'})")
    grid = grid.origin(variant)
    path, overrides, data = grid.path, grid.variants[variant], canonical_data(data)
    method, budget = _token(overrides, "method") or "ijepa", _token(overrides, "budget_pflops")
    sets = [o for o in overrides if not o.startswith(TOKENS)]
    shape = grid.config([*sets, *(["optimization.epochs=1"] if budget else [])]).optimization  # as the sweep ran it
    return Recipe(grid=str(path), base=None if grid.base is None else str(grid.base), variant=variant, method=method,
                  overrides=tuple(overrides), applied=tuple(o for o in sets if not o.startswith(SIZING)),
                  warmup_fraction=warmup_fraction(shape),
                  val=val_record(variant, overrides, results_dir, f"{path}:{variant}", data), extra=tuple(extra), data=data)


def is_config(ref: str) -> bool:
    """Whether `ref` names a pretraining config (a file of sections, or a shipped config's name)
    rather than a sweep grid (variant names -> lists of overrides)."""
    if ":" in ref:
        return False
    try:
        raw = yaml.safe_load(find_config(ref).read_text(encoding="utf-8"))
    except (ConfigError, OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and bool(raw) and all(isinstance(v, dict) for v in raw.values())


def config_recipe(ref: str, *, method: str, extra: Sequence[str] = (), data: str = FMNIST) -> Recipe:
    """A pretraining config as a recipe, as it stands (not chosen on val: its records say so);
    every budget keeps its warm-up as the same fraction of the run."""
    path = find_config(ref)
    return Recipe(grid=str(path), base=str(path), variant=path.stem, method=method, overrides=(), applied=(),
                  warmup_fraction=warmup_fraction(load_config(path).optimization), val={}, extra=tuple(extra), data=canonical_data(data))


def reference_img_per_s() -> float:
    """What minutes mean: the packaged recipe's images in its 15 minutes (about 100 img/s; an idle 2-core CPU)."""
    return load_config().optimization.epochs * N_TRAIN / (DEFAULT_MINUTES * 60)


@dataclass(frozen=True)
class Run:
    """One pretraining run of a recipe: `steps` optimizer steps, its schedule ending there."""

    recipe: Recipe
    steps: int
    budget_flops: float
    flops_per_step: float  # closed form, mean over the run's masks
    img_per_s: float  # the reference that turns images into minutes
    cfg: Config
    budget_minutes: float | None = None  # the budget as minutes of the (I-JEPA) recipe it was given as

    @property
    def name(self) -> str:
        """method-variant-steps, then the dataset's tag and a digest of extra overrides where there are any."""
        return run_name(self.recipe, self.steps)

    @property
    def images(self) -> int:
        return self.steps * self.cfg.data.batch_size * self.cfg.optimization.accum_steps

    def identity(self) -> dict[str, Any]:
        r = self.recipe
        return {"method": r.method, "recipe": r.variant, "recipe_grid": r.grid, "applied": list(r.applied), "extra": list(r.extra),
                "steps": self.steps, **data_identity(r.data)}


def data_identity(data: str) -> dict[str, str]:
    """The dataset in a piece's identity: absent for Fashion-MNIST (the records made before
    datasets were named), so those pieces are found again."""
    return {} if data == FMNIST else {"data": data}


def run_name(recipe: Recipe, steps: int) -> str:
    name = f"{recipe.method}-{recipe.variant}-{steps}"
    if slug := data_slug(recipe.data):
        name += f"-{slug}"
    if recipe.extra:
        name += "-x" + hashlib.sha256(json.dumps(list(recipe.extra)).encode()).hexdigest()[:8]
    return name


def plan_run(recipe: Recipe, *, folder: str, budget_flops: float | None = None, minutes: float | None = None,
             img_per_s: float | None = None, budget_minutes: float | None = None) -> Run:
    """The run a budget buys: `minutes` of images at `img_per_s`, or `budget_flops` at the recipe's cost per step
    (`budget_minutes`: what those FLOPs were in minutes of another recipe, for the record)."""
    if (budget_flops is None) == (minutes is None):
        raise ValueError("give one budget: FLOPs or minutes")
    ips = img_per_s or reference_img_per_s()
    base = recipe.config()
    per_step = mean_step_flops(base, recipe.method)
    if minutes is not None:
        if not minutes > 0:
            raise ValueError(f"budget {minutes!r} minutes: expected > 0")
        steps = minutes_steps(base, minutes, ips)
        budget_flops = steps * per_step
    elif not budget_flops > 0:
        raise ValueError(f"budget {budget_flops!r} FLOPs: expected > 0")
    else:
        steps = max(1, round(budget_flops / per_step))
    name = run_name(recipe, steps)
    cfg = recipe.config(f"logging.folder={folder}", f"logging.write_tag={name}")
    ipe = (cfg.data.subset or n_train(recipe.data)) // cfg.data.batch_size // cfg.optimization.accum_steps
    cfg = budget_config(cfg, steps, ipe, warmup_fraction=recipe.warmup_fraction)
    return Run(recipe, steps, float(budget_flops), per_step, ips, cfg, minutes if minutes is not None else budget_minutes)


def n_train(data: str) -> int:
    """Images in the train split (Fashion-MNIST and its families: 50,000, read without decoding)."""
    if data.startswith(FMNIST) or family(data) is not None:
        return N_TRAIN
    from ijepa.data import build_dataset, data_spec

    return len(build_dataset(data_spec(data), "train"))


def find_record(results_dir: Path, kind: str, piece: dict[str, Any]) -> dict[str, Any] | None:
    """The latest record of this piece (same kind and identity), or None: what makes a queue resumable."""
    recs = [r for r in read_records(results_dir) if r.get("kind") == kind and r.get("piece") == piece]
    return max(recs, key=lambda r: str(r["created"])) if recs else None


def compute_fields(run: Run, measured: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """What every record of the run carries: budget, steps, images, FLOPs and minutes."""
    c = run.cfg
    return {"method": run.recipe.method, "budget_pflops": run.budget_flops / 1e15, "steps": run.steps, "batch_size": measured["batch_size"],
            "images_seen": run.images, "budget_minutes": run.budget_minutes, "ref_img_per_s": run.img_per_s,
            "flops_per_step": measured["flops_per_step"], "flops_per_image": measured["flops_per_step"] / measured["batch_size"],
            "pretrain_flops": measured["pretrain_flops"], "pretrain_pflops": measured["pretrain_flops"] / 1e15,
            "flops_rel_budget": measured["pretrain_flops"] / run.budget_flops - 1, "wall_minutes": wall_s / 60,
            "arch": c.meta.model_name, "depth": c.meta.depth, "img_size": c.data.crop_size, "patch_size": c.mask.patch_size,
            "in_chans": c.meta.in_chans, "run_dir": measured["run_dir"], "recipe": run.recipe.provenance(), **dataset_fields(run.recipe.data)}


def dataset_fields(data: str) -> dict[str, Any]:
    """What a curve record says of its data: `dataset` (what tables and figures group by; its
    family, `ijepa.families.family`) and its level (Fashion-MNIST: 0, the level of every family)."""
    fam = family(data)
    return {"dataset": data, "dataset_level": fam[1] if fam else (0.0 if data.startswith(FMNIST) else None)}


def pretrain_run(run: Run, *, results_dir: Path) -> tuple[dict[str, Any], bool]:
    """(the run's `curve.pretrain` record, whether it was already there). Trains or resumes the
    run, then checks it: the steps asked for, measured FLOPs within 5% of the budget."""
    from ijepa.models.checkpoint import read_checkpoint
    from ijepa.training.loop import pretrain

    piece = run.identity()
    done = find_record(results_dir, "curve.pretrain", piece)
    if done is not None:
        check_match(done, run.budget_flops)
        return done, True
    run_dir = pretrain(run.cfg, method=run.recipe.method, resume=True)
    measured = pretrain_compute(run_dir, wall_s=float(read_checkpoint(run_dir)["wall_s"]))
    if measured["steps"] != run.steps:
        raise ValueError(f"{run_dir}: the checkpoint is at step {measured['steps']}, the budget asks for {run.steps}")
    rec = {"kind": "curve.pretrain", "encoder": run.name, "piece": piece, **compute_fields(run, measured, measured["pretrain_wall_s"]),
           "target_digest": target_digest(run_dir), "selected_on": run.recipe.selected_on, "reported_on": "none (no data split)"}
    check_match(rec, run.budget_flops)
    write_record(rec, results_dir=results_dir)
    return rec, False


def check_match(rec: dict[str, Any], budget_flops: float) -> None:
    rel = rec["pretrain_flops"] / budget_flops - 1
    if abs(rel) > MATCH_TOL:
        raise ValueError(f"{rec['encoder']}: measured {rec['pretrain_flops']:.4g} training FLOPs are {rel:+.1%} off the budget "
                         f"{budget_flops:.4g} (more than {MATCH_TOL:.0%})")


def baseline_fields(method: str, recipe: Recipe | None, data: str = FMNIST) -> dict[str, Any]:
    """A reference line's compute fields (no pretraining) and identity on `data` (a recipe's
    own, when given): random init of the recipe's encoder, or raw pixels."""
    data = recipe.data if recipe is not None else canonical_data(data)
    ds = {**dataset_fields(data), "piece": {"method": method, **data_identity(data)}}
    if method == "raw-pixels":
        return {"method": method, "steps": 0, "images_seen": 0, "pretrain_flops": 0.0, "wall_minutes": 0.0, **ds}
    if method != "random-init" or recipe is None:
        raise ValueError(f"baseline {method!r}: expected {' or '.join(BASELINES)} (random-init needs the recipe whose encoder it is)")
    c = recipe.config()
    arch = {"arch": c.meta.model_name, "depth": c.meta.depth, "img_size": c.data.crop_size, "patch_size": c.mask.patch_size,
            "in_chans": c.meta.in_chans, "seed": c.meta.seed, "init": c.meta.init, "patch_embed_std": c.meta.patch_embed_std}
    return {"method": method, "steps": 0, "images_seen": 0, "pretrain_flops": 0.0, "wall_minutes": 0.0, **arch, **ds,
            "piece": {"method": method, **arch, **data_identity(data)}}


def probe_metrics(probe: str, rec: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(metric -> top-1, metric -> std over seeds) of an eval record: one per table column."""
    if PROBES[probe].eval != "lowshot":
        return {probe: rec["top1"]}, {}
    label = "finetune" if probe == "finetune" else "lowshot"
    fr = sorted(rec["fractions"].items(), key=lambda f: float(f[0]))
    return ({f"{label} {float(f):.0%}": r["top1"] for f, r in fr}, {f"{label} {float(f):.0%}": r["top1_std"] for f, r in fr})


def run_probe(encoder: Any, probe: str, *, split: str, sets: Sequence[str], device: str, cache_dir: Path | None,
              data: str = FMNIST) -> dict[str, Any]:
    """The eval record of one probe on `data`, through the registry exactly as `ijepa eval` runs it."""
    from ijepa import typedconfig
    from ijepa.evals.registry import Context, get, run_eval

    p = PROBES[probe]
    entry = get(p.eval)
    data_set = [] if data == FMNIST else [f"data={data}"]
    spec = typedconfig.load(entry.spec, p.config, overrides=[*p.sets, *data_set, *([f"eval_split={split}"] if split != "test" else []), *sets])
    rec = run_eval(entry, encoder, spec, Context(device=torch.device(device), cache_dir=cache_dir))
    if rec["reported_on"] != split:
        raise ValueError(f"probe {probe}: the eval reported on {rec['reported_on']!r}, not {split!r}")
    return rec


def encoder_of(fields: dict[str, Any]) -> Any:
    """What a probe scores: the run's target encoder, the recipe's encoder at random init, or raw pixels."""
    from ijepa.evals.core.encoders import EncoderSpec

    if fields["method"] == "raw-pixels":
        return EncoderSpec(raw_pixels=True)
    if fields["method"] != "random-init":
        return fields["run_dir"]
    return EncoderSpec(random_init=fields["arch"], img_size=fields["img_size"], patch_size=fields["patch_size"], in_chans=fields["in_chans"],
                       depth=fields["depth"], seed=fields["seed"], init=fields.get("init", "official"),
                       patch_embed_std=fields.get("patch_embed_std", 0.0))


def target_digest(run_dir: str | Path) -> str:
    """The digest of a run's target encoder weights (what every probe scores)."""
    from ijepa.models.load import load_encoder

    return load_encoder(run_dir).source.digest


def pretrained(run: Run, results_dir: Path) -> dict[str, Any]:
    """The run's `curve.pretrain` record; scoring a run that has none is an error (pretrain it first).

    Records are committed, runs are not: on a machine without the run's checkpoint it is
    trained again (runs are deterministic) and must come out with the recorded weights
    digest, so a probe never scores other weights than the record describes."""
    from ijepa.models.checkpoint import read_checkpoint
    from ijepa.training.loop import pretrain

    rec = find_record(results_dir, "curve.pretrain", run.identity())
    if rec is None:
        raise ValueError(f"{run.name}: no curve.pretrain record under {results_dir}/records; run its `pretrain` piece first")
    if not (Path(rec["run_dir"]) / "checkpoint.pt").is_file():
        print(f"{rec['run_dir']}: checkpoint not here (runs are not committed); training it again", file=sys.stderr)
        run_dir = pretrain(run.cfg, method=run.recipe.method, resume=True)
        if Path(run_dir).resolve() != Path(rec["run_dir"]).resolve() or read_checkpoint(run_dir)["step"] != rec["steps"]:
            raise ValueError(f"{run_dir}: retrained run does not match its record ({rec['run_dir']}, {rec['steps']} steps)")
        if "target_digest" in rec and target_digest(run_dir) != rec["target_digest"]:
            raise ValueError(f"{run_dir}: retrained weights differ from the record's target_digest {rec['target_digest']}")
    return rec


def recipe_selected_on(fields: dict[str, Any]) -> str | None:
    """Where a pretrained run's recipe was chosen (None: a reference line, no recipe)."""
    return chosen_on(fields["recipe"].get("val")) if "recipe" in fields else None


def score(fields: dict[str, Any], probe: str, *, split: str, results_dir: Path, sets: Sequence[str] = (),
          device: str = "cpu", cache_dir: Path | None = CACHE_DIR, val_first: bool = False) -> tuple[dict[str, Any], bool]:
    """(the `curve.score` record of one probe of a run on one split, whether it was already there).

    `fields`: a `curve.pretrain` record, or `baseline_fields`. `val_first`: test only after val
    (the learning curve reads val before test)."""
    if probe not in PROBES:
        raise ValueError(f"probe {probe!r}: expected one of {', '.join(PROBES)}")
    if split not in PROBES[probe].splits:
        raise ValueError(f"probe {probe} on {split!r}: it scores {' and '.join(PROBES[probe].splits)} only")
    if fields["method"] == "raw-pixels" and probe == "finetune":
        raise ValueError("raw pixels: no encoder to fine-tune (probes linear, logreg, knn, lowshot)")
    piece = {**fields["piece"], "probe": probe, "split": split, "probe_sets": list(sets)}
    if (done := find_record(results_dir, "curve.score", piece)) is not None:
        return done, True
    if val_first and split == "test" and find_record(results_dir, "curve.score", {**piece, "split": "val"}) is None:
        raise ValueError(f"{fields.get('encoder', fields['method'])}: probe {probe} on test before val; score val first")
    rec = run_probe(encoder_of(fields), probe, split=split, sets=sets, device=device, cache_dir=cache_dir,
                    data=fields.get("dataset") or FMNIST)
    metrics, stds = probe_metrics(probe, rec)
    keep = {k: v for k, v in fields.items() if k not in ("kind", "piece", "created", "_path", "git_commit", "code_version", "command",
                                                         "versions", "selected_on", "reported_on", "encoder")}
    out = {"kind": "curve.score", "encoder": fields.get("encoder", rec["encoder"]), "piece": piece, **keep, "probe": probe, "split": split,
           "probe_sets": list(sets), "top1": rec["top1"], "metrics": metrics, "metrics_std": stds,
           "selected_on": recipe_selected_on(fields) or rec["selected_on"], "head_selected_on": rec["selected_on"],
           "reported_on": split, "eval": rec}
    write_record(out, results_dir=results_dir)
    return out, False


def minutes_steps(cfg: Config, minutes: float, img_per_s: float) -> int:
    """The optimizer steps `minutes` of images at `img_per_s` buy (at least one)."""
    return max(1, round(minutes * 60 * img_per_s / (cfg.data.batch_size * cfg.optimization.accum_steps)))


def minutes_budget(recipe: Recipe, minutes: float, *, img_per_s: float | None = None) -> float:
    """The FLOPs of `minutes` of an (I-JEPA) recipe's run: the compute curve's budgets in the learning curve's terms."""
    base = recipe.config()
    return minutes_steps(base, minutes, img_per_s or reference_img_per_s()) * mean_step_flops(base, recipe.method)