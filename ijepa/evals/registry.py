"""The eval registry: one contract every eval honours, so the CLI, the tables and the tests
are generated from it (timm's `@register_model`, for evals).

An eval is two modules. Its entry, `ijepa/evals/entries/<name>.py`, calls `register(Eval(...))`
with its name (the module's), a typed spec (a dataclass: its fields are the recipe keys and the
command's options), its headline metric and unit, the rows it prints, a tiny fixture, and
where `run(encoder, spec, ctx) -> record` lives ("ijepa.evals.<name>:run", the module with the
torch code). Entries import no torch, so `ijepa eval <name> --help` and every check of a
command line and its recipe answer at once; the code is imported when the eval runs. Nothing
else needs editing: `ijepa eval <name>` and the registry-parametrized tests find it, and
`ijepa results` reads from the entry what its records hold and how they are tabled (headline,
unit, `check`, `cells`, the README `title` and `order`, the paper's numbers).
"""

from __future__ import annotations

import ast
import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ijepa.distributed import DistInfo

Record = dict[str, Any]  # JSON-ready; `ijepa.results.schema` says what every record holds
RECIPES = Path(__file__).resolve().parent.parent / "recipes"  # shipped eval recipes (`evals/` in a clone links to them)


def number(v: Any) -> bool:
    """A finite number, not a bool: what a metric of a record is."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Context:
    """What the caller decides and every eval receives: where to run, cache, report progress,
    and the torchrun group it runs in (a cached eval shards its extraction over it)."""

    device: Any  # torch.device
    cache_dir: Path | None = None
    console: Any = None  # rich Console or None
    group: DistInfo = DistInfo()


class ShareDone(Exception):
    """Raised by an eval on a torchrun rank other than 0 once its share (of the feature
    extraction) is done: rank 0 alone fits, prints and writes the record."""


@dataclass(frozen=True)
class Fixture:
    """A seconds-long run on synthetic data: `make` ("module.function" under tests/fixtures)
    writes the data under a folder and returns its root; `args` are the command's options."""

    make: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One number of a record as `ijepa results` tables it (fractions already in %)."""

    metric: str  # the column
    value: float
    detail: str | None = None  # what was chosen, shown beside the numbers
    std: float | None = None  # spread over seeds, shown as value ± std
    n_seeds: int | None = None


# One of the I-JEPA paper's numbers, tabled beside ours: (table, method, arch, pretrain epochs, dataset, metric, value %)
PaperRow = tuple[str, str, str, int | None, str, str, float]


@dataclass(frozen=True)
class Eval:
    name: str
    spec: type  # dataclass; fields = recipe keys = options
    run: str  # "module:function" of run(EncoderSpec, spec, ctx) -> record, imported when the eval runs
    summary: str  # one line: what it measures and how
    example: str  # one command line, shown in the help
    headline: str  # record key of the number a table shows first
    unit: Literal["fraction", "value"]  # fraction: stored in [0, 1], shown as %
    rows: Callable[[Record], list[tuple[str, str]]]  # what the command prints
    fixture: Fixture
    higher_is_better: bool = True
    flags: dict[str, str] = field(default_factory=dict)  # extra option -> dotted spec key (e.g. epochs -> grid.epochs)
    help: dict[str, str] = field(default_factory=dict)  # spec key -> option help
    random_init: dict[str, int] = field(default_factory=dict)  # default img_size / patch_size / in_chans at random init
    cached: bool = False  # frozen features cached on disk (--cache-dir / --no-cache)
    check: Callable[[Record], None] | None = None  # what else a valid record holds: raises ValueError saying what is wrong
    cells: Callable[[Record], list[Cell]] | None = None  # a record's table cells (None: its headline, `best_head` as detail)
    title: str | None = None  # heading of its README section (None: the kind)
    order: int | None = None  # README sections with an order lead, by it (None: after them, by kind)
    paper: tuple[PaperRow, ...] = ()  # the I-JEPA paper's numbers for it, tabled beside ours

    @property
    def kind(self) -> str:
        return f"eval.{self.name}"

    @property
    def aliases(self) -> dict[str, str]:
        """Option -> dotted spec key of every option named otherwise than its field: `eval-limit`
        for the spec's evaluation-split limit (its `EVAL_LIMIT`, declared once per spec family),
        then the eval's own `flags`."""
        limit = getattr(self.spec, "EVAL_LIMIT", None)
        return ({"eval-limit": limit} if limit else {}) | self.flags


_EVALS: dict[str, Eval] = {}


def register(entry: Eval) -> Eval:
    if entry.name in _EVALS and _EVALS[entry.name] is not entry:
        raise ValueError(f"eval {entry.name!r} registered twice")
    _EVALS[entry.name] = entry
    return entry


def _modules() -> list[str]:
    import ijepa.evals.entries as pkg

    return [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg]


def names() -> list[str]:
    """Every eval's name, from the entries in `ijepa.evals.entries`."""
    for mod in _modules():
        importlib.import_module(f"ijepa.evals.entries.{mod}")
    return sorted(_EVALS)


def listing() -> dict[str, str]:
    """Every eval's name -> one-line summary, read from the literal `register(Eval(name=...,
    summary=...))` of each entry's source (ast: nothing is imported, so listing the commands
    costs nothing). `names()`/`get` stay the truth; a test keeps the two equal."""
    import ijepa.evals.entries as pkg

    out = {}
    for mod in _modules():
        tree = ast.parse(Path(pkg.__path__[0], f"{mod}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Eval":
                kw = {k.arg: k.value for k in node.keywords if k.arg in ("name", "summary")}
                out[ast.literal_eval(kw["name"])] = ast.literal_eval(kw["summary"])
    return dict(sorted(out.items()))


def evals() -> list[Eval]:
    """Every eval, by name."""
    return [_EVALS[n] for n in names()]


def _find(name: str) -> Eval | None:
    if name not in _EVALS and name in _modules():
        importlib.import_module(f"ijepa.evals.entries.{name}")
    return _EVALS.get(name)


def get(name: str) -> Eval:
    """The eval called `name` (its entry `ijepa.evals.entries.<name>` is imported on first use)."""
    entry = _find(name)
    if entry is None:
        raise ValueError(f"eval {name!r}: expected one of {', '.join(names())}")
    return entry


def of_kind(kind: object) -> Eval | None:
    """The eval whose records are of `kind` ("eval.<name>"); None for any other kind."""
    if not isinstance(kind, str) or not kind.startswith("eval."):
        return None
    return _find(kind.removeprefix("eval."))


def recipes(name: str) -> list[str]:
    """The shipped recipes of eval `name` (`ijepa/recipes/<name>_*.yaml`), by name."""
    return sorted(p.stem for p in RECIPES.glob(f"{name}_*.yaml"))


def find_recipe(path: str | Path, eval_name: str) -> Path:
    """A recipe file: the path itself if it exists, else a shipped recipe by name (with or
    without `.yaml`), so `-c linear_fmnist` works from any folder, as `-c fmnist_vit_tiny`
    does for pretraining."""
    path = Path(path)
    if path.is_file() or path.parent != Path("."):
        return path  # a path: read as given (a missing one is named by the reader)
    shipped = RECIPES / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"{path}: recipe not found, nor a shipped recipe of {eval_name} ({', '.join(recipes(eval_name)) or 'none'})")


def run_eval(entry: Eval, encoder: Any, spec: Any, ctx: Context) -> Record:
    """Run an eval (importing its code now) and stamp what the tables read (kind, headline,
    unit) on its record."""
    module, function = entry.run.split(":")
    rec = getattr(importlib.import_module(module), function)(encoder, spec, ctx)
    return {**rec, "kind": entry.kind, "headline": entry.headline, "unit": entry.unit}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"
