"""Counting: the official FSC-147 layout and the COCO-style one (same scenes, same counts and
exemplars), clear errors for bad files, metric functions against hand-computed values,
count-preserving resizing, and a short run that beats predicting the train mean count."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from fixtures.fsc147 import make_counting_coco, make_fsc147

from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.counting import (
    FSC147,
    CocoCounting,
    CountRun,
    Transform,
    cell_means,
    count_metrics,
    counting_dataset,
    cut_exemplars,
    run_counting,
    to_count,
)
from ijepa.evals.dense.data import resize
from ijepa.typedconfig import load

SPEC = EncoderSpec(random_init="vit_tiny", img_size=64, patch_size=8, in_chans=3, depth=2)
SEED = int(os.environ.get("COUNTING_TEST_SEED", "0"))  # run seed of the short run (reliability checks)


@pytest.fixture(scope="module")
def fsc(tmp_path_factory):
    return make_fsc147(tmp_path_factory.mktemp("fsc"))


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_counting_coco(tmp_path_factory.mktemp("coco"))


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


def test_coco_style_reader_matches_the_fsc147_points(fsc, coco):
    """Same scenes in both layouts: the COCO reader (keypoints on odd objects, box centres on even
    ones) gives the number of points as the count, a density that sums to it and peaks where
    FSC-147's does, and the same exemplar boxes."""
    assert isinstance(counting_dataset(coco, "val"), CocoCounting) and isinstance(counting_dataset(fsc, "val"), FSC147)
    for split in ("train", "val", "test"):
        ours, ref = CocoCounting(coco, split), FSC147(fsc, split)
        assert ours.counts == [float(len(ref.anno[n]["points"])) for n in ref.names]
        for i in range(len(ours)):
            a, b = ours[i], ref[i]
            assert a["count"] == b["count"] and a["density"].sum().item() == pytest.approx(a["count"], rel=1e-4)
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
            # the same mass per 8x8 cell, up to the kernels' spill across cell borders
            assert (cell_means(a["density"][None], (8, 12)) - cell_means(b["density"][None], (8, 12))).abs().sum() * 64 < 0.2 * a["count"]


def _rewrite(coco, change) -> None:
    path = coco / "annotations" / "instances_val.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d.pop("images"), "expected a JSON object with 'images' and 'annotations' lists"),
    (lambda d: d["images"][0].pop("file_name"), "images[0] lacks key(s) 'file_name'"),
    (lambda d: [a.pop("bbox") for a in d["annotations"][:1]], "annotations[0] has no point: expected 'keypoints' [x, y, v > 0] or a 'bbox'"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), "annotations[1] bbox must be [x, y, width, height]"),
    (lambda d: d["annotations"][2].update(iscrowd=1), "annotations[2] is a crowd region"),
    (lambda d: [a.update(exemplar=False, bbox=None, keypoints=[5, 5, 2]) for a in d["annotations"]], "has no box to use as an exemplar"),
])
def test_bad_coco_file_is_one_clear_error(tmp_path, change, expected):
    root = make_counting_coco(tmp_path, n_train=1, n_val=2, n_test=1)
    _rewrite(root, change)
    with pytest.raises(ValueError) as e:
        CocoCounting(root, "val")
    msg = str(e.value)
    assert msg.startswith(str(root / "annotations" / "instances_val.json")) and expected in msg and "\n" not in msg


def test_cli_prints_a_bad_file_as_one_line(tmp_path):
    """Exit 2 and the message verbatim: the expected forms in brackets survive rich's markup."""
    from typer.testing import CliRunner

    import ijepa.cli.evals  # noqa: F401  (registers the eval commands)
    from ijepa.cli import app

    root = make_counting_coco(tmp_path, n_train=1, n_val=1, n_test=1)
    _rewrite(root, lambda d: d["annotations"][0].update(keypoints=[1, 2]))
    res = CliRunner().invoke(app, ["eval", "counting", "--random-init", "vit_tiny", "--depth", "1", "--patch-size", "8",
                                   "--data", str(root), "-c", "evals/counting_fixture.yaml", "--device", "cpu"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "instances_val.json: annotations[0] keypoints must be COCO triplets [x, y, v, ...], got [1, 2]" in lines[0]


def test_bad_layout_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="images_384_VarV2"):
        FSC147(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"annotation_FSC147_384.json .*annotations/instances_\{train,val,test\}.json"):
        counting_dataset(tmp_path, "train")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train.json").write_text("{not json")
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="instances_train.json: not valid JSON"):
        counting_dataset(tmp_path, "train")


def test_short_run_beats_the_mean_count(fsc):
    """The trivial baseline predicts the train split's mean count for every image; the head,
    trained on train only, must beat it on both val and test."""
    run = load(CountRun, "evals/counting_fixture.yaml", values=dict(data=str(fsc), progress=False, seed=SEED))
    rec = run_counting(SPEC, run, device=torch.device("cpu"))
    assert rec["kind"] == "eval.counting" and rec["n_test"] == 16
    assert rec["baseline_mean_count"] == pytest.approx(np.mean(FSC147(fsc, "train").counts))
    hist = rec["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert rec["val_mae"] < 0.75 * rec["baseline_val_mae"], rec
    assert rec["test_mae"] < 0.75 * rec["baseline_test_mae"], rec


def test_short_run_reads_the_coco_style_layout(coco):
    run = load(CountRun, "evals/counting_fixture.yaml", values=dict(data=str(coco), progress=False, max_iters=4, eval_every=2, max_eval_images=4))
    rec = run_counting(SPEC, run, device=torch.device("cpu"))
    assert rec["n_train"] == 64 and rec["n_test"] == 16
    assert all(np.isfinite(rec[k]) for k in ("mae", "rmse", "val_mae", "baseline_val_mae", "baseline_test_mae"))
