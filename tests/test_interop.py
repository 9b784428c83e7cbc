"""Hugging Face and timm interop: every round trip gives our features within 1e-5 (fp32).

official -> ours -> HF, official -> ours -> timm, HF -> ours, timm -> ours, on tiny random
models built here (no download); heads are never guessed; unknown layouts are one line.
"""

from __future__ import annotations

import copy
import io
import json

import pytest
import timm
import torch
from fixtures.imagefolder import write_imagefolder
from fixtures.pretrain import tiny_config
from rich.console import Console
from safetensors.torch import save_file
from timm.models import save_for_hf
from transformers import IJepaConfig, IJepaForImageClassification, IJepaModel
from typer.testing import CliRunner

import ijepa
from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.entries.knn import KnnSpec
from ijepa.evals.knn import run_knn
from ijepa.export import export_encoder
from ijepa.models import interop
from ijepa.models.registry import create_encoder
from ijepa.results.io import write_record
from ijepa.training.loop import pretrain

TOL = dict(atol=1e-5, rtol=0)


def official(path, *, in_chans: int = 3, img_size: int = 32, patch_size: int = 8):
    """An official-layout checkpoint (DDP prefixes, no config) of a tiny ViT; its two encoders."""
    torch.manual_seed(0)
    enc = create_encoder("vit_tiny", img_size=img_size, patch_size=patch_size, in_chans=in_chans, depth=2).eval()
    target = copy.deepcopy(enc)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(0.05 * torch.randn_like(p))
    module = lambda m: {f"module.{k}": v for k, v in m.state_dict().items()}  # noqa: E731
    torch.save({"encoder": module(enc), "target_encoder": module(target), "epoch": 300}, path)
    return enc, target


def features_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("in_chans", [3, 1])
@pytest.mark.parametrize("which", ["target_encoder", "encoder", "context"])  # context: the CLI's word for encoder
def test_official_to_ours_to_hf(tmp_path, in_chans, which):
    enc, target = official(tmp_path / "jepa.pth.tar", in_chans=in_chans)
    out = export_encoder(tmp_path / "jepa.pth.tar", fmt="hf", out=tmp_path / "hf", which=which, results_dir=tmp_path)
    hf = IJepaModel.from_pretrained(out).eval()
    x = torch.randn(2, in_chans, 32, 32)
    want = (target if which == "target_encoder" else enc)(x)
    with torch.no_grad():
        features_equal(hf(x).last_hidden_state, want)
    features_equal(ijepa.load_encoder(out)(x), want)  # and back
    card = (out / "README.md").read_text()
    key = "encoder" if which == "context" else which
    assert f"Encoder: **{key}**" in card and "official I-JEPA checkpoint, epoch 300" in card
    from ijepa.evals.core.encoders import EncoderSpec, build_encoder

    assert build_encoder(EncoderSpec(encoder=str(out), img_size=32, in_chans=in_chans))[1] == "hf:target_encoder"  # the folder, not "model"


@pytest.mark.parametrize("in_chans", [3, 1])
def test_official_to_ours_to_timm_at_any_grid(tmp_path, in_chans):
    official(tmp_path / "jepa.pth.tar", in_chans=in_chans)
    ours = ijepa.load_encoder(tmp_path / "jepa.pth.tar")
    out = export_encoder(tmp_path / "jepa.pth.tar", fmt="timm", out=tmp_path / "timm", results_dir=tmp_path)
    by_dir = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    _, args = interop.timm_args(ours)
    by_name = timm.create_model("vit_base_patch16_gap_224", pretrained=True, num_classes=0,
                                pretrained_cfg_overlay=dict(file=str(out / "model.safetensors"), num_classes=0), **args).eval()
    assert by_dir.pretrained_cfg["input_size"] == (in_chans, 32, 32)
    for shape in [(32, 32), (24, 40)]:  # the native grid, and a non-square one (tables resampled alike)
        x = torch.randn(2, in_chans, *shape)
        with torch.no_grad():
            features_equal(by_dir.forward_features(x), ours(x))
            features_equal(by_name.forward_features(x), ours(x))
    x = torch.randn(2, in_chans, 24, 40)
    features_equal(ijepa.load_encoder(out)(x), ours(x))  # and back


def hf_model(cls=IJepaModel, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=256,
               layer_norm_eps=1e-6, image_size=[24, 40], patch_size=8, num_channels=1)
    model = cls(IJepaConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():  # HF's init zeroes biases and leaves LayerNorms at 1: perturb everything
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("cls,kw", [
    (IJepaModel, {}),  # width 96 (not standard): heads only from config.json; non-square grid, 1 channel
    (IJepaModel, dict(layer_norm_eps=1e-12, image_size=32, num_channels=3)),  # HF's default eps, carried
    (IJepaForImageClassification, dict(num_labels=5)),
])
def test_hf_to_ours(tmp_path, cls, kw):
    model = hf_model(cls, **kw)
    model.save_pretrained(tmp_path / "hf")
    base = model.ijepa if cls is IJepaForImageClassification else model
    ours = ijepa.load_encoder(tmp_path / "hf")
    c, hw = base.config.num_channels, base.config.image_size
    x = torch.randn(2, c, *(hw if isinstance(hw, list) else [hw, hw]))
    with torch.no_grad():
        features_equal(ours(x), base(x).last_hidden_state)
    assert ours.num_heads == 3 and ours.norm.eps == base.config.layer_norm_eps
    features_equal(ijepa.load_encoder(tmp_path / "hf" / "model.safetensors")(x), ours(x))
    interop.save_hf(ours, tmp_path / "again")  # HF -> ours -> HF
    with torch.no_grad():
        features_equal(IJepaModel.from_pretrained(tmp_path / "again")(x).last_hidden_state, ours(x))


def test_an_eval_scores_hf_and_timm_folders_as_the_official_checkpoint(tmp_path, monkeypatch):
    """The same scores, and from the same cache entries: the cache keys on the weights, not on
    the file that holds them, so re-scoring an exported copy extracts nothing."""
    from ijepa.evals.core import features

    official(tmp_path / "jepa.pth.tar")
    tree = write_imagefolder(tmp_path / "data")
    spec, cache = KnnSpec(data=str(tree), ks=(1, 5)), tmp_path / "cache"
    want = run_knn(EncoderSpec(encoder=str(tmp_path / "jepa.pth.tar"), which="encoder"), spec, cache_dir=cache)
    cached = sorted((tmp_path / "cache").glob("*.pt"))
    monkeypatch.setattr(features, "pooled", lambda *a: pytest.fail("an exported copy re-extracted its features"))
    for fmt in ("hf", "timm"):  # the context encoder, as the public HF/timm conversions hold
        out = export_encoder(tmp_path / "jepa.pth.tar", fmt=fmt, out=tmp_path / fmt, which="encoder", results_dir=tmp_path)
        got = run_knn(EncoderSpec(encoder=str(out)), spec, cache_dir=cache)
        assert got["scores"] == want["scores"] and got["top1"] == want["top1"]
        assert got["encoder_key"][:16] == want["encoder_key"][:16]  # one digest: of the weights, not of their file
        assert got["encoder"] == f"{fmt}:target_encoder" != want["encoder"]  # the records still name the file scored
    assert sorted((tmp_path / "cache").glob("*.pt")) == cached


@pytest.mark.parametrize("in_chans", [1, 3])
def test_hf_export_prepares_images_as_our_evals_and_has_usual_modes(tmp_path, monkeypatch, in_chans):
    """`AutoImageProcessor.from_pretrained(folder)` works offline and gives our eval transform's
    pixels; the folder and its files are 0755 / 0644 under umask 022 (they were 0700 / 0600)."""
    import os

    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor

    from ijepa.data import eval_transform
    from ijepa.export import normalisation

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    official(tmp_path / "jepa.pth.tar", in_chans=in_chans)
    old = os.umask(0o022)
    try:
        out = export_encoder(tmp_path / "jepa.pth.tar", fmt="hf", out=tmp_path / "hf", results_dir=tmp_path)
    finally:
        os.umask(old)
    assert oct(out.stat().st_mode & 0o777) == "0o755"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == dict.fromkeys(
        ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"], "0o644")
    processor = AutoImageProcessor.from_pretrained(out)
    mean, std = normalisation({}, in_chans)
    ours = eval_transform(32, in_chans=in_chans, mean=mean, std=std)
    rng = np.random.default_rng(0)
    for shape in ((28, 28), (40, 56)):  # upsampled; downsampled and center-cropped
        image = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).convert("L" if in_chans == 1 else "RGB")
        pixels = processor(image, return_tensors="pt").pixel_values
        torch.testing.assert_close(pixels[0], ours(image), atol=1e-5, rtol=0)
    with torch.no_grad():
        assert IJepaModel.from_pretrained(out)(pixels).last_hidden_state.shape == (1, 16, 192)
    assert "AutoImageProcessor.from_pretrained" in (out / "README.md").read_text()


def test_hf_weights_missing_are_refused_not_random(tmp_path):
    hf_model().save_pretrained(tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match="hf: lacks weights"):
        ijepa.load_encoder(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**cfg, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        ijepa.load_encoder(tmp_path / "hf")


def timm_vit(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    args = dict(embed_dim=96, depth=2, num_heads=3, patch_size=8, img_size=(24, 40), in_chans=1,
                class_token=False, global_pool="avg", fc_norm=False)
    model = timm.create_model("vit_base_patch16_gap_224", pretrained=False, **{**args, **kw}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("kw", [dict(num_classes=0), dict(num_classes=5), dict(img_size=32, in_chans=3, num_classes=0)])
def test_timm_to_ours(tmp_path, kw):
    model = timm_vit(**kw)
    save_for_hf(model, tmp_path / "timm", safe_serialization=True)
    h, w = model.patch_embed.img_size
    x = torch.randn(2, model.patch_embed.proj.in_channels, h, w)
    with torch.no_grad():
        want = model.forward_features(x)
    for path in ("timm", "timm/model.safetensors"):  # the folder, or the file beside its config.json
        features_equal(ijepa.load_encoder(tmp_path / path)(x), want)


def test_timm_bare_file_of_a_standard_width(tmp_path):
    model = timm_vit(embed_dim=192, num_heads=3, img_size=32, in_chans=3, num_classes=0)
    save_file(model.state_dict(), tmp_path / "vit.safetensors")
    torch.save(model.state_dict(), tmp_path / "vit.pth")
    x = torch.randn(2, 3, 32, 32)
    for name in ("vit.safetensors", "vit.pth"):
        with torch.no_grad():
            features_equal(ijepa.load_encoder(tmp_path / name)(x), model.forward_features(x))


def test_heads_are_never_guessed(tmp_path):
    model = timm_vit(img_size=32, num_classes=0)  # width 96, 3 heads: 1 head would be 1e-2 off
    save_file(model.state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(ValueError, match=r"vit.safetensors: width 96 is not a standard one \(192->3, .*pass --num-heads") as e:
        ijepa.load_encoder(tmp_path / "vit.safetensors")
    assert "\n" not in str(e.value)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        features_equal(ijepa.load_encoder(tmp_path / "vit.safetensors", num_heads=3)(x), model.forward_features(x))
    save_for_hf(model, tmp_path / "timm", safe_serialization=True)
    with pytest.raises(ValueError, match="its config says 3 attention heads, --num-heads says 6"):
        ijepa.load_encoder(tmp_path / "timm", num_heads=6)
    with pytest.raises(ValueError, match="5 attention heads do not divide the width 96"):
        ijepa.load_encoder(tmp_path / "vit.safetensors", num_heads=5)


def test_unknown_layouts_are_one_line(tmp_path):
    save_file(timm_vit(class_token=True, global_pool="token", num_classes=0).state_dict(), tmp_path / "cls.safetensors")
    with pytest.raises(ValueError, match="cls.safetensors: state dict holds cls_token: not in the layout accepted, I-JEPA ViT keys"):
        ijepa.load_encoder(tmp_path / "cls.safetensors", num_heads=3)
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="config.json: a config of model_type 'bert', not I-JEPA; accepted: .*Hugging Face IJepa"):
        ijepa.load_encoder(tmp_path / "bert")
    (tmp_path / "junk.safetensors").write_bytes(b"nope")
    with pytest.raises(ValueError, match="junk.safetensors: not a readable safetensors file"):
        ijepa.load_encoder(tmp_path / "junk.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="checkpoint not found \\(nor a config.json\\); accepted: "):
        ijepa.load_encoder(tmp_path / "empty")


def test_what_a_format_cannot_carry_is_refused_and_nothing_written(tmp_path):
    hf_model(layer_norm_eps=1e-12).save_pretrained(tmp_path / "hf")
    ours = ijepa.load_encoder(tmp_path / "hf")
    with pytest.raises(ValueError, match="timm's ViT config cannot carry layer_norm_eps=1e-12"):
        interop.save_timm(ours, tmp_path / "timm", mean=(0.5,), std=(0.5,))
    assert not (tmp_path / "timm").exists()
    attn = ours.blocks[0].attn  # 6 heads of 16 in one block: not the 3 heads the model says it has
    attn.num_heads, attn.head_dim, attn.scale = 6, 16, 16**-0.5
    with pytest.raises(ValueError, match="computes other features than ours"):
        interop.to_hf(ours)


def test_export_refuses_a_non_empty_out_and_a_foreign_source(tmp_path):
    official(tmp_path / "jepa.pth.tar")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(FileExistsError, match="taken: exists and is not empty"):
        export_encoder(tmp_path / "jepa.pth.tar", fmt="hf", out=tmp_path / "taken")
    out = export_encoder(tmp_path / "jepa.pth.tar", fmt="hf", out=tmp_path / "hf", results_dir=tmp_path)
    with pytest.raises(ValueError, match="already a hf model"):
        export_encoder(out, fmt="timm", out=tmp_path / "t")
    with pytest.raises(ValueError, match="--format='onnx'"):
        export_encoder(tmp_path / "jepa.pth.tar", fmt="onnx", out=tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "jepa.pth.tar", "taken"]  # no temp left


def test_cli_exports_our_run_with_its_config_and_records(tmp_path):
    import ijepa.cli.export  # noqa: F401  (registers the command)
    from ijepa.cli import app

    cfg = tiny_config(tmp_path, "one", optimization={"max_steps": 2}, logging={"diag_every": 0, "online_probe": False})
    run = pretrain(cfg, console=Console(file=io.StringIO()))
    key = ijepa.load_encoder(run).source.key
    write_record({"kind": "eval.knn", "encoder": "one:target_encoder", "encoder_key": key, "dataset": "fashion-mnist",
                  "top1": 0.5, "selected_on": "val", "reported_on": "test"}, results_dir=tmp_path / "results")
    write_record({"kind": "eval.knn", "encoder": "one:target_encoder", "encoder_key": key, "dataset": "fashion-mnist", "val_limit": 1000,
                  "top1": 0.4, "selected_on": "val", "reported_on": "test"}, results_dir=tmp_path / "results")  # a quick look
    write_record({"kind": "eval.knn", "encoder": "other", "encoder_key": "0123-target_encoder", "dataset": "fashion-mnist",
                  "top1": 0.9, "selected_on": "val", "reported_on": "test"}, results_dir=tmp_path / "results")
    res = CliRunner().invoke(app, ["export", str(run), "--format", "timm", "--out", str(tmp_path / "t"),
                                   "--results", str(tmp_path / "results")])
    assert res.exit_code == 0, res.output
    card = (tmp_path / "t" / "README.md").read_text()
    assert "Encoder: **target_encoder**" in card and "model_name: vit_tiny" in card
    assert "| eval.knn | fashion-mnist | - | all | all | top1 | 50.00 | val | test |" in card and "90.00" not in card
    assert "| eval.knn | fashion-mnist | - | all | 1000 | top1 (subset) | 40.00 | val | test |" in card  # never a plain top1
    with pytest.raises(ValueError, match="its config says 3 attention heads, --num-heads says 6"):
        ijepa.load_encoder(run, num_heads=6)
    assert "mean [0.286], std [0.353]" in card
    x = torch.randn(2, 1, 32, 32)
    model = timm.create_model(f"local-dir:{tmp_path / 't'}", pretrained=True).eval()
    with torch.no_grad():
        features_equal(model.forward_features(x), ijepa.load_encoder(run)(x))
    res = CliRunner().invoke(app, ["export", str(run), "--format", "hf", "--out", str(tmp_path / "t")])
    assert res.exit_code == 2 and "exists and is not empty" in res.output


def test_the_eval_cli_takes_num_heads_for_a_bare_file(tmp_path):
    """`--num-heads` reaches load_encoder from every eval; without it a bare file of an odd width is one line."""
    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    from ijepa.cli import app

    save_file(timm_vit(img_size=32, num_classes=0).state_dict(), tmp_path / "vit.safetensors")
    args = ["eval", "knn", "--encoder", str(tmp_path / "vit.safetensors"), "--data", "fashion-mnist", "--train-limit", "200",
            "--eval-limit", "100", "--ks", "10", "--results", str(tmp_path / "results"), "--no-cache", "--json"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "pass --num-heads" in refused.output and "Traceback" not in refused.output
    done = CliRunner().invoke(app, [*args, "--num-heads", "3"])
    assert done.exit_code == 0, done.output
    assert 0 <= json.loads(done.output.strip().splitlines()[-1])["top1"] <= 1
