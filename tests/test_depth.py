"""Depth: both NYU layouts, Eigen-crop masking, metrics and loss against hand-computed values,
and a short lin.1 run that beats predicting the mean training depth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.nyu import make_nyu_bts, make_nyu_list, make_nyu_mat

from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.dense.heads import DenseModel
from ijepa.evals.dense.setup import dense_backbone
from ijepa.evals.depth import (
    DepthRun,
    build_head,
    depth_metrics,
    eval_mask,
    mean_depth_baseline,
    nyu_dataset,
    run_depth,
    silog_loss,
)
from ijepa.typedconfig import load

SPEC = EncoderSpec(random_init="vit_tiny", img_size=64, patch_size=8, in_chans=3, depth=2)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    return make_nyu_list(tmp_path_factory.mktemp("nyu"))


def test_metrics_against_hand_computed_values():
    gt, pred = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 3.0])
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx((1 / 1 + 0 + 1 / 4) / 3)
    assert m["sq_rel"] == pytest.approx((1 / 1 + 0 + 1 / 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(4 / 3) ** 2) / 3))
    assert m["log10"] == pytest.approx((math.log10(2) + math.log10(4 / 3)) / 3)
    # ratios 2, 1, 4/3: below 1.25 -> 1 of 3; below 1.5625 -> 2; below 1.953 -> 2
    assert (m["d1"], m["d2"], m["d3"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))


def test_silog_loss():
    gt = torch.tensor([1.0, 2.0, 4.0])
    valid = torch.ones(3, dtype=torch.bool)
    assert silog_loss(gt * 2, gt, valid, eps=0.0).item() == pytest.approx(math.sqrt(0.15) * math.log(2), rel=1e-5)
    pred = torch.tensor([1.0, 4.0, 4.0])
    g = torch.log(pred) - torch.log(gt)
    want = math.sqrt(g.var().item() + 0.15 * g.mean().item() ** 2)
    assert silog_loss(pred, gt, valid, eps=0.0).item() == pytest.approx(want, rel=1e-5)


def test_eigen_crop_and_depth_range():
    gt = torch.full((480, 640), 5.0)
    gt[100, 100] = 0.0
    gt[200, 200] = 12.0
    m = eval_mask(gt, min_depth=1e-3, max_depth=10.0, eigen_crop=True)
    assert m.sum() == (471 - 45) * (601 - 41) - 2 and not m[44].any() and m[45, 41] and not m[45, 40]


def test_both_layouts_read_metres(nyu, tmp_path):
    item = nyu_dataset(nyu, "train")[0]
    assert item["image"].shape == (3, 48, 64) and item["depth"].shape == (1, 48, 64)
    assert item["depth"][0, 0, 0] == pytest.approx(12.0) and item["depth"][0, -1, 5] in (pytest.approx(2.0), 1.2, 3.0, 4.5, 0.0)
    mat = nyu_dataset(make_nyu_mat(tmp_path), "test")
    m = mat[0]
    assert len(mat) == 4 and m["image"].shape == (3, 48, 64) and m["depth"].shape == (1, 48, 64)
    assert m["depth"][0, 0, 0] == pytest.approx(12.0)  # orientation: the 12 m pixel is top-left
    with pytest.raises(FileNotFoundError, match="file list"):
        nyu_dataset(tmp_path, "train")


def test_dpt_and_lin4_heads_predict_positive_depth():
    bb, _ = dense_backbone(SPEC, DepthRun(), CPU)
    for head in ("lin4", "dpt"):
        run = DepthRun(head=head, channels=16)
        out = DenseModel(bb, build_head(run, 192))(torch.randn(2, 3, 48, 64))
        assert out.shape == (2, 1, 48, 64) and (out > 0).all() and (out <= 10.0 + 1e-4).all()


def test_short_run_beats_the_mean_depth(nyu):
    run = load(DepthRun, "evals/depth_fixture.yaml", values=dict(data=str(nyu), progress=False))
    base = mean_depth_baseline(nyu_dataset(nyu, "train"), nyu_dataset(nyu, "test"), run)
    rec = run_depth(SPEC, run, device=CPU)
    assert rec["kind"] == "eval.depth"
    assert rec["abs_rel"] < 0.8 * base["abs_rel"], (rec["abs_rel"], base["abs_rel"])
    assert rec["rmse"] < base["rmse"] and rec["d1"] > base["d1"]


def test_bts_download_layout_end_to_end(tmp_path, monkeypatch):
    """`ijepa eval depth --data ROOT` on BTS's sync/ + official_splits/test/ with its own lists."""
    import json

    from typer.testing import CliRunner

    import ijepa.cli.evals  # noqa: F401  (registers the eval commands)
    from ijepa.cli import app

    root = make_nyu_bts(tmp_path / "nyu_depth_v2")
    train, test = nyu_dataset(root, "train"), nyu_dataset(root, "test")
    assert (len(train), len(test)) == (24, 6)
    assert train.pairs[0][0] == root / "sync" / "bedroom_0000" / "rgb_00000.jpg"
    assert test.pairs[0][1] == root / "official_splits" / "test" / "kitchen_0000" / "sync_depth_00000.png"
    assert test[0]["depth"][0, 0, 0] == pytest.approx(12.0)  # uint16 millimetres -> metres
    recipe = str(Path(__file__).parents[1] / "evals" / "depth_fixture.yaml")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["eval", "depth", "--random-init", "vit_tiny", "--depth", "2", "--patch-size", "8",
                                   "--device", "cpu", "--data", str(root), "-c", recipe, "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    base = mean_depth_baseline(train, test, load(DepthRun, recipe, values=dict(data=str(root))))
    assert rec["kind"] == "eval.depth" and (rec["n_train"], rec["n_test"]) == (24, 6)
    assert rec["abs_rel"] < 0.8 * base["abs_rel"], (rec["abs_rel"], base["abs_rel"])


def test_list_paths_under_no_known_folder_name_the_list(tmp_path):
    root = make_nyu_bts(tmp_path / "nyu", n_train=1, n_test=1)
    (root / "sync").rename(root / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"nyudepthv2_train_files_with_gt.txt: its first image bedroom_0000/rgb_00000.jpg is not under "):
        nyu_dataset(root, "train")
