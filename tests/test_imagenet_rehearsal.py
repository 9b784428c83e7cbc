"""The cheap pieces of `benchmarks/imagenet_rehearsal.py` (the rehearsal itself takes ~20
minutes of ViT-H/14 on CPU and is run by hand): the folder in ImageNet's layout read through
our ImageFolder path, the official-format checkpoint, the timing and cache arithmetic, and the
ImageNet-scale projection the README quotes (`ijepa.results.scale`)."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import torch

import ijepa
from ijepa.data import build_dataset, data_spec, eval_transform
from ijepa.data.imagefolder import check_classes, image_folder
from ijepa.results.io import read_records
from ijepa.results.scale import Protocol, duration, projected_s, resource_table, scale_markdown
from ijepa.training.config import load_config
from ijepa.training.step import encoder_from_config

ROOT = Path(__file__).resolve().parents[1]


def rehearsal():
    spec = importlib.util.spec_from_file_location("imagenet_rehearsal", ROOT / "benchmarks" / "imagenet_rehearsal.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_folder_has_imagenets_1000_wnid_classes_and_reads_through_our_imagefolder(tmp_path):
    mod = rehearsal()
    root = mod.write_folder(tmp_path / "in1k", classes=1000, per_class=1, val_per_class=1, sides=(16, 20))
    train, val = image_folder(root, "train"), image_folder(root, "val")
    assert len(train.classes) == 1000 and all(re.fullmatch(r"n\d{8}", c) for c in train.classes)
    check_classes(root, "val", val.classes)  # val's class folders are train's
    assert re.fullmatch(r"n\d{8}_0\.JPEG", Path(train.samples[0][0]).name)
    assert re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", Path(val.samples[0][0]).name)
    x, y = build_dataset(data_spec(str(root)), "val", eval_transform(224))[999]
    assert x.shape == (3, 224, 224) and y == 999
    view = mod.link_view(root, tmp_path / "run", 5)
    assert image_folder(view, "train").classes == train.classes[:5] and len(image_folder(view, "val")) == 5


def test_the_checkpoint_is_official_and_loads_as_its_config_says(tmp_path):
    """The writer's code path at a small depth; the shipped config is ViT-H/14 (built on meta)."""
    arch = rehearsal().write_checkpoint(tmp_path / "c.pth.tar", "in1k_vith14_ep300", ["meta.model_name=vit_tiny", "meta.depth=2"])
    ckpt = torch.load(tmp_path / "c.pth.tar", weights_only=True)
    assert {"encoder", "predictor", "target_encoder", "epoch"} <= set(ckpt) and all(k.startswith("module.") for k in ckpt["encoder"])
    enc = ijepa.load_encoder(tmp_path / "c.pth.tar")
    assert (enc.embed_dim, enc.depth, enc.patch_size, enc.grid) == (arch["width"], 2, 14, (16, 16))
    with torch.device("meta"):
        huge = encoder_from_config(load_config("in1k_vith14_ep300"))
    assert (huge.embed_dim, huge.depth, huge.num_heads, huge.patch_size, huge.img_size) == (1280, 32, 16, 14, 224)


def test_seconds_per_image_per_rank_and_cache_bytes_from_chunk_files(tmp_path):
    """Two ranks, each finishing a 4-row chunk every 10 s: 2.5 s an image a rank."""
    mod = rehearsal()
    for i, t in enumerate((10, 10, 20, 20, 30, 30)):
        path = tmp_path / f"key-{4 * i:09d}-{4 * i + 4:09d}-{'0' * 24}.pt"
        torch.save({"concat": torch.zeros(4, 8, dtype=torch.float16), "labels": torch.zeros(4, dtype=torch.long)}, path)
        os.utime(path, (t, t))
    files = mod.chunks(tmp_path)
    assert mod.s_per_img_per_rank(files, 2) == 2.5
    fig = mod.cache_figures(files, 8)
    assert fig["cache_rows"] == 24 and fig["cache_bytes_per_img"] == sum(f.stat().st_size for f in files) / 24
    assert fig["cache_bytes_per_img_4096"] == 8 * 2 + 24 + fig["cache_file_overhead_bytes"] / 4096


def test_projection_arithmetic():
    """1.28M images at 128 img/s: 10,000 s on one GPU, 1,250 on 8; the probe's time is not divided."""
    p = Protocol("x", 1_280_000, 600.0, "", "")
    assert projected_s(p, 128, 1) == (10_600, True) and projected_s(p, 128, 8) == (1_850, True)
    assert projected_s(Protocol("x", 1_280_000, None, "", ""), 128, 8) == (1_250, False)
    assert [duration(s) for s in (30, 1_850, 10_000, 5 * 86400)] == ["< 1 min", "31 min", "2.8 h", "5.0 days"]
    rates = {"feature_dim": 5120}
    table = resource_table(rates, None)
    assert "13.7 GB" in table and "26.2 GB" in table  # (5120 x 2 + 24) B x 1,331,167; 1,281,167 x 5120 x 4 B


def test_the_readme_quotes_the_projection_of_the_committed_records():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert scale_markdown(read_records(ROOT / "results")) in text, (
        "README.md's 'Evaluating at ImageNet scale' is stale: paste `python benchmarks/imagenet_rehearsal.py --project`")
