"""A sweep grid (`benchmarks/sweeps/*.yaml`): named variants, each a list of `--set` overrides
of one base config.

`{name: [overrides...]}` plus an optional `_base: FILE` (relative to the grid) naming the config
the overrides apply to; without it, the packaged default. The default moves when a sweep's
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

    def config(self, overrides: list[str]) -> Config:
        return load_config(self.base, overrides)


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
    variants = {}
    for name, overrides in raw.items():
        if overrides is not None and not isinstance(overrides, list):
            raise ValueError(f"{path}: variant {name!r}: expected a list of overrides, got {type(overrides).__name__}")
        variants[str(name)] = [str(o) for o in overrides or []]
    return Grid(path, base, variants)
