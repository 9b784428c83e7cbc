"""Pretraining's device under `torchrun` (the group itself: `ijepa.distributed`)."""

from __future__ import annotations

import torch

from ijepa import devices
from ijepa.distributed import DistInfo, rank_device


def resolve_device(name: str, info: DistInfo) -> torch.device:
    return rank_device(devices.resolve_device(name, option="meta.device"), info)


def device_type_of(name: str) -> str:
    return devices.resolve_device(name, option="meta.device").type
