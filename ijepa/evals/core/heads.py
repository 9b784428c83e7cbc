"""A grid of linear heads on frozen features, stored as one matrix per (feature set, norm).

Every head of a group sees the same input, so the group's forward is one GEMM
`[B, D] @ [D, H * C]` and its backward another: a grid of dozens of heads costs about what
one head costs. The cross-entropy gradient is written out (`softmax - onehot`), so no
autograd graph is built and SGD with per-head lr/wd is a handful of tensor ops. LARS (the
paper's ImageNet protocol) is timm's `Lars` over per-head views of the same matrix, so its
trust ratio is each head's own, as if every head were trained alone.
"""

from __future__ import annotations

import torch

from ijepa.evals.core.config import OPTIMIZERS, HeadSpec


class FeatureNorm:
    """BatchNorm1d(affine=False, eps=1e-6): batch statistics in training, running ones after."""

    def __init__(self, dim: int, device: torch.device, *, momentum: float = 0.1, eps: float = 1e-6) -> None:
        self.mean = torch.zeros(dim, device=device)
        self.var = torch.ones(dim, device=device)
        self.momentum, self.eps = momentum, eps

    def __call__(self, x: torch.Tensor, *, train: bool) -> torch.Tensor:
        if train:
            mean = x.mean(0)  # var_mean over dim 0 is ~8x slower on CPU
            var = (x - mean).square_().mean(0)
            n = x.shape[0]
            self.mean.lerp_(mean, self.momentum)
            self.var.lerp_(var * n / max(n - 1, 1), self.momentum)
        else:
            mean, var = self.mean, self.var
        return (x - mean) * torch.rsqrt(var + self.eps)


class Standardize:
    """What feeds the plain linear heads: (x - mean) / std of the training rows, then, with
    `whiten` > 0, PCA-whitened with the correlation matrix's eigenvalues floored at `whiten`.

    Fixed statistics, so it is the BN head's normalisation without its batch noise; a linear
    map of these features is a linear map of the raw ones (same function class, same heads),
    but SGD on them converges: frozen-ViT features are ill-conditioned (a random-init ViT's
    concatPOOL4 correlation matrix: top eigenvalue ~640 of 768, ~60 above 1e-3), and plain
    SGD stops a few points short of the logistic-regression optimum. Directions below the
    floor are learned slowly: the floor is a mild ridge, not a cliff.
    """

    def __init__(self, x: torch.Tensor, *, whiten: float = 0.0, eps: float = 1e-6, chunk: int = 65536) -> None:
        n = max(len(x), 1)
        parts = range(0, len(x), chunk)
        mean = sum(x[i : i + chunk].double().sum(0) for i in parts) / n
        var = sum((x[i : i + chunk].double() - mean).square().sum(0) for i in parts) / n
        self.mean, self.rstd = mean.float(), torch.rsqrt(var + eps).float()
        self.proj = None
        if whiten > 0:
            rstd = self.rstd.double()
            cov = sum(gram((x[i : i + chunk].double() - mean) * rstd) for i in parts) / n
            ev, vecs = torch.linalg.eigh(cov)
            self.proj = (vecs * torch.rsqrt(ev.clamp(min=0) + whiten)).float()

    def __call__(self, x: torch.Tensor, *, train: bool = False) -> torch.Tensor:
        z = (x - self.mean) * self.rstd
        return z if self.proj is None else z @ self.proj


def gram(z: torch.Tensor) -> torch.Tensor:
    return z.T @ z


class HeadGroup:
    """H linear heads over one input (feature set + norm), trained by SGD or LARS with momentum."""

    def __init__(self, specs: list[HeadSpec], dim: int, num_classes: int, *, device: torch.device, generator: torch.Generator,
                 momentum: float = 0.9, optimizer: str = "sgd") -> None:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"head optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        self.specs, self.h, self.c = specs, len(specs), num_classes
        w = torch.randn(dim, self.h * num_classes, generator=generator) * 0.01
        self.weight = w.to(device)
        self.bias = torch.zeros(self.h * num_classes, device=device)
        self.buf_w, self.buf_b = torch.zeros_like(self.weight), torch.zeros_like(self.bias)
        per_col = lambda v: torch.tensor(v, device=device).repeat_interleave(num_classes)  # noqa: E731
        self.lr = per_col([s.lr for s in specs])
        self.wd = per_col([s.wd for s in specs])
        self.momentum = momentum
        self.lars = lars_optimizer(self) if optimizer == "lars" else None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D] -> [B, H, C]."""
        return torch.addmm(self.bias, x, self.weight).view(-1, self.h, self.c)

    def step(self, x: torch.Tensor, y: torch.Tensor, *, lr_factor: float) -> torch.Tensor:
        """One SGD step on the mean cross-entropy of every head; returns the losses [H]."""
        logp = log_softmax(self.logits(x))
        loss = -logp.gather(-1, y.view(-1, 1, 1).expand(-1, self.h, 1)).mean(0).squeeze(-1)
        g = logp.exp_()
        g[torch.arange(len(y), device=y.device), :, y] -= 1
        g = g.view(len(y), -1).div_(len(y))
        if self.lars is not None:
            self._lars_step(x.T @ g, g.sum(0), lr_factor)
            return loss
        grad_w = torch.addmm(self.weight * self.wd, x.T, g)
        self.buf_w.mul_(self.momentum).add_(grad_w)
        self.buf_b.mul_(self.momentum).add_(g.sum(0))
        self.weight.sub_(self.buf_w * (self.lr * lr_factor))
        self.bias.sub_(self.buf_b * (self.lr * lr_factor))
        return loss

    def _lars_step(self, grad_w: torch.Tensor, grad_b: torch.Tensor, lr_factor: float) -> None:
        """timm's Lars on each head's columns (weight decay applied by Lars, not here)."""
        for j, group in enumerate(self.lars.param_groups):
            cols = slice((j // 2) * self.c, (j // 2 + 1) * self.c)
            group["params"][0].grad = grad_w[:, cols] if j % 2 == 0 else grad_b[cols]
            group["lr"] = group["base_lr"] * lr_factor
        self.lars.step()

    def state(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.cpu(), "bias": self.bias.cpu()}


def lars_optimizer(group: HeadGroup, *, trust_coeff: float = 0.001) -> torch.optim.Optimizer:
    """timm Lars over views of the group's matrix: per head, the weight adapted by its own
    trust ratio (always, as MAE's linear probe) and the bias plain SGD without decay (MAE)."""
    from timm.optim import Lars

    groups = []
    for j, s in enumerate(group.specs):
        cols = slice(j * group.c, (j + 1) * group.c)
        groups.append({"params": [group.weight[:, cols]], "lr": s.lr, "base_lr": s.lr, "weight_decay": s.wd, "always_adapt": True})
        groups.append({"params": [group.bias[cols]], "lr": s.lr, "base_lr": s.lr, "weight_decay": 0.0, "always_adapt": False})
    return Lars(groups, momentum=group.momentum, trust_coeff=trust_coeff)


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log_softmax over a short last dim (classes): ~3x faster on CPU than the fused kernel.

    Shifted logits are clamped at -80 so softmax never underflows into denormal floats,
    which slow the CPU gradient GEMMs 5-7x once heads grow confident (exp(-80) ~ 2e-35).
    """
    z = (z - z.amax(-1, keepdim=True)).clamp_(min=-80.0)
    return z - z.exp().sum(-1, keepdim=True).log_()


def topk_correct(logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, torch.Tensor]:
    """Per head, how many rows have the label among the top-k logits: {k: [H]} for [B, H, C]."""
    kmax = min(max(ks), logits.shape[-1])
    top = logits.topk(kmax, dim=-1).indices  # [B, H, k]
    hit = top == y.view(-1, 1, 1)
    return {k: hit[..., : min(k, kmax)].any(-1).sum(0) for k in ks}
