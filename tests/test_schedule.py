"""The warm-up + cosine schedules, pinned to the float at a few steps: pretraining's lr, weight
decay and EMA momentum (the official I-JEPA schedulers), the eval heads' factor, the dense
trainer's lr and the decoder's. Exact equality, not approx: a refactor must keep every value."""

from __future__ import annotations

import pytest

from ijepa.decoder.train import DecoderTrainConfig
from ijepa.decoder.train import lr_at as decoder_lr
from ijepa.evals.core.config import DenseTrainConfig, GridConfig
from ijepa.evals.core.train import lr_at as dense_lr
from ijepa.training.schedules import Schedules

STEPS = (0, 4, 8, 9, 10, 25, 48, 49, 60)  # 60: past the schedule's end (an ipe_scale < 1 run gets there)
PRETRAIN = {
    "lr": (0.00028000000000000003, 0.0006000000000000001, 0.00092, 0.001, 0.0009984602081996976, 0.0006548539886902864,
           2.539791800302582e-06, 1e-06, 0.00017610069985907306),  # past the end the official cosine climbs back
    "wd": (0.04035518888291112, 0.04880982706687231, 0.06802097340963725, 0.07437694101250947, 0.08130761630035793,
           0.2313022935152764, 0.3996448111170889, 0.4, 0.4),
    "momentum": (0.996, 0.99632, 0.99664, 0.99672, 0.9968, 0.998, 0.99984, 0.99992, 1.0),
}


@pytest.mark.parametrize("what", PRETRAIN)
def test_pretraining_schedules_are_pinned(what):
    s = Schedules(total_steps=50, warmup_steps=10, start_lr=2e-4, lr=1e-3, final_lr=1e-6,
                  weight_decay=0.04, final_weight_decay=0.4, ema=(0.996, 1.0))
    assert tuple(getattr(s, f"{what}_at")(t) for t in STEPS) == PRETRAIN[what]


def test_eval_head_factor_is_pinned():
    grid = GridConfig()
    assert [grid.lr_factor(t, 300, t // 10) for t in (0, 1, 150, 299)] == [1.0, 0.9999725846827561, 0.5, 2.7415317243928428e-05]
    scaled = GridConfig(lr_base_batch=64, batch_size=256)
    assert [scaled.lr_factor(t, 300, t // 10) for t in (0, 7, 299)] == [4.0, 3.994628954448916, 0.00010966126897571371]


def test_dense_trainer_lr_is_pinned():
    cfg = DenseTrainConfig(max_iters=100, lr=1e-3, warmup_iters=10, min_lr=1e-5)
    assert [dense_lr(cfg, t) for t in (0, 3, 8, 9, 10, 11, 50, 99)] == [
        0.0001, 0.0004, 0.0009000000000000001, 0.001, 0.001, 0.0009996984593744526, 0.0005909558479451307, 1.0301540625547598e-05]
    flat = DenseTrainConfig(max_iters=100, lr=1e-3)
    assert [dense_lr(flat, t) for t in (0, 50, 99)] == [0.001, 0.0005, 2.467198171342e-07]


def test_decoder_lr_is_pinned():
    """Its warm-up is the shared one's `(s / W) * lr` (the official order), where it was
    `lr * s / W`: within 2 ulp (steps 8 and 10 here; 29 of the 100 default warm-up steps), which
    AdamW's float32 update does not see (the same weights bit for bit over 200 default steps)."""
    tc = DecoderTrainConfig()
    assert [decoder_lr(t, tc) for t in (0, 8, 9, 10, 98, 99, 100, 101, 500, 999)] == [
        1e-05, 8.999999999999999e-05, 0.0001, 0.00011, 0.00099, 0.001, 0.001, 0.0009999969538288952,
        0.0005868240888334653, 3.046171104803541e-09]
