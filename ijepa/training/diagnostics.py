"""Collapse diagnostics: feature spread, RankMe, and an online linear probe."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def batch_std(x: torch.Tensor) -> torch.Tensor:
    """Mean over channels of the batch std of pooled features ([B, N, D] or [B, D])."""
    if x.dim() == 3:
        x = x.mean(1)
    return x.float().std(0).mean()


@torch.no_grad()
def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    """Effective rank of embeddings [n, D] (Garrido et al., 2023): exp of singular-value entropy."""
    s = torch.linalg.svdvals(z.float())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


class OnlineProbe(nn.Module):
    """A linear head on detached pooled target features, trained alongside pretraining.

    Its running accuracy shows whether a run is learning long before the run ends (solo-learn
    does the same); it never sends gradients into the encoder.
    """

    def __init__(self, dim: int, num_classes: int, lr: float = 1e-2) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.head = nn.Linear(dim, num_classes)
        self.opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=0.0)

    def step(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One update; returns the accuracy on this batch before the update (a tensor, no sync)."""
        logits = self.head(self.norm(feats.detach().float()))
        loss = F.cross_entropy(logits, labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return (logits.argmax(1) == labels).float().mean()
