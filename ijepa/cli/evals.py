"""`ijepa eval <name>`: one command per registered eval, generated from its registry entry.

Every command has the same shared options (the encoder: `--encoder PATH` or `--random-init
ARCH` with its shape; `--which`, `--device`, `-c RECIPE`, `--set key=value`, `--results`,
`--json`), one option per field of the eval's spec (`--data`, `--seed`, `--train-limit`,
`--eval-limit`, ...) and the eval's own aliases. Values: spec defaults <- recipe <- options
<- `--set`, all through `ijepa.typedconfig`. Commands are built from the torch-free entries
(`ijepa.evals.entries`), so `--help` and every error of a command line or recipe come before
torch is imported; an eval's code is imported when it runs. `ijepa eval --help` lists the
evals without importing even their entries.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from ijepa.cli import USER_ERRORS, app, console, fail
from ijepa.evals.registry import find_recipe, recipes

SHARED = ("encoder", "random_init", "raw_pixels", "which", "num_heads", "patch_size", "in_chans", "depth", "config", "set_", "device", "results", "as_json", "cache_dir", "no_cache")
COMMON_HELP = {
    "data": "Dataset: fashion-mnist, or the dataset's root folder",
    "seed": "Seed of subsets, held-out split, heads and data order",
    "workers": "DataLoader workers",
    "train_limit": "Seeded stratified subset of train: N images, or a fraction if < 1",
    "eval_limit": "Score only part of the evaluation split (quick looks: noisier numbers)",
    "img_size": "Input size (also the random-init encoder's)",
    "feature_batch_size": "Images per batch of feature extraction",
    "feature_sets": "Feature sets, comma-separated: lastPOOL,concatPOOL4",
    "chunk_rows": "Rows per feature-cache file: what a killed extraction loses (smaller: more files)",
    "dtype": "Encoder forward of the extraction: float32, or bfloat16 (autocast; cached apart; not yet checked against float32 on a GPU)",
}


def _plain(hint: Any) -> Any:
    """The hint without its `| None`."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _hint_and_default(spec: type, key: str) -> tuple[Any, Any]:
    """Type hint and default of a dotted spec key (walking nested dataclasses)."""
    obj: Any = spec()
    cls, hint = spec, None
    for part in key.split("."):
        hint = get_type_hints(cls)[part]
        obj = getattr(obj, part)
        cls = hint
    return hint, obj


def _metavar(hint: Any) -> str:
    """`GRID|LOGREG` for a choice, `LIST_OF_FLOAT` for the rest."""
    from ijepa.typedconfig import describe

    if get_origin(hint) is Literal:
        return "|".join(str(a).upper() for a in get_args(hint))
    return describe(hint).upper().replace(" ", "_")


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def flag_value(raw: str | bool, hint: Any) -> Any:
    """A command-line string as the YAML value it stands for (lists: comma-separated)."""
    import yaml

    plain = _plain(hint)
    if plain in (str, Path) or isinstance(raw, bool):  # a switch's value is already a bool
        return raw
    if get_origin(plain) in (tuple, list):
        return [yaml.safe_load(t) for t in raw.split(",") if t.strip()]
    return yaml.safe_load(raw)


def spec_options(entry) -> dict[str, str]:
    """Option parameter name -> dotted spec key: every scalar field, then the eval's aliases
    (an alias replaces the field's own option: one name for one thing)."""
    aliased = set(entry.aliases.values())
    out = {}
    for f in dataclasses.fields(entry.spec):
        if f.init and f.name not in aliased and not dataclasses.is_dataclass(get_type_hints(entry.spec)[f.name]):
            out[f.name] = f.name
    out.update({a.replace("-", "_"): key for a, key in entry.aliases.items()})
    clash = set(out) & set(SHARED)
    if clash:
        raise ValueError(f"eval {entry.name}: spec option(s) {', '.join(sorted(clash))} clash with the shared options")
    return out


def _opt(name: str, annotation: Any, default: Any, *decls: str, **kw: Any) -> inspect.Parameter:
    option = typer.Option(*(decls or (f"--{name.replace('_', '-')}",)), **kw)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, option])


def _shared(entry) -> list[inspect.Parameter]:
    ri = {"patch_size": 16, "in_chans": 3, **entry.random_init}
    opts = [
        _opt("encoder", str | None, None, metavar="PATH",
             help="Run dir, our checkpoint, an official I-JEPA checkpoint, a Hugging Face IJepa directory or a timm I-JEPA ViT"),
        _opt("random_init", str | None, None, metavar="ARCH", help="Score this architecture at random init instead (e.g. vit_tiny)"),
        _opt("raw_pixels", bool, False, "--raw-pixels",
             help="Score raw pixels instead of an encoder (the baseline row; linear, knn and lowshot by logreg or heads)"),
        _opt("which", str, "target_encoder", help="Checkpoint encoder: target_encoder (the paper's choice) or context (alias: encoder, the official key)"),
        _opt("num_heads", int | None, None, help="Attention heads of a bare state dict whose width is not a standard one (never guessed)"),
        _opt("patch_size", int, ri["patch_size"], help="Patch size (random init)"),
        _opt("in_chans", int, ri["in_chans"], help="Input channels (random init)"),
        _opt("depth", int, 0, help="Blocks (random init; 0 = the architecture's own)"),
        _opt("config", Path | None, None, "--config", "-c",
             help=f"Recipe YAML (keys: this command's options; options override it): a path, or a shipped recipe by name "
                  f"({', '.join(recipes(entry.name)) or 'none yet'}; ijepa/recipes/)"),
        _opt("set_", list[str], [], "--set", metavar="KEY=VALUE", show_default=False,
             help="Override one recipe key, dotted for sections (e.g. grid.epochs=5); repeatable"),
        _opt("device", str, "auto", help="auto, cpu, cuda, cuda:N or mps"),
        _opt("results", Path, Path("results"), help="Folder the record is written under"),
        _opt("as_json", bool, False, "--json", help="Print the record as one JSON line on stdout"),
    ]
    if entry.cached:
        opts += [_opt("cache_dir", Path, Path(".cache/features"), help="Feature cache folder"),
                 _opt("no_cache", bool, False, "--no-cache", help="Neither read nor write cached features")]
    return opts


def build_command(entry) -> Any:
    """The eval's command: a function whose signature is generated from its entry, made a
    command by typer like every other."""
    keys = spec_options(entry)
    params = _shared(entry)
    for name, key in keys.items():
        hint, default = _hint_and_default(entry.spec, key)
        help_ = entry.help.get(key) or COMMON_HELP.get(name) or COMMON_HELP.get(key) or f"Recipe key {key}"
        # escaped: rich markup would eat "[default: ...]" as a style tag and show no default
        shown = escape(f"[default: {_show(default)}]")
        if _plain(hint) is bool:  # a switch: --augment / --no-augment
            flag = f"--{name.replace('_', '-')}"
            params.append(_opt(name, bool | None, None, f"{flag}/--no-{flag[2:]}", help=f"{help_}  {shown}", show_default=False))
            continue
        params.append(_opt(name, str | None, None, metavar=_metavar(_plain(hint)), help=f"{help_}  {shown}", show_default=False))

    def callback(**kw: Any) -> None:
        from ijepa.results.io import RecordWriteError

        try:
            rec = run_command(entry, keys, kw)
        except USER_ERRORS as e:
            fail(e)
        if rec is None:  # a torchrun rank other than 0: its share is cached, rank 0 writes the record
            return
        try:
            finish(rec, entry, kw["as_json"], kw["results"])
        except RecordWriteError as e:  # a read-only or full results folder: the record went to stdout
            fail(e)

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    one = typer.Typer(add_completion=False)  # completion is the root command's, not each eval's
    one.command(entry.name, help=f"{entry.summary}\n\nExample: [bold]{entry.example}[/]", short_help=entry.summary)(callback)
    return typer.main.get_command(one)


def resolve_spec(entry, keys: dict[str, str], kw: dict[str, Any]) -> Any:
    """The eval's spec from its defaults, the recipe, the options and `--set`: everything a
    command line can get wrong, checked before any data or encoder is touched."""
    from ijepa import typedconfig
    from ijepa.models.which import resolve_which

    values: dict[str, Any] = {}
    for name, key in keys.items():
        if kw[name] is not None:
            values = typedconfig.merge(values, typedconfig.dotted(key, flag_value(kw[name], _hint_and_default(entry.spec, key)[0])))
    resolve_which(kw["which"], option="--which")  # a value check before torch; the loader maps it
    recipe = None if kw["config"] is None else find_recipe(kw["config"], entry.name)
    spec = typedconfig.load(entry.spec, recipe, values=values, names=given_flags(keys, kw), overrides=kw["set_"])
    if hasattr(spec, "data") and not spec.data:
        raise ValueError("--data is required (or `data:` in the recipe)")
    return spec


def given_flags(keys: dict[str, str], kw: dict[str, Any]) -> dict[str, str]:
    """Dotted spec key -> the option that gave it on this command line (`val_limit` ->
    `--eval-limit`): every message names an option as its user typed it."""
    return {key: f"--{name.replace('_', '-')}" for name, key in keys.items() if kw[name] is not None}


def check_world(entry, kw: dict[str, Any]) -> None:
    """Under torchrun (WORLD_SIZE > 1) a cached eval shards its extraction, the ranks sharing
    features through the cache; an eval that caches none runs in one process only."""
    from ijepa.distributed import env_world_size
    from ijepa.evals.registry import evals

    world = env_world_size()
    if world > 1 and not entry.cached:
        raise ValueError(f"eval {entry.name} runs in one process (WORLD_SIZE is {world}); under torchrun only the cached evals "
                         f"shard their feature extraction: {', '.join(e.name for e in evals() if e.cached)}")
    if world > 1 and kw["no_cache"]:
        raise ValueError(f"--no-cache: under torchrun (WORLD_SIZE is {world}) the ranks share their features through the cache")


def run_command(entry, keys: dict[str, str], kw: dict[str, Any]) -> dict | None:
    """The eval's record; None on a torchrun rank other than 0, once its share is done."""
    spec = resolve_spec(entry, keys, kw)  # first: a wrong option or recipe key costs no torch import
    check_world(entry, kw)
    from ijepa.devices import resolve_device
    from ijepa.distributed import init_distributed, leave, rank_device
    from ijepa.evals.core.encoders import EncoderSpec
    from ijepa.evals.registry import Context, ShareDone, run_eval
    from ijepa.typedconfig import OptionError

    img = getattr(spec, "img_size", None) or entry.random_init.get("img_size", 224)
    encoder = EncoderSpec(encoder=kw["encoder"], random_init=kw["random_init"], raw_pixels=kw["raw_pixels"], which=kw["which"],
                          img_size=img, patch_size=kw["patch_size"], in_chans=kw["in_chans"], depth=kw["depth"], num_heads=kw["num_heads"])
    cache = None if kw.get("no_cache", True) else kw["cache_dir"]
    device = resolve_device(kw["device"])
    group = init_distributed(device.type)
    ctx = Context(device=rank_device(device, group), cache_dir=cache, console=console, group=group)
    try:
        return run_eval(entry, encoder, spec, ctx)
    except ShareDone:
        return None
    except OptionError as e:  # a value the data or the encoder refuses (too few images, a size the patches do not tile)
        flag = given_flags(keys, kw).get(e.key)
        raise e.renamed(flag) if flag else e from None
    finally:
        leave(group)


def finish(rec: dict, entry, as_json: bool, results: Path) -> None:
    """Write the record; print it as one JSON line or as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    from ijepa.results.io import strict, write_record

    path = write_record(rec, results_dir=results)
    if as_json:
        print(json.dumps({**strict(rec), "record": str(path)}, default=str, allow_nan=False))
        return
    table = Table(title=f"{rec['kind']}: {rec['encoder']} on {rec['dataset']}{limits_note(rec)}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in entry.rows(rec):
        table.add_row(k, v)
    Console().print(table)
    console.print(f"record: {path}", highlight=False, soft_wrap=True)


def limits_note(rec: dict) -> str:
    """", on a subset (--train-limit N, --eval-limit M)" where the eval saw part of its splits."""
    given = [f"--{opt} {rec[key]}" for opt, key in (("train-limit", "train_limit"), ("eval-limit", "val_limit")) if rec.get(key) is not None]
    return f", on a subset ({', '.join(given)})" if given else ""


class EvalGroup(TyperGroup):
    """Commands looked up in the eval registry, on demand. The group's own help lists them
    from `registry.listing()` (names and summaries read without importing any eval)."""

    _listing: dict[str, str] | None = None

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from ijepa.evals.registry import listing

        self._listing = listing()
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = None

    def list_commands(self, ctx: Any) -> list[str]:
        from ijepa.evals.registry import names

        return list(self._listing) if self._listing is not None else names()

    def get_command(self, ctx: Any, name: str) -> Any:
        from ijepa.evals import registry

        if self._listing is not None:  # a help row only
            return TyperCommand(name, short_help=self._listing[name]) if name in self._listing else None
        try:
            entry = registry.get(name)
        except ValueError:  # not an eval: click says "No such command"
            return None
        return build_command(entry)  # a broken entry (e.g. an option clash) is a bug: it raises


eval_app = typer.Typer(cls=EvalGroup, help="Evaluate a frozen (or fine-tuned) encoder.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
