"""The one device resolver: `auto`, `cpu`, `cuda`, `cuda:N` (and `mps`) -> torch.device.

A device this machine does not have is one line naming it, never a CUDA traceback later.
"""

from __future__ import annotations

import torch

CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str | torch.device, *, option: str = "--device") -> torch.device:
    """`auto` is CUDA when available, else CPU; anything else must exist here. Errors name
    `option`, the flag or config key the user gave it with."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{option} {name!r}: expected {CHOICES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {name}: CUDA is not available on this machine; use {option} cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} {name}: MPS is not available on this machine; use {option} cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps", "meta"):  # meta: shapes only (FLOP counting)
        raise ValueError(f"{option} {name!r}: expected {CHOICES}")
    return device


def bf16_autocast(device: torch.device, *, use_bfloat16: bool, cpu_bfloat16: bool) -> tuple[torch.autocast, bool]:
    """(autocast, enabled): the trainer's mixed precision, shared by the step benchmarks so
    they time the same step. bf16 on CUDA with the official `use_bfloat16`, on any other
    device with ours `cpu_bfloat16`; none on `meta` (shapes only)."""
    if device.type == "meta":
        return torch.autocast("cpu", enabled=False), False
    enabled = use_bfloat16 if device.type == "cuda" else cpu_bfloat16
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled), enabled


def varlen_attention(device: torch.device, method: str) -> None:
    """Keep cuDNN's attention kernel off I-JEPA steps on CUDA. Its masks change the context and
    target lengths every batch, and cuDNN builds a new plan for every new length: on an H200,
    ViT-B/16 bf16 batch 128 ran 738 img/s with it and 2174 img/s on flash attention
    (results/records/bench.official_step/, 2026-12-04). Process-wide, like the rest of
    torch.backends; MAE keeps one length per run and is left alone."""
    if device.type == "cuda" and method == "ijepa":
        torch.backends.cuda.enable_cudnn_sdp(False)
