"""The pixel decoder: training lowers its loss, resume is exact, a decoder for another encoder
or grid is refused, the records hold what they promise, the CLI runs as documented."""

from __future__ import annotations

import json
import math

import pytest
import torch
from fixtures.decoder import tiny_tc, write_tiny_run
from typer.testing import CliRunner

from ijepa.decoder import DecoderTrainer, load_decoder, spec_for
from ijepa.decoder.metrics import reconstruction_metrics, retrieval_hits
from ijepa.decoder.model import TokenDecoder, decoder_dir
from ijepa.decoder.runs import (
    mask_collator,
    measure_decoded,
    random_twin,
    run_dataset,
    train_decoders,
)
from ijepa.explore import load_explore_model
from ijepa.rundir import RunError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_tiny_run(tmp_path_factory.mktemp("dec") / "run")


@pytest.fixture(scope="module")
def parts(run):
    model = load_explore_model(run)
    train, _ = run_dataset(model, "train")
    val, _ = run_dataset(model, "val")
    return model, train, val, spec_for(model.target_encoder, str(run), *model.mean_std)


def _trainer(parts, out, tc, **kw) -> DecoderTrainer:
    model, train, _, spec = parts
    return DecoderTrainer(model.target_encoder, spec, train, mask_collator(model, tc.seed), out, tc,
                          device=torch.device("cpu"), **kw)


def test_training_lowers_the_loss_and_beats_an_untrained_decoder(parts, tmp_path):
    model, _, val, spec = parts
    trainer = _trainer(parts, tmp_path / "d", tiny_tc(40))
    decoder = trainer.fit()
    first, last = trainer.losses[0][1], trainer.losses[-1][1]
    assert trainer.step == 40 and last < 0.7 * first, trainer.losses
    torch.manual_seed(0)
    untrained = TokenDecoder(spec, width=64, depth=1).eval()
    kw = dict(n_images=32, batch_size=16)
    good = reconstruction_metrics(model.target_encoder, decoder, val, mask_collator(model, 0), **kw)
    bad = reconstruction_metrics(model.target_encoder, untrained, val, mask_collator(model, 0), **kw)
    assert good["mse"] < bad["mse"] and good["ssim"] > bad["ssim"] and good["block_mse"] < bad["block_mse"]
    assert good["n_images"] == 32 and -1 <= good["ssim"] <= 1


def test_resume_is_exact(parts, tmp_path):
    straight = _trainer(parts, tmp_path / "a", tiny_tc(12, checkpoint_every=6)).fit()
    _trainer(parts, tmp_path / "b", tiny_tc(6, checkpoint_every=6)).fit()
    with pytest.raises(FileExistsError, match="pass --resume"):
        _trainer(parts, tmp_path / "b", tiny_tc(12, checkpoint_every=6))
    with pytest.raises(RunError, match="width differs"):
        _trainer(parts, tmp_path / "b", tiny_tc(12, checkpoint_every=6, width=32), resume=True)
    resumed = _trainer(parts, tmp_path / "b", tiny_tc(12, checkpoint_every=6), resume=True)
    assert resumed.step == 6
    resumed = resumed.fit()
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_a_decoder_for_another_encoder_or_grid_is_refused(parts, tmp_path):
    model, _, _, spec = parts
    _trainer(parts, tmp_path / "d", tiny_tc(2)).fit()
    assert load_decoder(tmp_path / "d", spec).spec == spec
    other = spec_for(random_twin(model).target_encoder, "random", *model.mean_std)
    with pytest.raises(ValueError, match=r"decoder trained for .*target encoder [0-9a-f]{12}\), not for random") as e:
        load_decoder(tmp_path / "d", other)
    assert "\n" not in str(e.value)
    bigger = load_explore_model(write_tiny_run(tmp_path / "big", "data.crop_size=48"))
    with pytest.raises(ValueError, match="grid 12x12"):
        load_decoder(tmp_path / "d", spec_for(bigger.target_encoder, "big", *bigger.mean_std))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a decoder checkpoint"):
        load_decoder(tmp_path / "junk.pt")


def test_retrieval_counts_own_image_hits():
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(4, 16, 8, generator=g)  # B=4 images, 16 patches
    idx = torch.randint(0, 16, (8, 3), generator=g)  # 2 blocks x 4 images, 3 patches each
    own = torch.cat([targets[b, idx[k * 4 + b]][None] for k in range(2) for b in range(4)])
    assert retrieval_hits(own, targets, idx, 4) == (24, 24, 8, 8)
    rolled = torch.cat([targets[(b + 1) % 4, idx[k * 4 + b]][None] for k in range(2) for b in range(4)])
    assert retrieval_hits(rolled, targets, idx, 4) == (0, 24, 0, 8)


def test_train_and_measure_records(run):
    rec = train_decoders(run, tiny_tc(10), val_images=32)
    saved = json.loads((decoder_dir(run) / "record.json").read_text())
    assert saved["kind"] == "decoder.train" and saved["reported_on"] == "val" and "selected_on" in saved
    for name in ("trained", "random_init"):
        r = saved[name]
        assert r["n_images"] == 32 and math.isfinite(r["mse"]) and -1 <= r["ssim"] <= 1 and len(r["encoder_sha256"]) == 64
    assert saved["trained"]["encoder_sha256"] != saved["random_init"]["encoder_sha256"]
    assert rec["trained"]["mse"] == saved["trained"]["mse"]
    m = measure_decoded(run, val_images=32, mean_images=32, batch_size=16)
    assert json.loads((decoder_dir(run) / "measure.json").read_text())["pixel_mse"] == m["pixel_mse"]
    assert m["reported_on"] == "val" and "selected_on" in m and m["n_images"] == 32
    names = {"target", "prediction", "mean_token", "random_predictor"}
    assert set(m["pixel_mse"]) == names | {"n_blocks"}
    assert sum(r["n_blocks"] for r in m["pixel_mse_by_block_size"].values()) == m["pixel_mse"]["n_blocks"] == 32 * 2
    assert all(set(r) == names | {"n_blocks"} for r in m["pixel_mse_by_block_size"].values())
    ret = m["retrieval"]
    assert ret["chance"] == pytest.approx(1 / 16)
    for name in ("prediction", "random_predictor", "random_init"):
        assert 0 <= ret[name]["token_top1"] <= 1 and 0 <= ret[name]["block_top1"] <= 1 and ret[name]["n_blocks"] == 64


def test_cli(tmp_path):
    from ijepa.cli import app
    from ijepa.cli import decoder as _registers  # noqa: F401
    from ijepa.cli import explore as _registers_explore  # noqa: F401

    run = write_tiny_run(tmp_path / "run")
    args = ["decoder", "train", str(run), "--steps", "3", "--batch-size", "16", "--width", "64", "--depth", "1",
            "--train-images", "64", "--val-images", "16", "--no-baseline", "--results", str(tmp_path / "results")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "trained encoder: val MSE" in r.output and "retrieval top-1" in r.output
    from ijepa.results.io import read_records
    from ijepa.results.schema import validate

    recs = {r["kind"]: r for r in read_records(tmp_path / "results")}  # results records beside RUN/decoder/*.json
    assert set(recs) == {"decoder.train", "decoder.measure"} and all(validate(r) is None for r in recs.values())
    assert recs["decoder.measure"]["retrieval_top1"] == recs["decoder.measure"]["retrieval"]["prediction"]["block_top1"]
    assert (run / "decoder" / "checkpoint.pt").is_file() and not (run / "decoder" / "random_init").exists()
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "pass --resume" in r.output
    r = CliRunner().invoke(app, [*args, "--resume", "--no-measure"])  # finished: re-measures, trains nothing
    assert r.exit_code == 0, r.output
    other = write_tiny_run(tmp_path / "other", shift=0.1)
    r = CliRunner().invoke(app, ["decoder", "measure", str(other), "--decoder", str(run / "decoder")])
    assert r.exit_code == 2 and "decoder trained for" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["explore", str(other), "--decoder", str(run / "decoder"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "decoder trained for" in r.output


def test_cli_defaults_are_the_library_defaults():
    import inspect

    from ijepa.cli.decoder import train
    from ijepa.decoder import DecoderTrainConfig
    from ijepa.decoder.train import DiffusionTrainConfig

    params = inspect.signature(train).parameters
    for name in ("steps", "batch_size", "width", "train_images"):
        assert params[name].default.default == getattr(DecoderTrainConfig, name) == getattr(DiffusionTrainConfig, name), name
    assert params["depth"].default.default is None and params["kind"].default.default == "mean"  # None: the kind's own depth
    assert (DecoderTrainConfig.depth, DiffusionTrainConfig.depth) == (2, 4)
