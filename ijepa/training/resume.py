"""What `--resume` continues: the run's stored config.yaml, with the keys the user gives.

A run is resumed as it was configured, so a user never repeats the overrides it started
with. Only the keys given now (those in an explicit `-c` file and every `--set`, as
`config.given_values` read them for the config) are held to the stored config: a resumable
one (`checkpointing.RESUMABLE`) replaces the stored value, any other must equal it. The
number of processes must equal the run's too (`check_world_size`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ijepa.rundir import RunError
from ijepa.training.checkpointing import check_resume
from ijepa.training.config import Config, load_config, validate
from ijepa.typedconfig import ConfigError


def _processes(n: int) -> str:
    return f"{n} process{'es' if n != 1 else ''}"


def check_world_size(ckpt: dict, world_size: int, source: Path, mode: str) -> None:
    """Our checkpoint resumes on as many processes as it was trained on: the global batch,
    the steps per epoch, and with them the lr, weight-decay and EMA schedules and the data
    order all depend on it. (An official checkpoint resumes at its epoch on any count.)"""
    stored = ckpt.get("world_size")
    if "step" in ckpt and isinstance(stored, int) and stored != world_size:
        raise RunError(f"{mode}: {source} was trained on {_processes(stored)}, this run has {world_size}: the batch, the "
                       f"schedules (lr, weight decay, EMA) and the data order would change; resume it on {_processes(stored)} "
                       f"(torchrun --nproc_per_node {stored})")


def resume_config(cfg: Config, given: dict[str, dict[str, Any]], run_dir: Path) -> Config:
    """`cfg`'s run as stored in `run_dir/config.yaml`, with `cfg`'s values of the `given` keys
    (nested, as `given_values` reads them); `cfg` itself when the run has no stored config yet
    (a new run)."""
    stored_yaml = run_dir / "config.yaml"
    if not stored_yaml.is_file():
        return cfg
    try:
        stored = load_config(stored_yaml)
    except ConfigError as e:
        raise RunError(f"{stored_yaml}: the stored config does not load ({e})") from None
    check_resume(cfg, stored, [f"{section}.{key}" for section, keys in given.items() for key in keys], stored_yaml, "--resume")
    sections = {s: dataclasses.replace(getattr(stored, s), **{k: getattr(getattr(cfg, s), k) for k in keys}) for s, keys in given.items()}
    resumed = dataclasses.replace(stored, **sections)
    validate(resumed)
    return resumed
