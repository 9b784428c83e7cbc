"""`ijepa eval detection`: COCO data, COCOeval scoring, Mask R-CNN training on a shapes fixture."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.coco import make_coco
from typer.testing import CliRunner

from ijepa.cli import app
from ijepa.cli import evals as _cli  # noqa: F401  (registers the eval commands)
from ijepa.data.coco import CocoInstances, collate, load_coco
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.detection import (
    DetectionConfig,
    build_model,
    coco_scores,
    param_groups,
    run_detection,
    to_coco_results,
)

EVALS = Path(__file__).resolve().parents[1] / "evals"
TINY = EncoderSpec(random_init="vit_tiny", depth=2, patch_size=8, img_size=64, in_chans=3)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return make_coco(tmp_path_factory.mktemp("coco"), n_train=32, n_val=12, size=64)


def fixture_cfg(**overrides) -> DetectionConfig:
    return DetectionConfig(**{**yaml.safe_load((EVALS / "detection_fixture.yaml").read_text()), **overrides})


def test_dataset_maps_categories_and_decodes_polygons_and_rle(coco_root):
    ds = CocoInstances(coco_root, "val")
    assert ds.cat_ids == [2, 5, 9] and ds.num_classes == 4
    kinds = {type(a["segmentation"]).__name__ for a in ds.coco.dataset["annotations"]}
    assert kinds == {"list", "dict"}  # polygons and RLE both exercised
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
        assert set(t["labels"].tolist()) <= {1, 2, 3}
        for box, mask in zip(t["boxes"], t["masks"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            tight = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            assert torch.allclose(box, tight, atol=1.5), (box, tight)


def test_cocoeval_ground_truth_as_prediction_gives_ap_one(coco_root):
    gt = load_coco(coco_root / "annotations" / "instances_val2017.json")
    anns = gt.dataset["annotations"]
    boxes = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in anns]
    masks = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": gt.annToRLE(a), "score": 1.0} for a in anns]
    assert coco_scores(gt, boxes, "bbox")["ap"] == pytest.approx(1.0)
    assert coco_scores(gt, masks, "segm")["ap"] == pytest.approx(1.0)
    assert coco_scores(gt, boxes, "bbox")["ap_l"] is None  # no large objects in 64 px images
    shifted = [{**b, "bbox": [b["bbox"][0] + b["bbox"][2] / 3, *b["bbox"][1:]]} for b in boxes]
    assert coco_scores(gt, shifted, "bbox")["ap"] < 0.5
    assert coco_scores(gt, [], "bbox")["ap"] == 0.0


def test_model_outputs_convert_to_coco_results_exactly(coco_root):
    """Ground truth dressed as Mask R-CNN output goes through to_coco_results to AP 1.0."""
    ds = CocoInstances(coco_root, "val")
    bbox, segm = [], []
    for i in range(len(ds)):
        _, t = ds[i]
        out = {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
               "masks": t["masks"][:, None].float()}
        b, s = to_coco_results(out, int(t["image_id"]), ds.cat_ids)
        bbox, segm = bbox + b, segm + s
    assert coco_scores(ds.coco, bbox, "bbox")["ap"] > 0.99
    assert coco_scores(ds.coco, segm, "segm")["ap"] > 0.99


def test_model_is_vitdet_shaped_and_frozen_encoder_gets_no_gradient(coco_root):
    enc, _, _ = build_encoder(EncoderSpec(random_init="vit_tiny", depth=2, patch_size=16, img_size=128, in_chans=3))
    cfg = DetectionConfig(img_size=128, out_channels=32, head_channels=32, head_convs=1, fc_dim=64, proposals=50, rois_per_image=16)
    model = build_model(enc, 4, cfg)
    assert [s[0] for s in model.rpn.anchor_generator.sizes] == [32, 64, 128, 256, 512]  # ViTDet's anchors
    batch = collate([CocoInstances(coco_root, "train")[i] for i in range(2)])
    model.train()
    loss = sum(model(batch["images"], batch["targets"]).values())
    loss.backward()
    assert all(p.grad is None for p in enc.parameters())
    assert all(p.grad is not None for p in model.backbone.pyramid.parameters())
    ft_cfg = DetectionConfig(img_size=64, mode="finetune", layer_decay=0.5)
    scales = sorted({g["lr_scale"] for g in param_groups(build_model(build_encoder(TINY)[0], 4, ft_cfg), ft_cfg)})
    assert scales == [0.125, 0.25, 0.5, 1.0]  # patch embed, block 0, block 1, final norm + heads


def test_training_raises_box_and_mask_ap_well_above_an_untrained_head(coco_root):
    untrained = run_detection(TINY, coco_root, fixture_cfg(max_iters=0), device=CPU, progress=False)
    trained = run_detection(TINY, coco_root, fixture_cfg(), device=CPU, progress=False)
    assert untrained["box_ap"] < 0.02
    assert trained["box_ap"] > untrained["box_ap"] + 0.05, (untrained["box"], trained["box"])
    assert trained["mask_ap"] > untrained["mask_ap"] + 0.05, (untrained["mask"], trained["mask"])
    assert trained["box"]["ap50"] > 0.2
    assert 0 <= trained["box_ap"] <= 1 and trained["n_val"] == 12 and trained["kind"] == "eval.detection"


def test_cli_prints_one_json_record(coco_root, tmp_path):
    args = ["eval", "detection", "--random-init", "vit_tiny", "--depth", "2", "--patch-size", "8", "--data", str(coco_root),
            "-c", str(EVALS / "detection_fixture.yaml"), "--max-iters", "1", "--eval-limit", "2", "--device", "cpu",
            "--results", str(tmp_path), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.strip())
    assert rec["n_val"] == 2 and rec["config"]["max_iters"] == 1 and {"box_ap", "mask_ap"} <= set(rec)
    assert Path(rec["record"]).is_file()
    res = CliRunner().invoke(app, ["eval", "detection", "--random-init", "vit_tiny", "--data", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "instances_train2017.json" in res.output


def test_recipes_are_detection_configs():
    vitb = DetectionConfig(**yaml.safe_load((EVALS / "detection_coco_vitb.yaml").read_text()))
    assert (vitb.img_size, vitb.batch_size, vitb.max_iters, vitb.layer_decay) == (1024, 64, 184375, 0.7)
    assert fixture_cfg().img_size == 64


def _write(root: Path, data) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "train2017").mkdir(exist_ok=True)
    path = root / "annotations" / "instances_train2017.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", "not valid JSON"),
    ({"images": [], "categories": []}, "key 'annotations' missing"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}], "categories": [{"id": 1, "name": "x"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0,
                       "segmentation": [[0, 0, 2, 0, 2, 2]]}]}, "category_id 7"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}], "categories": [{"id": 1, "name": "x"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2], "area": 4, "iscrowd": 0,
                       "segmentation": [[0, 0, 2, 0, 2, 2]]}]}, "bbox must be 4 numbers"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}], "categories": [{"id": 1, "name": "x"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0,
                       "segmentation": [[0, 0, 2]]}]}, "annotations[0] segmentation"),
])
def test_broken_annotation_file_is_one_clear_error(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        CocoInstances(tmp_path, "train")
    assert str(path) in str(e.value)


def test_missing_files_are_named(tmp_path, coco_root):
    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        CocoInstances(tmp_path, "val")
    _write(tmp_path, {"images": [{"id": 1, "file_name": "gone.jpg", "height": 8, "width": 8}], "categories": [], "annotations": []})
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        CocoInstances(tmp_path, "train")[0]
    (tmp_path / "train2017").rmdir()
    with pytest.raises(FileNotFoundError, match="train2017"):
        CocoInstances(tmp_path, "train")
