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
from fixtures.fmnist import write_fmnist, write_idx
from fixtures.fsc147 import make_counting_coco, make_fsc147
from fixtures.imagefolder import CLASSES, write_imagefolder
from fixtures.nyu import make_nyu_list
from PIL import Image
from rich.console import Console

from ijepa.data import build_dataset, data_spec
from ijepa.data.coco import load_coco
from ijepa.data.fashion_mnist import read_idx
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
    from ijepa.evals.entries.knn import KnnSpec
    from ijepa.evals.knn import run_knn

    root = write_imagefolder(tmp_path / "tree", per_class={"train": 5, "val": 1})
    spec = EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=3)
    return run_knn(spec, KnnSpec(data=str(root), **kw), cache_dir=tmp_path / "cache", console=Console(file=io.StringIO()))


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


# -- Fashion-MNIST IDX files: labels in range, images told from labels, no empty file (issue 42) ---
@pytest.mark.parametrize(("stem", "split", "row", "label"), [("train", "train", 5, 200), ("t10k", "test", 3, 10)])
def test_fmnist_label_outside_the_ten_classes_names_the_file(tmp_path, stem, split, row, label):
    """k-NN and logreg scored such a file and printed a number with exit 0."""
    root = write_fmnist(tmp_path / "fm")
    labels = np.arange(24 if stem == "train" else 8) % 10
    labels[row] = label
    path = write_idx(root / f"{stem}-labels-idx1-ubyte", labels)
    with pytest.raises(ValueError, match=rf"^{path}: label {label} at row {row} is outside 0\.\.9 \(Fashion-MNIST has 10 classes; 1 such label\(s\)\)$"):
        build_dataset(f"fashion-mnist:{root}", split)


def test_fmnist_label_outside_the_classes_fails_the_eval_in_one_line(tmp_path):
    from typer.testing import CliRunner

    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    from ijepa.cli import app

    root = write_fmnist(tmp_path / "fm")
    write_idx(root / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 10, 4, 5, 6, 7]))
    res = CliRunner().invoke(app, ["eval", "knn", "--data", f"fashion-mnist:{root}", "--random-init", "vit_tiny", "--depth", "1",
                                   "--patch-size", "4", "--in-chans", "1", "--device", "cpu", "--no-cache", "--results", str(tmp_path / "r")])
    errors = [line for line in res.output.splitlines() if not line.startswith("features train")]  # train was scored first
    assert res.exit_code == 2 and errors == [f"error: {root / 't10k-labels-idx1-ubyte'}: label 10 at row 3 is outside 0..9 "
                                             "(Fashion-MNIST has 10 classes; 1 such label(s))"], res.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("swap", ["labels as images", "images as labels"])
def test_fmnist_images_and_labels_files_are_told_apart_by_their_header(tmp_path, swap):
    """The labels file given as the images made torch fail on 'spatial dimensions'."""
    root = write_fmnist(tmp_path / "fm")
    images, labels = root / "t10k-images-idx3-ubyte", root / "t10k-labels-idx1-ubyte"
    if swap == "labels as images":
        path, dims, what, other = images, 1, r"images \[N, rows, cols\] \(3", "labels"
        images.write_bytes(labels.read_bytes())
    else:
        path, dims, what, other = labels, 3, r"labels \[N\] \(1", "images"
        labels.write_bytes(images.read_bytes())
    with pytest.raises(ValueError, match=rf"^{path}: IDX header says {dims} dimension\(s\); expected {what} dimension\(s\)\): is it the {other} file\?$"):
        build_dataset(f"fashion-mnist:{root}", "test")


def test_fmnist_idx_of_no_images_names_the_file(tmp_path):
    """An IDX of 0 images failed inside numpy: 'need at least one array to concatenate'."""
    root = write_fmnist(tmp_path / "fm", gz=True)
    path = write_idx(root / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(0))
    with pytest.raises(ValueError, match=rf"^{path}: holds no images \(header says \(0, 28, 28\)\)$"):
        build_dataset(f"fashion-mnist:{root}", "train")


def test_idx_header_cut_short_is_named_not_a_struct_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match=rf"^{path}: truncated, the header of 3 dimension\(s\) is cut short$"):
        read_idx(path, "images")


# -- ImageFolder: a symlink loop is refused, not read again at every depth (issue 42) -------------
@pytest.mark.parametrize("target", [".", ".."])
def test_imagefolder_symlink_loop_is_refused_naming_the_link(tmp_path, target):
    """`loop -> .` inside a class folder was followed by torchvision: its 1 image read 11x over."""
    root = write_imagefolder(tmp_path / "tree", per_class={"train": 1, "val": 1})
    link = root / "val" / CLASSES[0] / "loop"
    link.symlink_to(target)
    real = (link.parent / target).resolve()
    with pytest.raises(ValueError, match=rf"^{link}: symlink loop \(it points to {real}, a folder it sits in\); remove it, or link to a copy$"):
        build_dataset(str(root), "val")
    link.unlink()
    (root / "val" / CLASSES[0] / "more").symlink_to(root / "train" / CLASSES[0])  # a link elsewhere is read as it is
    assert len(build_dataset(str(root), "val")) == 5


# -- counting: a point off its image is refused, not counted (issue 42) ---------------------------
def test_fsc147_point_outside_its_image_is_refused(tmp_path):
    root = _fsc(tmp_path)  # 48 wide, 32 high
    anno = json.loads((root / "annotation_FSC147_384.json").read_text())
    anno["2.jpg"]["points"].append([60.0, 10.0])
    (root / "annotation_FSC147_384.json").write_text(json.dumps(anno))
    ds = FSC147(root, "train")
    with pytest.raises(ValueError, match=rf"^{root / 'annotation_FSC147_384.json'}: 2\.jpg point \[60\.0, 10\.0\] lies outside its 48x32 image$"):
        ds[ds.names.index("2.jpg")]
    assert ds[ds.names.index("1.jpg")]["count"] == len(anno["1.jpg"]["points"])


def test_coco_counting_keypoint_outside_its_image_is_refused(tmp_path):
    root = make_counting_coco(tmp_path, n_train=2, n_val=1, n_test=1, size=(32, 48))
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    ann = next(a for a in data["annotations"] if "keypoints" in a)
    ann["keypoints"] = [5.0, 40.0, 2]
    path.write_text(json.dumps(data))
    ds = CocoCounting(root, "train")
    i = next(i for i, img in enumerate(ds.images) if img["id"] == ann["image_id"])
    with pytest.raises(ValueError, match=rf"^{path}: image {ds.images[i]['file_name']} point \[5\.5, 40\.5\] lies outside its 48x32 image$"):
        ds[i]


# -- records name their data root and the heads they assumed (issue 42) ----------------------------
def test_a_copy_of_fashion_mnist_elsewhere_is_named_by_its_root(tmp_path):
    """A random-init record scored on a corrupted copy said "fashion-mnist" and became the plot's floor."""
    from ijepa.evals.entries.knn import KnnSpec
    from ijepa.evals.knn import run_knn

    assert data_spec("fashion-mnist").fields()["dataset"] == "fashion-mnist"
    root = write_fmnist(tmp_path / "copy")
    spec = EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=1)
    rec = run_knn(spec, KnnSpec(data=f"fashion-mnist:{root}", ks=(3,)), cache_dir=None, console=Console(file=io.StringIO()))
    assert rec["dataset"] == f"fashion-mnist:{root.resolve()}" and rec["data_root"] == str(root.resolve())
    assert rec["num_heads"] == 3


@pytest.mark.parametrize(("given", "heads"), [(None, 3), (6, 6)])
def test_record_says_the_heads_a_bare_state_dict_was_loaded_with(tmp_path, given, heads):
    """Heads cannot be read off weights: a bare state dict of a standard width gets that width's
    (192 -> 3) unless --num-heads says otherwise, and the record says which."""
    from ijepa.evals.entries.knn import KnnSpec
    from ijepa.evals.knn import run_knn
    from ijepa.models.registry import create_encoder

    torch.manual_seed(0)
    path = tmp_path / "encoder.pt"
    torch.save(create_encoder("vit_tiny", img_size=32, patch_size=8, in_chans=3, depth=1).state_dict(), path)
    root = write_imagefolder(tmp_path / "tree", per_class={"train": 3, "val": 1})
    rec = run_knn(EncoderSpec(encoder=str(path), num_heads=given), KnnSpec(data=str(root), ks=(3,)), cache_dir=None,
                  console=Console(file=io.StringIO()))
    assert rec["num_heads"] == heads and rec["dataset"] == f"imagefolder:{root.resolve()}"
