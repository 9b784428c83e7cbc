"""Multi-block mask statistics, invariants, determinism, and termination where the official sampler hangs."""

from __future__ import annotations

import signal
from contextlib import contextmanager

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ijepa.masks import MultiBlockMaskCollator


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (the official sampler loops forever on these inputs)."""

    def boom(*_):
        raise TimeoutError(f"mask sampling did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def draw(coll: MultiBlockMaskCollator, n_batches: int, batch: int = 8):
    for b in range(n_batches):
        yield coll.sample_masks(batch, coll._generator(b))


def as_rows_cols(idx: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return idx // width, idx % width


def test_official_statistics_on_a_14x14_grid():
    coll = MultiBlockMaskCollator(input_size=224, patch_size=16)
    n = coll.height * coll.width
    ctx, tgt = [], []
    for masks_enc, masks_pred in draw(coll, 60):
        assert len(masks_enc) == 1 and len(masks_pred) == 4
        ctx.append(masks_enc[0].shape[1] / n)
        tgt.append(masks_pred[0].shape[1] / n)
    mean_ctx, mean_tgt = sum(ctx) / len(ctx), sum(tgt) / len(tgt)
    # Targets: scale (0.15, 0.2) of the grid, rounded to whole rows/columns.
    assert 0.14 <= mean_tgt <= 0.2, mean_tgt
    # Context: a ~0.85-1.0 block minus four targets (overlapping each other), batch minimum.
    assert 0.3 <= mean_ctx <= 0.5, mean_ctx
    assert coll.num_relaxed == 0  # min_keep 10 is always satisfiable at 14x14


@pytest.mark.parametrize("size,patch", [(224, 16), ((64, 128), 8), ((48, 32), 16), (32, 4)])
def test_invariants_hold_on_square_and_non_square_grids(size, patch):
    coll = MultiBlockMaskCollator(input_size=size, patch_size=patch, min_keep=2)
    h, w = coll.height, coll.width
    for masks_enc, masks_pred in draw(coll, 15):
        for m in masks_enc + masks_pred:
            assert m.dtype == torch.int64 and m.dim() == 2 and m.shape[0] == 8
            assert m.min() >= 0 and m.max() < h * w
        # One block size per batch: every target is a full rectangle of the same shape.
        shapes = set()
        for m in masks_pred:
            for row in m:
                r, c = as_rows_cols(row, w)
                bh, bw = int(r.max() - r.min() + 1), int(c.max() - c.min() + 1)
                assert bh * bw == len(row) == len(set(row.tolist()))
                shapes.add((bh, bw))
        assert len(shapes) == 1
        for b in range(8):
            context = set(masks_enc[0][b].tolist())
            assert len(context) == masks_enc[0].shape[1]
            if coll.num_relaxed == 0:
                for m in masks_pred:
                    assert not context & set(m[b].tolist()), "context overlaps a target"


def test_context_is_larger_than_min_keep_when_satisfiable():
    coll = MultiBlockMaskCollator(input_size=224, patch_size=16, min_keep=10)
    for masks_enc, masks_pred in draw(coll, 20):
        assert masks_enc[0].shape[1] > 10 and masks_pred[0].shape[1] > 10


def test_allow_overlap_keeps_whole_context_block():
    coll = MultiBlockMaskCollator(input_size=224, patch_size=16, allow_overlap=True)
    for masks_enc, _ in draw(coll, 10):
        assert masks_enc[0].shape[1] >= int(196 * 0.85) - 20  # a square of ~0.85-1.0 of the grid


def test_determinism_under_seed_and_batch_index():
    a = MultiBlockMaskCollator(input_size=32, patch_size=4, min_keep=4, seed=3)
    b = MultiBlockMaskCollator(input_size=32, patch_size=4, min_keep=4, seed=3)
    other_seed = MultiBlockMaskCollator(input_size=32, patch_size=4, min_keep=4, seed=4)
    other_rank = MultiBlockMaskCollator(input_size=32, patch_size=4, min_keep=4, seed=3, rank=1)
    samples = [torch.zeros(2)] * 6
    first = [a(samples) for _ in range(3)]
    second = [b(samples) for _ in range(3)]
    for (_, ea, pa), (_, eb, pb) in zip(first, second, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(ea + pa, eb + pb, strict=True))
    assert not torch.equal(first[0][1][0], first[1][1][0]) or not torch.equal(first[0][2][0], first[1][2][0])
    for c in (other_seed, other_rank):
        _, e, p = c(samples)
        assert not all(torch.equal(x, y) for x, y in zip(e + p, first[0][1] + first[0][2], strict=True))


def test_resume_mid_epoch_and_workers_give_the_same_masks():
    coll = MultiBlockMaskCollator(input_size=32, patch_size=4, min_keep=4, seed=1)
    data = TensorDataset(torch.arange(40.0))
    coll.set_epoch(2)
    serial = [(e, p) for _, e, p in DataLoader(data, batch_size=4, collate_fn=coll)]
    coll.set_epoch(2)
    workers = [(e, p) for _, e, p in DataLoader(data, batch_size=4, collate_fn=coll, num_workers=2)]
    coll.set_epoch(2, start_batch=6)
    resumed = [(e, p) for _, e, p in DataLoader(TensorDataset(torch.arange(24.0, 40.0)), batch_size=4, collate_fn=coll)]
    assert len(serial) == len(workers) == 10 and len(resumed) == 4
    for (e1, p1), (e2, p2) in zip(serial, workers, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(e1 + p1, e2 + p2, strict=True))
    for (e1, p1), (e2, p2) in zip(serial[6:], resumed, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(e1 + p1, e2 + p2, strict=True))


def test_collate_returns_batch_and_masks():
    coll = MultiBlockMaskCollator(input_size=32, patch_size=4, min_keep=4)
    batch, masks_enc, masks_pred = coll([(torch.ones(1, 32, 32), 3)] * 5)
    imgs, labels = batch
    assert imgs.shape == (5, 1, 32, 32) and labels.tolist() == [3] * 5
    assert len(masks_enc) == 1 and len(masks_pred) == 4 and masks_enc[0].shape[0] == 5


def test_official_hang_case_crop32_patch16_terminates_and_counts():
    coll = MultiBlockMaskCollator(input_size=32, patch_size=16)  # a 2x2 grid, min_keep 10
    with deadline(20):
        for masks_enc, masks_pred in draw(coll, 5):
            for m in masks_enc + masks_pred:
                assert m.shape[1] >= 1 and m.max() < 4
    assert coll.num_relaxed > 0


def test_8x8_grid_with_default_min_keep_terminates_and_counts():
    coll = MultiBlockMaskCollator(input_size=32, patch_size=4)  # 0.15-0.2 of 64 is <= 10
    with deadline(20):
        for masks_enc, masks_pred in draw(coll, 10):
            assert masks_enc[0].shape[1] >= 1 and masks_pred[0].shape[1] >= 1
    assert coll.num_relaxed > 0


def test_sixteen_targets_on_8x8_grid_terminate():
    coll = MultiBlockMaskCollator(input_size=32, patch_size=4, npred=16, min_keep=4)
    with deadline(20):
        for masks_enc, masks_pred in draw(coll, 5):
            assert len(masks_pred) == 16 and masks_enc[0].shape[1] >= 1
    assert coll.num_relaxed > 0  # targets cover the context block: constraints were dropped


def test_input_smaller_than_a_patch_is_an_error():
    with pytest.raises(ValueError, match="smaller than one patch"):
        MultiBlockMaskCollator(input_size=8, patch_size=16)
