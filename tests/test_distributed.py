"""DDP on CPU: two gloo processes train a few steps, end with identical weights, and resume on two only."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fixtures.pretrain import tiny_config
from rich.console import Console

from ijepa.rundir import RunError
from ijepa.training.loop import Trainer

# 128 images over 2 ranks = 64 per rank = 4 batches of 16; accum 2 -> 2 steps/epoch, 2 epochs.
RUN = {"data": {"subset": 128}, "optimization": {"epochs": 2, "accum_steps": 2},
       "logging": {"diag_every": 2, "checkpoint_every": 3}}
TRAINED = ("encoder", "predictor", "target_encoder")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, folder: str) -> None:
    """What `torchrun --nproc_per_node 2 --no-python ijepa pretrain` runs on each rank."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(Path(folder), "ddp", **RUN), console=Console(file=io.StringIO()))
    trainer.fit()
    state = {k: getattr(trainer.model, k).state_dict() for k in TRAINED}
    torch.save({**state, "step": trainer.step}, Path(folder) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_end_identical(tmp_path):
    mp.start_processes(_rank_main, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["step"] == r1["step"] == 4
    for key in TRAINED:
        for name, tensor in r0[key].items():
            assert torch.equal(tensor, r1[key][name]), f"{key}.{name} differs between ranks"
    # Rank 0 wrote the run: its checkpoint holds the final weights of a 2-process world.
    ckpt = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 4
    for key in TRAINED:
        assert all(torch.equal(v, r0[key][k]) for k, v in ckpt[key].items())
        assert not any(k.startswith("module.") for k in ckpt[key])
    assert (tmp_path / "ddp" / "log.csv").read_text().count("\n") == 1 + 4
    # ... and resumes on 2 processes only: on 1, steps per epoch (so every schedule) would change
    with pytest.raises(RunError, match=r"checkpoint\.pt was trained on 2 processes, this run has 1: "):
        Trainer(tiny_config(tmp_path, "ddp", **{**RUN, "optimization": {"epochs": 3, "accum_steps": 2}}), resume=True,
                console=Console(file=io.StringIO()))
