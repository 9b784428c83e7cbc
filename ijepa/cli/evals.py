"""`ijepa eval linear | lowshot | knn`: frozen-encoder classification evals.

Every eval shares one flag contract: `--encoder PATH` or `--random-init ARCH` (+ shape
flags), `--which`, `--data`, `--json`. `--config RECIPE.yaml` supplies defaults (keys are
the library function's arguments; `grid:` / `finetune:` sections nest); flags win.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, get_type_hints

import typer

from ijepa.cli import USER_ERRORS, console, eval_app, fail

Encoder = Annotated[str | None, typer.Option("--encoder", help="Run dir, our checkpoint or an official I-JEPA checkpoint")]
RandomInit = Annotated[str | None, typer.Option("--random-init", help="Score this architecture at random init instead (e.g. vit_tiny)")]
ImgSize = Annotated[int, typer.Option(help="Input size (random init; with --encoder the checkpoint's size is used)")]
PatchSize = Annotated[int, typer.Option(help="Patch size (random init)")]
InChans = Annotated[int, typer.Option(help="Input channels (random init); grayscale data is repeated to 3 when 3")]
Depth = Annotated[int, typer.Option(help="Number of blocks (random init; 0 = the architecture's own)")]
Which = Annotated[str, typer.Option(help="target_encoder (the paper's choice) or context")]
Data = Annotated[str | None, typer.Option(help="fashion-mnist or an ImageFolder root with train/ and val/ (default: fashion-mnist)")]
Config = Annotated[Path | None, typer.Option("--config", "-c", help="Recipe YAML (e.g. evals/linear_fmnist.yaml); flags override it")]
TrainLimit = Annotated[float | None, typer.Option(help="Use a seeded stratified subset of train: N rows, or a fraction if < 1")]
Seed = Annotated[int | None, typer.Option(help="Seed of subsets, held-out split and heads (default: 0)")]
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")]
CacheDir = Annotated[Path, typer.Option(help="Feature cache folder")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write cached features")]
Workers = Annotated[int | None, typer.Option(help="DataLoader workers for ImageFolder data (default: 0)")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the record as one JSON line on stdout")]
Results = Annotated[Path, typer.Option(help="Results folder the record is written under")]
Floats = Annotated[str | None, typer.Option(help="Comma-separated list")]


def floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected comma-separated numbers") from None


def recipe(path: Path | None) -> dict:
    """The recipe YAML as a dict ({} without one); a bad file is one clear error."""
    if path is None:
        return {}
    import yaml

    from ijepa.evals.core.typecheck import yaml_error

    if not path.is_file():
        raise FileNotFoundError(f"{path}: recipe not found")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise yaml_error(path, e) from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a mapping of options, got {type(cfg).__name__}")
    return cfg


def merged(cfg: dict, allowed: set[str], where: str, *, hints: dict | None = None, **flags) -> dict:
    """Recipe values (checked against `hints`, the type hints of what they feed) overridden
    by the flags that were given (not None)."""
    from ijepa.evals.core.typecheck import check_types

    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: expected a mapping of options, got {type(cfg).__name__}")
    bad = set(cfg) - allowed
    if bad:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, bad)))}; expected some of {', '.join(sorted(allowed))}")
    check_types(cfg, hints or {}, where)
    return {**cfg, **{k: v for k, v in flags.items() if v is not None}}


def common(encoder, random_init, img_size, patch_size, in_chans, depth, which, device, cache_dir, no_cache) -> dict:
    import torch

    from ijepa.evals.core.encoders import EncoderSpec

    if which not in ("target_encoder", "context"):
        raise ValueError(f"--which {which!r}: expected target_encoder or context")
    spec = EncoderSpec(encoder=encoder, random_init=random_init, which="encoder" if which == "context" else which,
                       img_size=img_size, patch_size=patch_size, in_chans=in_chans, depth=depth)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    return {"encoder": spec, "device": dev, "cache_dir": None if no_cache else cache_dir, "console": console}


def limit(v: float | None) -> int | float | None:
    return None if v is None else (v if v < 1 else int(v))


def finish(rec: dict, as_json: bool, results: Path, rows: list[tuple[str, str]]) -> None:
    """Write the record; print it as JSON or as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    from ijepa.results.io import write_record

    path = write_record(rec, results_dir=results)
    if as_json:
        print(json.dumps({**rec, "record": str(path)}, default=str))
        return
    table = Table(title=f"{rec['kind']}: {rec['encoder']} on {rec['dataset']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)
    console.print(f"record: {path}", highlight=False, soft_wrap=True)


RUN_KEYS = {"data", "train_limit", "val_limit", "seed", "img_size", "feature_batch_size", "workers"}


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


@eval_app.command("linear")
def linear(
    encoder: Encoder = None, random_init: RandomInit = None, img_size: ImgSize = 32, patch_size: PatchSize = 4,
    in_chans: InChans = 1, depth: Depth = 0, which: Which = "target_encoder", data: Data = None, config: Config = None,
    train_limit: TrainLimit = None, seed: Seed = None,
    epochs: Annotated[int | None, typer.Option(help="Head-training epochs (default: 30)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Head-training batch size (default: 256)")] = None,
    lrs: Floats = None, wds: Floats = None,
    features: Annotated[str | None, typer.Option(help="Feature sets, comma-separated: lastPOOL,concatPOOL4")] = None,
    protocol: Annotated[str | None, typer.Option(help="grid (SGD/LARS linear heads) or logreg (the raw-pixel baseline's logistic regression, torch L-BFGS); default: grid")] = None,
    cs: Annotated[str | None, typer.Option(help="logreg: candidate C values, comma-separated (default: 1)")] = None,
    device: Device = "auto", cache_dir: CacheDir = Path(".cache/features"), no_cache: NoCache = False,
    workers: Workers = None, as_json: AsJson = False, results: Results = Path("results"),
) -> None:
    """Linear probe on cached frozen features: a grid of linear heads (or logistic regression), picked on held-out train."""
    from ijepa.evals.core.fit import GridConfig
    from ijepa.evals.linear import GRID_KEYS, grid_config, run_linear

    try:
        cfg = recipe(config)
        grid = merged(cfg.pop("grid", None) or {}, GRID_KEYS, f"{config}: grid", hints=get_type_hints(GridConfig), epochs=epochs,
                      batch_size=batch_size, lrs=floats(lrs, "--lrs"), wds=floats(wds, "--wds"),
                      feature_sets=features.split(",") if features else None)
        kw = merged(cfg, RUN_KEYS | {"protocol", "cs"}, str(config), hints=get_type_hints(run_linear), data=data,
                    train_limit=limit(train_limit), seed=seed, workers=workers, protocol=protocol, cs=floats(cs, "--cs"))
        rec = run_linear(grid=grid_config(**grid), **kw, **common(encoder, random_init, img_size, patch_size, in_chans, depth, which, device, cache_dir, no_cache))
    except USER_ERRORS as e:
        fail(e)
    held = rec["heldout_top1"]
    rows = [("protocol", rec["protocol"]), ("top-1 (val)", pct(rec["top1"])), ("top-5 (val)", pct(rec["top5"])),
            ("held-out top-1", "-" if held is None else pct(held)), ("chosen head", rec["best_head"])]
    rows += [(f"best {f} top-1", pct(b["top1"])) for f, b in rec.get("best_by_features", {}).items()]
    rows += [("train / val images", f"{rec['n_train']} / {rec['n_val']}"), ("wall time", f"{rec['wall_s']:.1f} s")]
    finish(rec, as_json, results, rows)


@eval_app.command("knn")
def knn(
    encoder: Encoder = None, random_init: RandomInit = None, img_size: ImgSize = 32, patch_size: PatchSize = 4,
    in_chans: InChans = 1, depth: Depth = 0, which: Which = "target_encoder", data: Data = None, config: Config = None,
    train_limit: TrainLimit = None, seed: Seed = None,
    ks: Annotated[str | None, typer.Option(help="Neighbour counts, comma-separated (default: 10,20,100,200)")] = None,
    temperature: Annotated[float | None, typer.Option(help="Softmax temperature of the votes (default: 0.07)")] = None,
    device: Device = "auto", cache_dir: CacheDir = Path(".cache/features"), no_cache: NoCache = False,
    workers: Workers = None, as_json: AsJson = False, results: Results = Path("results"),
) -> None:
    """Weighted k-NN (DINO) on L2-normalised frozen features; (features, k) picked on held-out train."""
    from ijepa.evals.knn import run_knn

    try:
        kw = merged(recipe(config), RUN_KEYS | {"ks", "temperature", "feature_sets", "heldout"}, str(config), hints=get_type_hints(run_knn), data=data,
                    train_limit=limit(train_limit), seed=seed, workers=workers, temperature=temperature,
                    ks=[int(k) for k in floats(ks, "--ks")] if ks else None)
        rec = run_knn(**kw, **common(encoder, random_init, img_size, patch_size, in_chans, depth, which, device, cache_dir, no_cache))
    except USER_ERRORS as e:
        fail(e)
    rows = [("top-1 (val)", pct(rec["top1"])), ("top-5 (val)", pct(rec["top5"])), ("held-out top-1", pct(rec["heldout_top1"])),
            ("chosen", f"{rec['best_features']}, k={rec['best_k']}")]
    rows += [(f"{r['features']} k={r['k']}", pct(r["val_top1"])) for r in rec["scores"]]
    finish(rec, as_json, results, rows)


@eval_app.command("lowshot")
def lowshot(
    encoder: Encoder = None, random_init: RandomInit = None, img_size: ImgSize = 32, patch_size: PatchSize = 4,
    in_chans: InChans = 1, depth: Depth = 0, which: Which = "target_encoder", data: Data = None, config: Config = None,
    fractions: Annotated[str | None, typer.Option(help="Label fractions (default: 0.01,0.05,0.1)")] = None,
    seeds: Annotated[str | None, typer.Option(help="Split seeds; mean ± std over them (default: 0,1,2)")] = None,
    protocol: Annotated[str | None, typer.Option(help="logreg (logistic regression, C by CV), heads (the linear grid) or finetune (default: logreg)")] = None,
    subset_dir: Annotated[Path | None, typer.Option(help="Folder of subset files (1percent.txt, 10percent-seed0.txt, ...) to use instead of drawing")] = None,
    write_splits: Annotated[Path | None, typer.Option(help="Write the splits used to this folder")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the heads / fine-tuning")] = None,
    device: Device = "auto", cache_dir: CacheDir = Path(".cache/features"), no_cache: NoCache = False,
    workers: Workers = None, as_json: AsJson = False, results: Results = Path("results"),
) -> None:
    """Low-shot: 1/5/10% of the labels, class-balanced seeded splits, mean ± std over seeds."""
    from ijepa.evals.core.finetune import FinetuneConfig
    from ijepa.evals.core.fit import GridConfig
    from ijepa.evals.linear import GRID_KEYS, grid_config
    from ijepa.evals.lowshot import run_lowshot

    try:
        cfg = recipe(config)
        proto = protocol or cfg.get("protocol", "logreg")
        grid = merged(cfg.pop("grid", None) or {}, GRID_KEYS, f"{config}: grid", hints=get_type_hints(GridConfig),
                      epochs=epochs if proto == "heads" else None)
        ft = cfg.pop("finetune", None) or {}
        ft = merged(ft, set(FinetuneConfig.__dataclass_fields__), f"{config}: finetune", hints=get_type_hints(FinetuneConfig),
                    epochs=epochs if proto == "finetune" else None)
        kw = merged(cfg, RUN_KEYS - {"train_limit", "seed"} | {"fractions", "seeds", "protocol", "feature_sets", "subset_dir", "write_splits"},
                    str(config), hints=get_type_hints(run_lowshot), data=data, workers=workers, protocol=protocol, subset_dir=subset_dir, write_splits=write_splits,
                    fractions=floats(fractions, "--fractions"), seeds=[int(s) for s in floats(seeds, "--seeds")] if seeds else None)
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
        ft = FinetuneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ft.items()})
        rec = run_lowshot(grid=grid_config(**grid), finetune_cfg=ft, **kw, **common(encoder, random_init, img_size, patch_size, in_chans, depth, which, device, cache_dir, no_cache))
    except USER_ERRORS as e:
        fail(e)
    rows = [(f"{float(f):.0%} labels ({r['seeds'][0]['n_labelled']} img)", f"{pct(r['top1'])} ± {100 * r['top1_std']:.2f}") for f, r in rec["fractions"].items()]
    rows += [("protocol", rec["protocol"]), ("seeds", ",".join(map(str, rec["seeds"]))), ("wall time", f"{rec['wall_s']:.1f} s")]
    finish(rec, as_json, results, rows)
