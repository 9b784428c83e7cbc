"""Atomic checkpoint writes: a crash mid-write never leaves a broken or half-old file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ijepa.atomic import atomic_write


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through `atomic_write`: a crash never corrupts the previous checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop DDP's `module.` (and torch.compile's `_orig_mod.`) from state-dict keys."""
    out = {}
    for k, v in state.items():
        for p in (prefix, "_orig_mod."):
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out
