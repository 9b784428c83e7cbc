"""Segmentation: ADE20K layout reading, reduce-zero-label, metrics against a hand-made
confusion matrix, sliding windows, and a short linear-head run that beats the untrained head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.ade20k import NUM_CLASSES, make_ade20k

from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.dense.heads import DenseModel, UperNetHead
from ijepa.evals.dense.setup import dense_backbone
from ijepa.evals.segmentation import (
    ADE20K,
    IGNORE,
    SegRun,
    build_head,
    confusion_matrix,
    evaluate,
    reduce_zero_label,
    run_segmentation,
    seg_metrics,
    slide_logits,
)
from ijepa.typedconfig import load

SPEC = EncoderSpec(random_init="vit_tiny", img_size=64, patch_size=8, in_chans=3, depth=2)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    return make_ade20k(tmp_path_factory.mktemp("ade"))


def test_metrics_on_a_hand_made_confusion_matrix():
    # rows = truth, cols = prediction; class 2 never appears (NaN, skipped in the means)
    conf = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    m = seg_metrics(conf)
    iou0, iou1 = 3 / (4 + 5 - 3), 4 / (6 + 5 - 4)
    assert m["miou"] == pytest.approx((iou0 + iou1) / 2)
    assert m["macc"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert m["aacc"] == pytest.approx(7 / 10)
    assert m["iou_per_class"][2] is None


def test_confusion_matrix_skips_ignore():
    label = torch.tensor([[0, 1, IGNORE], [2, 2, 1]])
    pred = torch.tensor([[0, 2, 1], [2, 0, 1]])
    conf = confusion_matrix(pred, label, 3)
    assert conf.sum() == 5
    assert conf.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]


def test_reduce_zero_label():
    assert reduce_zero_label(torch.tensor([0, 1, 5, 255])).tolist() == [IGNORE, 0, 4, IGNORE]


def test_dataset_reads_the_official_layout(ade):
    ds = ADE20K(ade, "val", num_classes=NUM_CLASSES)
    item = ds[0]
    assert item["image"].shape == (3, 64, 96) and item["image"].dtype == torch.uint8
    lab = item["label"][0]
    assert (lab[0] == IGNORE).all() and set(lab.unique().tolist()) <= {0, 1, 2, 3, IGNORE}
    with pytest.raises(ValueError, match="outside"):
        ADE20K(ade, "val", num_classes=2)[0]
    with pytest.raises(FileNotFoundError, match="ADEChallengeData2016 layout"):
        ADE20K(ade / "images", "train", num_classes=4)


def test_slide_windows_average_to_the_full_prediction():
    # a per-pixel model: overlapping windows must reproduce the full-image logits exactly
    model = torch.nn.Conv2d(3, 5, 1)
    x = torch.randn(1, 3, 40, 72)
    out = slide_logits(model, x, crop=32, stride=20, num_classes=5, patch=8)
    torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)


def test_upernet_head_shapes():
    bb, _ = dense_backbone(SPEC, SegRun(), CPU)
    out = DenseModel(bb, UperNetHead(192, 7, channels=16))(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 7, 64, 96)


def test_short_run_beats_the_untrained_head(ade):
    run = load(SegRun, "evals/segmentation_fixture.yaml", values=dict(data=str(ade), progress=False))
    bb, _ = dense_backbone(SPEC, run, CPU)
    torch.manual_seed(0)
    untrained = evaluate(DenseModel(bb, build_head(run, 192)).eval(), ADE20K(ade, "val", num_classes=NUM_CLASSES), run, device=CPU, in_chans=3, patch=8)
    rec = run_segmentation(SPEC, run, device=CPU)
    assert rec["kind"] == "eval.segmentation" and rec["taps"] == [0, 0, 0, 1]
    assert rec["miou"] > untrained["miou"] + 0.25, (rec["miou"], untrained["miou"])
    assert rec["miou"] > 0.45 and 0 <= rec["aacc"] <= 1 and np.isfinite(rec["macc"])
