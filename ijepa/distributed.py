"""Process groups for `torchrun`, shared by pretraining (DDP) and the evals (sharded feature
extraction); a single process needs none. Torch is imported only where a group is joined, so
the torch-free eval registry and command line can name a `DistInfo` and read `WORLD_SIZE`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun): read before any group is
    joined, so a command can refuse to run sharded before torch is imported."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def one_process(what: str, info: DistInfo) -> None:
    """Refuse `what` under torchrun: it fits and records in one process, so N ranks would do it N times."""
    if info.enabled:
        raise ValueError(f"{what} runs in one process; this is rank {info.rank} of {info.world_size} (torchrun)")


def init_distributed(device_type: str) -> DistInfo:
    """Join the group torchrun describes in the environment (nccl on GPU, gloo on CPU)."""
    if env_world_size() <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(device: Any, info: DistInfo) -> Any:
    """`device` (a torch.device) as this rank uses it: CUDA without an index is the rank's
    local GPU, made current (nccl's collectives run on the current device)."""
    import torch

    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def leave(info: DistInfo) -> None:
    """Leave the group `init_distributed` joined (nothing outside torchrun)."""
    if info.enabled:
        import torch.distributed as dist

        dist.destroy_process_group()
