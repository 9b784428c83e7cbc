"""`ijepa eval linear --augment`: MAE's linear probe, the frozen encoder run on fresh crops every epoch (issue 38)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fixtures.imagefolder import write_imagefolder
from typer.testing import CliRunner

from ijepa.evals.core import augment
from ijepa.evals.core import fit as core_fit
from ijepa.evals.core.config import GridConfig
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.heads import FeatureNorm
from ijepa.evals.entries.linear import LinearSpec
from ijepa.evals.linear import run_linear
from ijepa.evals.registry import RECIPES
from ijepa.typedconfig import OptionError, load

SHAPE = ["--random-init", "vit_tiny", "--depth", "1", "--patch-size", "8", "--in-chans", "3", "--device", "cpu"]
SHORT = ["--set", "grid.epochs=2", "--set", "grid.warmup_epochs=1", "--set", "grid.batch_size=16"]  # the MAE recipe, 2 epochs
MAE_GRID = load(LinearSpec, RECIPES / "linear_in1k_mae.yaml").grid


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_imagefolder(tmp_path_factory.mktemp("augment") / "data")  # 4 classes, 48 train, 24 val, 32 px


def tiny_encoder() -> torch.nn.Module:
    return build_encoder(EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=3))[0]


def probe(encoder, data: Path, **grid) -> dict:
    spec = LinearSpec(data=str(data), augment=True, grid=replace(MAE_GRID, epochs=2, warmup_epochs=1, **grid))
    return run_linear(encoder, spec, cache_dir=None)


def test_the_augmented_probe_runs_from_the_cli_and_writes_a_valid_record(data, tmp_path, monkeypatch):
    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    from ijepa.cli import app
    from ijepa.results.schema import validate

    monkeypatch.chdir(tmp_path)
    args = ["eval", "linear", "-c", "linear_in1k_mae", "--augment", *SHAPE, *SHORT, "--data", str(data), "--workers", "0", "--results", "res", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert validate(json.loads(Path(rec["record"]).read_text())) is None
    assert (rec["augment"], rec["protocol"], rec["optimizer"], rec["epochs"], rec["batch_size"]) == (True, "linear-augmented", "lars", 2, 16)
    assert rec["lr"] == pytest.approx(0.1 * 16 / 256) and rec["best_head"] == "lastPOOL/bn/lr0.1/wd0"
    assert rec["selected_on"].startswith("none") and rec["reported_on"] == "val" and rec["heldout_top1"] is None
    assert rec["preprocessing"].startswith("RandomResizedCrop(32, scale=(0.08, 1.0), bicubic) + horizontal flip")
    assert 0 <= rec["top1"] <= 1 and rec["n_train"] == 48 and rec["n_val"] == 24


def test_the_encoder_is_frozen_in_eval_mode_and_sees_new_crops_every_epoch(data):
    """Weights bit for bit unchanged; every forward in eval mode; an epoch's training inputs
    (one batch: all 48 images) share no image with the next epoch's, as centre crops would."""
    enc = tiny_encoder().train()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    seen, modes = [], []  # training inputs (not the eval features' inference-mode passes); every pass's modes

    def hook(_, args: tuple) -> None:  # on the patch embedding: every encoder pass starts there
        modes.extend(m.training for m in enc.modules())
        if not torch.is_inference_mode_enabled():
            seen.append(args[0].clone())

    enc.patch_embed.register_forward_pre_hook(hook)
    probe(enc, data, batch_size=48)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items()) and modes and not any(modes)
    epochs = [{bytes(x.numpy()) for x in batch} for batch in seen]
    assert len(epochs) == 2 and all(len(e) == 48 for e in epochs) and not epochs[0] & epochs[1]


def test_the_head_is_batchnorm_without_affine_then_linear_trained_by_timms_lars(data, monkeypatch):
    from timm.optim import Lars

    made = {}
    monkeypatch.setattr(augment, "head_inputs", lambda *a, **k: made.setdefault("inputs", core_fit.head_inputs(*a, **k)))
    monkeypatch.setattr(augment, "build_groups", lambda *a, **k: made.setdefault("groups", core_fit.build_groups(*a, **k)))
    probe(tiny_encoder(), data, batch_size=16)
    (key, norm), = made["inputs"].items()
    assert key == ("lastPOOL", "bn") and isinstance(norm, FeatureNorm) and norm.eps == 1e-6 and not hasattr(norm, "weight")
    group = made["groups"][key]
    assert isinstance(group.lars, Lars) and group.weight.shape == (192, 4) and group.bias.shape == (4,)


def test_a_head_batch_is_gathered_from_forwards_of_feature_batch_size_views(data):
    """MAE's head batch (16384) never goes through the encoder at once: the views are forwarded
    --feature-batch-size at a time (here 10: each head batch of 16 in pieces of 10 and 6), and the
    heads train on the rows, in the order, that one 16-image forward a step gives them."""
    sizes, trained = [], {}
    for fbs in (10, 256):
        enc = tiny_encoder()
        enc.patch_embed.register_forward_pre_hook(lambda _m, a, fbs=fbs: None if torch.is_inference_mode_enabled() else sizes.append((fbs, len(a[0]))))
        rec = run_linear(enc, LinearSpec(data=str(data), augment=True, feature_batch_size=fbs, grid=replace(MAE_GRID, epochs=2, warmup_epochs=1,
                                                                                                      batch_size=16)), cache_dir=None)
        trained[fbs] = (rec["heads"][0]["train_loss"], rec["top1"], rec["steps"])
    assert [n for f, n in sizes if f == 10] == [10, 6] * 6 and [n for f, n in sizes if f == 256] == [16] * 6
    assert trained[10][1:] == trained[256][1:] and trained[10][0] == pytest.approx(trained[256][0], rel=1e-4)


def test_several_heads_are_chosen_on_held_out_train_and_only_reported_on_val(data):
    rec = probe(tiny_encoder(), data, batch_size=16, lrs=(0.01, 0.1), heldout=0.25)
    assert rec["selected_on"] == "train-heldout" and rec["reported_on"] == "val" and rec["refit_rows"] == 48
    held = {h["head"]: h["heldout_top1"] for h in rec["heads"]}
    assert rec["heldout_top1"] == max(held.values()) == held[rec["best_head"]]


def test_what_the_augmented_probe_cannot_honour_is_refused_before_any_image_is_read(tmp_path):
    with pytest.raises(OptionError, match="grid.standardize"):
        run_linear("unused", LinearSpec(data=str(tmp_path), augment=True))  # default grid: standardised linear heads
    with pytest.raises(OptionError, match="augment"):
        run_linear("unused", LinearSpec(data=str(tmp_path), augment=True, protocol="logreg"))


def test_augment_runs_in_one_process_and_its_views_go_through_the_eval_dtype(data):
    """Under torchrun every rank would train its own heads and write its own record: refused.
    `--dtype bfloat16` runs the training views' forward under bf16 autocast too, as the cached
    eval splits' forward."""
    from ijepa.distributed import DistInfo

    spec = LinearSpec(data=str(data), augment=True, grid=replace(MAE_GRID, epochs=1, warmup_epochs=0, batch_size=16))
    with pytest.raises(ValueError, match="one process; this is rank 1 of 2"):
        run_linear(tiny_encoder(), spec, cache_dir=None, group=DistInfo(rank=1, world_size=2))
    enc, dtypes = tiny_encoder(), []
    enc.blocks[0].attn.qkv.register_forward_hook(lambda _m, _a, out: dtypes.append((torch.is_inference_mode_enabled(), out.dtype)))
    rec = run_linear(enc, replace(spec, dtype="bfloat16"), cache_dir=None)
    assert rec["feature_dtype"] == "bfloat16" and {d for inf, d in dtypes if not inf} == {torch.bfloat16}


def test_the_warm_up_rises_linearly_to_the_peak_then_cosine_decays():
    grid = GridConfig(warmup_epochs=10)
    factors = [grid.lr_factor(t, 100, 0, warmup=10) for t in (0, 4, 9, 10, 55, 99)]
    assert factors == pytest.approx([0.1, 0.5, 1.0, 1.0, 0.5, 0.0], abs=1e-3)
