"""The forms in which `torch.compile` may wrap a training step's modules (issue 40).

The Trainer compiles the encoder and predictor whole with `dynamic=True` ("whole"). On an
H200 with torch 2.11 inductor raised an `AssertionError` in `tiling_utils.get_pw_red_splits`
compiling the predictor that way: I-JEPA's masks give every batch new context and target
lengths, and that tiling pass compares symbolic sizes by their hints. The candidates,
measured beside eager by `benchmarks/gpu_check.sh`:
- "blocks": every transformer block compiled alone (`dynamic=True`); the gathers, the
  concatenation and the position embeddings around the blocks stay eager;
- "bucketed": whole modules with static shapes (`dynamic=False`), every mask truncated to a
  multiple of a quantum (`bucket_masks`), so a few lengths recur and each compiles once;
- "seqdim": whole modules, only the token axis dynamic (`torch._dynamo.mark_dynamic`), the
  batch and widths static;
- "nocoalesce": "whole" with the inductor pass that raised turned off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.models.vision_transformer import Block
from torch import nn

Masks = list[torch.Tensor]


@dataclass(frozen=True)
class CompileForm:
    scope: str  # "modules": each trainable module whole; "blocks": each transformer block in place
    dynamic: bool | None
    mark_seq: bool = False  # mark dim 1 (tokens) of every mask and token tensor dynamic
    buckets: tuple[int, int] | None = None  # (context, target) length quanta: masks truncated to multiples
    inductor: dict = field(default_factory=dict)  # inductor config for this compile only (torch.compile options)


FORMS: dict[str, CompileForm] = {
    "whole": CompileForm("modules", True),
    "blocks": CompileForm("blocks", True),
    "bucketed": CompileForm("modules", False, buckets=(16, 8)),
    "seqdim": CompileForm("modules", None, mark_seq=True),
    "nocoalesce": CompileForm("modules", True, inductor={"triton.coalesce_tiling_analysis": False}),
}


def compile_form(name: str) -> CompileForm:
    if name not in FORMS:
        raise ValueError(f"compile form {name!r}: expected one of {', '.join(FORMS)}")
    return FORMS[name]


class SeqDynamic(nn.Module):
    """Calls a compiled module with the token axis of its inputs marked dynamic: dim 1 of each
    token tensor [B, N, D] and mask [B, K], the one size I-JEPA's masks change per batch.
    Images ([B, C, H, W]) and axes of size 1 (which dynamo always specialises) are left static."""

    def __init__(self, compiled: nn.Module) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor, *args, **kwargs):
        masks = [m for a in args for m in (a if isinstance(a, list) else [a]) if isinstance(m, torch.Tensor)]
        for t in (x, *masks):
            if t.dim() in (2, 3) and t.size(1) > 1:
                torch._dynamo.mark_dynamic(t, 1)
        return self.compiled(x, *args, **kwargs)


def compile_modules(modules: dict[str, nn.Module], form: str, *, backend: str = "inductor") -> dict[str, nn.Module]:
    """The modules a step calls, compiled in `form`. "blocks" compiles the blocks in place
    (`nn.Module.compile`: state-dict keys unchanged) and returns the same modules; the others
    return wrappers that share the weights. Run them uncompiled under
    `torch.compiler.set_stance("force_eager")`."""
    f = compile_form(form)
    kw = {"dynamic": f.dynamic, "backend": backend}
    if f.inductor and backend == "inductor":
        kw["options"] = dict(f.inductor)
    if f.scope == "blocks":
        for m in modules.values():
            for sub in m.modules():
                if isinstance(sub, Block):
                    sub.compile(**kw)
        return modules
    out = {k: torch.compile(m, **kw) for k, m in modules.items()}
    return {k: SeqDynamic(m) for k, m in out.items()} if f.mark_seq else out


def bucket_masks(masks_enc: Masks, masks_pred: Masks, buckets: tuple[int, int]) -> tuple[Masks, Masks]:
    """Truncate the context masks to a multiple of `buckets[0]` tokens and the targets to one of
    `buckets[1]` (never below one quantum; a shorter mask stays as it is). The collator already
    truncates every mask to the batch minimum by keeping its first indices; this keeps fewer the
    same way. Truncating, not padding: a repeated index would weigh its token twice in
    attention, and real padding needs an attention mask, which takes SDPA off flash attention."""

    def cut(masks: Masks, q: int) -> Masks:
        k = masks[0].size(1)
        keep = k if k <= q else k // q * q
        return [m[:, :keep] for m in masks]

    return cut(masks_enc, buckets[0]), cut(masks_pred, buckets[1])
