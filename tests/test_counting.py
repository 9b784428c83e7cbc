"""Counting: the official FSC-147 layout, counts and exemplars, metric functions against
hand-computed values, count-preserving resizing, and a short run that trains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixtures.fsc147 import make_fsc147

from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.counting import (
    FSC147,
    CountRun,
    Transform,
    cell_means,
    count_metrics,
    cut_exemplars,
    run_counting,
    to_count,
)
from ijepa.evals.dense.data import resize
from ijepa.evals.dense.setup import load_run

SPEC = EncoderSpec(random_init="vit_tiny", img_size=64, patch_size=8, in_chans=3, depth=2)


@pytest.fixture(scope="module")
def fsc(tmp_path_factory):
    return make_fsc147(tmp_path_factory.mktemp("fsc"), n_train=16, n_val=4, n_test=4)


def test_count_metrics():
    m = count_metrics(np.array([3.0, 5.0, 10.0]), np.array([4.0, 5.0, 7.0]))
    assert m["mae"] == pytest.approx(4 / 3) and m["rmse"] == pytest.approx(math.sqrt(10 / 3))


def test_density_sums_are_counts_and_resizing_keeps_them(fsc):
    item = FSC147(fsc, "train")[0]
    assert item["density"].sum().item() == pytest.approx(item["count"], rel=1e-4)
    assert item["boxes"].shape == (3, 4) and (item["boxes"][:, 2:] > item["boxes"][:, :2]).all()
    assert resize(item["density"], (37, 50), "mass").sum().item() == pytest.approx(item["count"], rel=1e-4)
    cells = cell_means(item["density"][None], (8, 12))
    assert to_count(cells, (64, 96), 1.0).item() == pytest.approx(item["count"], rel=1e-4)
    ex = cut_exemplars(item["image"], item["boxes"], 16)
    assert ex.shape == (3, 3, 16, 16) and ex.dtype == torch.uint8


def test_eval_transform_keeps_the_point_count(fsc):
    run = CountRun(img_size=32, exemplar_size=16)
    item = FSC147(fsc, "val", transform=Transform(run, 3, 8, train=False))[0]
    assert item["image"].shape == (3, 32, 48) and item["exemplars"].shape == (3, 3, 16, 16)
    assert item["count"] == len(FSC147(fsc, "val").anno[FSC147(fsc, "val").names[0]]["points"])


def test_bad_layout_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="images_384_VarV2"):
        FSC147(tmp_path, "train")


def test_short_run_trains_and_records(fsc):
    run = load_run(CountRun, "evals/counting_fixture.yaml", data=str(fsc), progress=False)
    rec = run_counting(SPEC, run, device=torch.device("cpu"))
    assert rec["kind"] == "eval.counting" and rec["n_test"] == 4
    hist = rec["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert all(np.isfinite(rec[k]) for k in ("mae", "rmse", "val_mae", "val_rmse", "baseline_test_mae"))
