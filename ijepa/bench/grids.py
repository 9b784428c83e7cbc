"""A sweep grid (`benchmarks/sweeps/*.yaml`): named variants, each a list of `--set` overrides
of one base config.

`{name: [overrides...]}` plus an optional `_base: FILE` (relative to the grid) naming the config
the overrides apply to; without it, the packaged default. `name: OTHER.yaml` takes the variant
of that name from another grid (relative to this one) as it is there, base and all: a set of
candidates can hold recipes of earlier rounds, and their records are found again by name. The default moves when a sweep's
winner becomes it, so a grid that ran on an earlier default names that one: a variant keeps
meaning the config it was scored with (`benchmarks/recipe_sweep.py`, `ijepa.bench.curves`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ijepa.training.config import Config, load_config

BASE_KEY = "_base"


@dataclass(frozen=True)
class Grid:
    path: Path
    base: Path | None  # None: the packaged default
    variants: dict[str, list[str]] = field(default_factory=dict)
    origins: dict[str, Grid] = field(default_factory=dict)  # variants taken from another grid

    def config(self, overrides: list[str]) -> Config:
        return load_config(self.base, overrides)

    def origin(self, name: str) -> Grid:
        """The grid that defines variant `name` (itself, or the one a reference points to)."""
        return self.origins.get(name, self)


def read_grid(path: str | Path) -> Grid:
    """The grid at `path`; a malformed one is one line naming the file and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sweep grid not found")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of variant names to lists of overrides")
    base = raw.pop(BASE_KEY, None)
    if base is not None:
        base = path.parent / str(base)
        if not base.is_file():
            raise FileNotFoundError(f"{path}: {BASE_KEY} {base} not found")
    variants, origins = {}, {}
    for name, overrides in raw.items():
        if isinstance(overrides, str) and overrides.endswith((".yaml", ".yml")):
            other = read_grid(path.parent / overrides)
            if str(name) not in other.variants:
                raise ValueError(f"{path}: variant {name!r} refers to {other.path}, which has no variant of that name")
            variants[str(name)], origins[str(name)] = other.variants[str(name)], other.origin(str(name))
            continue
        if overrides is not None and not isinstance(overrides, list):
            raise ValueError(f"{path}: variant {name!r}: expected a list of overrides or OTHER.yaml, got {type(overrides).__name__}")
        variants[str(name)] = [str(o) for o in overrides or []]
    return Grid(path, base, variants, origins)
