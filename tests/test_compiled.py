"""The torch.compile forms of the training step (ijepa.training.compiled): the same step, traced."""

from __future__ import annotations

import warnings

import pytest
import torch

from ijepa.bench.flops import count_flops
from ijepa.bench.harness import build_harness
from ijepa.bench.throughput import dynamo_graphs
from ijepa.training.compiled import FORMS, bucket_masks, compile_form
from ijepa.training.config import from_dict


def test_bucket_masks_cut_to_multiples_keeping_the_first_indices():
    """As the collator's own truncation to the batch minimum: the first indices stay."""
    me, mp = [torch.arange(37).repeat(2, 1)], [torch.arange(30).repeat(2, 1)] * 4
    ce, cp = bucket_masks(me, mp, (16, 8))
    assert ce[0].shape == (2, 32) and torch.equal(ce[0], me[0][:, :32])
    assert len(cp) == 4 and all(m.shape == (2, 24) for m in cp)
    short_e, short_p = bucket_masks([torch.arange(5)[None]], [torch.arange(16)[None]], (16, 8))
    assert short_e[0].shape == (1, 5) and short_p[0].shape == (1, 16)  # never below one quantum
    with pytest.raises(ValueError, match="compile form 'fast'"):
        compile_form("fast")


def small_cfg(compile_: bool):
    return from_dict({
        "data": {"crop_size": 32, "batch_size": 4}, "mask": {"patch_size": 4},  # 8 x 8 grid: every mask longer than 1
        "meta": {"model_name": "vit_tiny", "depth": 1, "in_chans": 1, "pred_depth": 1, "pred_emb_dim": 96, "compile": compile_},
    })


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_compile_form_computes_the_eager_step(form):
    """Traced by dynamo (backend "eager": no C++ build), each form gives the uncompiled step's
    losses over mask sets of different lengths; `step(eager=True)` (the FLOP counter's) builds
    no graph, and the blocks form leaves the checkpoint keys as they were."""
    buckets = FORMS[form].buckets
    eager = build_harness(small_cfg(False), "ijepa", device=torch.device("cpu"), n_masks=3, buckets=buckets)
    comp = build_harness(small_cfg(True), "ijepa", device=torch.device("cpu"), n_masks=3, buckets=buckets,
                         compile_backend="eager", compile_form=form)
    assert len({tuple(m[0][0].shape) for m in comp.masks}) > 1  # the lengths change between steps
    for i in range(3):
        assert float(comp.step(i)) == pytest.approx(float(eager.step(i)), rel=1e-5)
    graphs = dynamo_graphs()
    with warnings.catch_warnings():  # the FLOP counter's global hooks: the wrappers' warning is silenced
        warnings.filterwarnings("error", message=".*global hooks")
        assert count_flops(lambda: comp.step(0, eager=True)) > 0
    assert dynamo_graphs() == graphs
    assert list(comp.model.state_dict()) == list(eager.model.state_dict())
