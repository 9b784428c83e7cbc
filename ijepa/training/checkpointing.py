"""Pretraining checkpoints: the last K kept, resume rules, optimizer state that fits.

Every failure a person can fix (a changed key on resume, an optimizer state of another
model) is a `RunError` whose message is one line naming the file; the directory's lock and
atomic saves are `ijepa.rundir` and `ijepa.atomic`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ijepa.atomic import atomic_write
from ijepa.models.checkpoint import strip_prefix  # noqa: F401  (re-exported: the trainer imports it from here)
from ijepa.rundir import RunError
from ijepa.training.config import Config

# Keys that may differ from the stored config on resume: where and how often to log, how far
# to train, where to run, which file to resume from, how to feed data. Every other key shapes
# the trajectory, so changing it would silently make a different run.
RESUMABLE = ("logging.*", "optimization.epochs", "optimization.max_steps", "meta.device",
             "meta.load_checkpoint", "meta.read_checkpoint", "meta.reset_optimizer", "data.num_workers", "data.pin_mem")
RESET_HINT = "set meta.reset_optimizer: true to resume the weights with AdamW's moments restarted from zero"
KEPT = re.compile(r"checkpoint-step(\d+)\.pt")


def keep_copy(ckpt: Path, step: int, keep_last: int) -> None:
    """Keep `ckpt` as checkpoint-step{step}.pt (a hard link: no extra disk), drop all but the
    newest `keep_last` of those, oldest first."""
    if keep_last < 1:
        return
    dst, tmp = ckpt.with_name(f"checkpoint-step{step}.pt"), ckpt.with_name(f".checkpoint-step{step}.pt.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(ckpt, tmp)
    except OSError:  # a filesystem without hard links: copy
        with ckpt.open("rb") as src:
            atomic_write(tmp, lambda f: shutil.copyfileobj(src, f), binary=True)
    os.replace(tmp, dst)
    kept = sorted((int(m.group(1)), p) for p in ckpt.parent.iterdir() if (m := KEPT.fullmatch(p.name)))
    for _, p in kept[:-keep_last]:
        p.unlink(missing_ok=True)


def _resumable(key: str) -> bool:
    return key in RESUMABLE or f"{key.split('.')[0]}.*" in RESUMABLE


def check_resume(cfg: Config, stored: Config, keys: Iterable[str], source: Path, mode: str) -> None:
    """The stored config is the run's: a key of `keys` (dotted) that `cfg` changes outside
    RESUMABLE is an error naming it."""
    for name in keys:
        section, key = name.split(".")
        value, old = getattr(getattr(cfg, section), key), getattr(getattr(stored, section), key)
        if value != old and not _resumable(name):
            given, was = (list(v) if isinstance(v, tuple) else v for v in (value, old))  # as config.yaml writes them
            raise RunError(f"{mode}: {name} differs from {source} (given {given!r}, stored {was!r}); "
                           f"only {', '.join(RESUMABLE)} may change on resume")


def check_opt_state(state: Any, opt: torch.optim.Optimizer, names: dict[int, str], path: Path) -> None:
    """Every saved AdamW moment must have its parameter's shape: `load_state_dict` does not
    check, and fused AdamW then reads out of bounds (a segfault, exit 139, nothing printed).
    `names` maps id(parameter) to its name."""
    groups, saved = (state.get("param_groups"), state.get("state")) if isinstance(state, dict) else (None, None)
    if not isinstance(saved, dict) or not isinstance(groups, list) or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise RunError(f"{path}: optimizer state ('opt') is not an optimizer state dict; {RESET_HINT}")
    sizes, ours = [len(g["params"]) for g in groups], [len(g["params"]) for g in opt.param_groups]
    if sizes != ours:
        raise RunError(f"{path}: optimizer state has parameter groups of sizes {sizes}, this model's optimizer {ours}: "
                       f"the optimizer state does not match the model; {RESET_HINT}")
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, entry in saved.items():
        if not isinstance(i, int) or not 0 <= i < len(params) or not isinstance(entry, dict):
            raise RunError(f"{path}: optimizer state names parameter {i!r}, but this model's optimizer has {len(params)}; {RESET_HINT}")
        for k, v in entry.items():
            if k != "step" and isinstance(v, torch.Tensor) and v.shape != params[i].shape:
                raise RunError(f"{path}: optimizer state {k} of {names.get(id(params[i]), i)} has shape {tuple(v.shape)}, the "
                               f"parameter {tuple(params[i].shape)}: the optimizer state does not match the model; {RESET_HINT}")
