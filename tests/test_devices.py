"""The device helpers: which attention kernel an I-JEPA step may use on CUDA."""

from __future__ import annotations

import pytest
import torch

from ijepa.devices import varlen_attention


@pytest.mark.parametrize(("device", "method", "cudnn_on"), [("cuda", "ijepa", False), ("cuda", "mae", True), ("cpu", "ijepa", True)])
def test_cudnn_attention_is_off_only_for_ijepa_on_cuda(device: str, method: str, cudnn_on: bool) -> None:
    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        varlen_attention(torch.device(device), method)
        assert torch.backends.cuda.cudnn_sdp_enabled() is cudnn_on
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
