"""Data that does not match its layout is one line naming the file, never a number (issue 27):
classes that do not line up, counts without points, targets of another size, empty or
non-finite supervision, boxes off their image, decompression bombs, files that are not text."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.ade20k import NUM_CLASSES, make_ade20k
from fixtures.coco import make_coco
from fixtures.fsc147 import make_counting_coco, make_fsc147
from fixtures.imagefolder import CLASSES, write_imagefolder
from fixtures.nyu import make_nyu_list
from PIL import Image
from rich.console import Console

from ijepa.data import build_dataset, data_spec
from ijepa.data.coco import load_coco
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.features import extract_features
from ijepa.evals.counting import FSC147, CocoCounting
from ijepa.evals.dense.data import read_rgb
from ijepa.evals.depth import NYUList
from ijepa.evals.segmentation import ADE20K

CPU = torch.device("cpu")
BINARY = b"\x89\xff\xfe\x00binary\x80"


# -- classification: train and eval class folders must agree -------------------------------------
@pytest.mark.parametrize("change", ["drop", "add"])
def test_imagefolder_eval_split_with_other_classes_is_refused(tmp_path, change):
    root = write_imagefolder(tmp_path / "tree", per_class={"train": 2, "val": 1})
    if change == "drop":  # every label after n0002 would shift down by one
        shutil.rmtree(root / "val" / CLASSES[1])
        expect = f"{root / 'val'}: lacks class folder(s) {CLASSES[1]} of train/ (3 classes vs 4)"
    else:
        shutil.copytree(root / "val" / CLASSES[0], root / "val" / "n0000")
        expect = f"{root / 'val'}: has class folder(s) n0000 that train/ lacks (5 classes vs 4)"
    with pytest.raises(ValueError, match="^" + expect.replace("(", r"\(").replace(")", r"\)")):
        build_dataset(str(root), "val")
    assert len(build_dataset(str(root), "train")) == 8


# -- counting ----------------------------------------------------------------------------------
def _fsc(tmp_path):
    return make_fsc147(tmp_path, n_train=3, n_val=1, n_test=1, size=(32, 48))


@pytest.mark.parametrize("points", [[], None])
def test_fsc147_image_without_points_is_refused(tmp_path, points):
    root = _fsc(tmp_path)
    anno = json.loads((root / "annotation_FSC147_384.json").read_text())
    if points is None:
        del anno["2.jpg"]["points"]
    else:
        anno["2.jpg"]["points"] = points
    (root / "annotation_FSC147_384.json").write_text(json.dumps(anno))
    with pytest.raises(ValueError, match=r"annotation_FSC147_384.json: 2.jpg has (an empty|no) 'points' list \(its count would be 0\)"):
        FSC147(root, "train")


def test_fsc147_nan_density_names_the_file(tmp_path):
    root = _fsc(tmp_path)
    path = root / "gt_density_map_adaptive_384_VarV2" / "1.npy"
    d = np.load(path)
    d[3, 4] = np.nan
    np.save(path, d)
    with pytest.raises(ValueError, match=rf"^{path}: density map holds NaN or inf$"):
        FSC147(root, "train")[0]


def test_fsc147_binary_annotation_file_is_named(tmp_path):
    root = _fsc(tmp_path)
    (root / "annotation_FSC147_384.json").write_bytes(BINARY)
    with pytest.raises(ValueError, match=r"annotation_FSC147_384.json: not a UTF-8 text file"):
        FSC147(root, "train")


def test_coco_counting_nan_keypoint_is_refused(tmp_path):
    root = make_counting_coco(tmp_path, n_train=2, n_val=1, n_test=1, size=(32, 48))
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"][0] = float("nan")
    path.write_text(json.dumps(data))  # json writes NaN, as a careless exporter does
    with pytest.raises(ValueError, match=r"instances_train.json: annotations\[0\] bbox must be"):
        CocoCounting(root, "train")


# -- segmentation and depth: targets the size of their image, some supervision ------------------
def test_ade20k_mask_of_another_size_is_refused(tmp_path):
    root = make_ade20k(tmp_path, n_train=2, n_val=1, size=(32, 48))
    label = root / "annotations" / "training" / "ADE_train_00000001.png"
    Image.open(label).resize((24, 16), Image.NEAREST).save(label)
    ds = ADE20K(root, "train", num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match=rf"^{label}: annotation is 24x16, its image is 48x32 \(expected the same size\)$"):
        ds[0]
    assert ds[1]["label"].shape == (1, 32, 48)


def _nyu_depth(root, n: int = 0):
    rgb, depth = NYUList(root, "train").pairs[n]
    return depth


def test_nyu_all_zero_depth_is_refused(tmp_path):
    root = make_nyu_list(tmp_path, n_train=2, n_test=1, size=(24, 32))
    path = _nyu_depth(root)
    Image.fromarray(np.zeros((24, 32), np.uint16)).save(path)
    with pytest.raises(ValueError, match=rf"^{path}: depth is all zero"):
        NYUList(root, "train")[0]


def test_nyu_depth_of_another_size_is_refused(tmp_path):
    root = make_nyu_list(tmp_path, n_train=2, n_test=1, size=(24, 32))
    path = _nyu_depth(root, 1)
    Image.fromarray(np.full((12, 16), 2000, np.uint16)).save(path)
    with pytest.raises(ValueError, match=rf"^{path}: depth map is 16x12, its image is 32x24"):
        NYUList(root, "train")[1]


def test_nyu_binary_file_list_is_named(tmp_path):
    root = make_nyu_list(tmp_path, n_train=2, n_test=1, size=(24, 32))
    (root / "nyu_train.txt").write_bytes(BINARY)
    with pytest.raises(ValueError, match=rf"^{root / 'nyu_train.txt'}: not a UTF-8 text file"):
        NYUList(root, "train")


# -- detection: boxes are finite and on their image ------------------------------------------------
@pytest.mark.parametrize(("box", "why"), [
    ([float("nan"), 4.0, 10.0, 10.0], r"bbox must be 4 numbers \[x, y, width, height\], all finite, got \[nan"),
    ([90.0, 4.0, 30.0, 10.0], r"bbox \[90.0, 4.0, 30.0, 10.0\] lies outside its 96x96 image"),
    ([-20.0, -20.0, 5.0, 5.0], r"bbox \[-20.0, -20.0, 5.0, 5.0\] lies outside its 96x96 image"),
])
def test_coco_box_not_finite_or_off_its_image_names_the_annotation(tmp_path, box, why):
    root = make_coco(tmp_path, n_train=2, n_val=1)
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    data["annotations"][1]["bbox"] = box
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"^{path}: annotations\[1\] {why}"):
        load_coco(path)


def test_coco_binary_annotation_file_is_named(tmp_path):
    root = make_coco(tmp_path, n_train=2, n_val=1)
    path = root / "annotations" / "instances_val2017.json"
    path.write_bytes(BINARY)
    with pytest.raises(ValueError, match=rf"^{path}: not a UTF-8 text file"):
        load_coco(path)


# -- decompression bombs -------------------------------------------------------------------------
def test_decompression_bomb_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """PIL refuses images over 2 x MAX_IMAGE_PIXELS with its own exception type, which is
    neither an OSError nor a ValueError: lowered here so that a 32 x 32 image is a bomb."""
    root = write_imagefolder(tmp_path / "tree", per_class={"train": 1, "val": 1})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    ds = build_dataset(str(root), "train")  # pretraining and the classification evals
    with pytest.raises(ValueError, match=rf"^{ds.samples[0][0]}: unreadable image \(DecompressionBombError"):
        ds[0]
    with pytest.raises(ValueError, match=r"unreadable image \(DecompressionBombError"):  # the dense evals
        read_rgb(tmp_path / "tree" / "val" / CLASSES[0] / f"{CLASSES[0]}_val0.png")


# -- the feature cache ---------------------------------------------------------------------------
def _encoder():
    return build_encoder(EncoderSpec(random_init="vit_tiny", depth=2, img_size=32, patch_size=8, in_chans=3))


def _features(root, enc, key, cache, console=None):
    return extract_features(enc, key, data_spec(str(root)), "val", device=CPU, cache_dir=cache, batch_size=64, console=console)


def test_feature_cache_keys_on_every_weight_of_the_encoder(tmp_path):
    """Two encoders under one key that differ only in their last block (as two checkpoints
    that share their first 16 MiB did) must not share cached features."""
    root = write_imagefolder(tmp_path / "tree", per_class={"train": 1, "val": 2})
    enc, _, key = _encoder()
    first = _features(root, enc, key, tmp_path / "cache")
    with torch.no_grad():
        enc.blocks[-1].mlp.fc2.weight.add_(0.5)
    second = _features(root, enc, key, tmp_path / "cache")
    uncached = _features(root, enc, key, None)
    assert torch.equal(second.concat, uncached.concat) and not torch.equal(second.concat, first.concat)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_stale_cache_temp_files_are_removed_and_live_ones_kept(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dead, live = cache / ".abc.pt.k1ll3d.tmp", cache / ".abc.pt.wr1t1ng.tmp"
    dead.write_bytes(b"half a torch.save")
    live.write_bytes(b"being written")
    os.utime(dead, (time.time() - 3600, time.time() - 3600))  # a killed eval's, an hour ago
    enc, _, key = _encoder()
    _features(write_imagefolder(tmp_path / "tree", per_class={"train": 1, "val": 1}), enc, key, cache)
    assert not dead.exists() and live.exists() and len(list(cache.glob("*.pt"))) == 1


def test_full_disk_for_the_cache_is_a_warning_not_a_lost_result(tmp_path, monkeypatch):
    root = write_imagefolder(tmp_path / "tree", per_class={"train": 1, "val": 2})
    enc, _, key = _encoder()
    expected = _features(root, enc, key, None)

    def fills_the_disk(obj, f, *a, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", fills_the_disk)
    out = io.StringIO()
    got = _features(root, enc, key, tmp_path / "cache", Console(file=out, width=400))
    assert torch.equal(got.concat, expected.concat)
    assert re.search(rf"^warning: {tmp_path / 'cache'}/\S+: cannot write the feature cache \(No space left on device\); "
                     r"continuing without it$", out.getvalue(), re.M), out.getvalue()
    assert not list((tmp_path / "cache").iterdir())


# -- eval arguments outside their meaning, refused before any extraction ---------------------------
def _knn(tmp_path, **kw):
    from ijepa.evals.knn import run_knn

    root = write_imagefolder(tmp_path / "tree", per_class={"train": 5, "val": 1})
    spec = EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=3)
    return run_knn(spec, data=str(root), cache_dir=tmp_path / "cache", console=Console(file=io.StringIO()), **kw)


@pytest.mark.parametrize(("kw", "expect"), [
    ({"ks": (0,)}, r"ks \[0\]: expected whole numbers >= 1"),
    ({"train_limit": -5}, r"train_limit -5: expected a number of rows >= 1 or a fraction in \(0, 1\)"),
    ({"val_limit": 0}, r"val_limit 0: expected a number of rows >= 1 or a fraction in \(0, 1\)"),
])
def test_eval_arguments_outside_their_meaning_are_refused_before_extraction(tmp_path, kw, expect):
    with pytest.raises(ValueError, match=f"^{expect}$"):
        _knn(tmp_path, **kw)
    assert not (tmp_path / "cache").exists()


def test_k_larger_than_the_memory_bank_is_refused_not_clamped(tmp_path):
    """20 train images, 2 held out: a k of 100000 was clamped to 18 and recorded as best_k 100000."""
    with pytest.raises(ValueError, match=r"^ks: k=100000 is more than the 18 images of the k-NN memory bank"):
        _knn(tmp_path, ks=(10, 100000))
    assert _knn(tmp_path, ks=(3, 18))["best_k"] in (3, 18)


def test_check_fields_is_one_public_helper_of_coco_and_counting():
    """A JSON record without its layout's keys is one line naming file, place and keys; COCO and counting share the helper."""
    from ijepa.data import coco, files
    from ijepa.evals import counting

    assert coco.check_fields is files.check_fields and counting.check_fields is files.check_fields
    with pytest.raises(ValueError, match=r"^a\.json: images\[2\] lacks key\(s\) 'id', 'width'$"):
        files.check_fields(Path("a.json"), "images[2]", {"file_name": "x"}, ("id", "file_name", "width"))
    with pytest.raises(ValueError, match=r"^a\.json: annotations\[0\] is not a JSON object$"):
        files.check_fields(Path("a.json"), "annotations[0]", [1], ("image_id",))
