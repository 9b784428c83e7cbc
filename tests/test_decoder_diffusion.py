"""The diffusion decoder: training lowers its loss, resume is exact, sampling is fixed by its
seed (and differs across seeds), known context pixels stay known, a decoder of another run
is refused in one line, the measure records its samples, the explorer draws them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures.decoder import tiny_dtc, tiny_tc, write_tiny_run
from fixtures.explore import tiny_explorer
from PIL import Image
from typer.testing import CliRunner

from ijepa.decoder import DecoderTrainer, load_decoder, spec_for
from ijepa.decoder.diffusion import (
    DiffusionDecoder,
    diffusion_dir,
    diffusion_loss,
    load_diffusion_decoder,
    roles,
    sample,
)
from ijepa.decoder.model import decoder_dir
from ijepa.decoder.runs import (
    mask_collator,
    measure_decoded,
    random_twin,
    run_dataset,
    train_decoders,
)
from ijepa.decoder.train import DiffusionTrainConfig, DiffusionTrainer, training_roles
from ijepa.explore import load_explore_model
from ijepa.explore.export import export_static
from ijepa.explore.session import Extras, find_decoder, find_diffusion
from ijepa.models.mae import patchify


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_tiny_run(tmp_path_factory.mktemp("diff") / "run")


@pytest.fixture(scope="module")
def parts(run):
    model = load_explore_model(run)
    train, _ = run_dataset(model, "train")
    return model, train, spec_for(model.target_encoder, str(run), *model.mean_std)


def _trainer(parts, out, tc, **kw) -> DiffusionTrainer:
    model, train, spec = parts
    return DiffusionTrainer(model.target_encoder, spec, train, mask_collator(model, tc.seed), out, tc,
                            device=torch.device("cpu"), **kw)


def _fixed_loss(decoder: DiffusionDecoder, model, train) -> float:
    """The loss on 32 fixed images, fixed roles and noise: comparable across decoders."""
    imgs = torch.stack([train[i][0] for i in range(32)])
    tokens = torch.nn.functional.layer_norm(model.target_encoder(imgs), (192,))
    g = torch.Generator().manual_seed(5)
    role = roles(64, torch.randint(64, (32, 10), generator=g), torch.randint(64, (32, 30), generator=g))
    with torch.no_grad():
        return float(diffusion_loss(decoder, tokens, patchify(imgs, 4), role, torch.Generator().manual_seed(6)))


def test_training_lowers_the_loss(parts, tmp_path):
    model, train, spec = parts
    trainer = _trainer(parts, tmp_path / "d", tiny_dtc(40))
    untrained = DiffusionDecoder(spec, width=64, depth=1)
    untrained.load_state_dict(trainer.decoder.state_dict())
    decoder = trainer.fit()
    assert trainer.step == 40 and len(trainer.losses) == 4
    before, after = _fixed_loss(untrained.eval(), model, train), _fixed_loss(decoder, model, train)
    assert after < 0.8 * before, (before, after)


def test_resume_is_exact_and_kinds_do_not_mix(parts, tmp_path):
    straight = _trainer(parts, tmp_path / "a", tiny_dtc(8, checkpoint_every=4)).fit()
    _trainer(parts, tmp_path / "b", tiny_dtc(4, checkpoint_every=4)).fit()
    resumed = _trainer(parts, tmp_path / "b", tiny_dtc(8, checkpoint_every=4), resume=True)
    assert resumed.step == 4
    resumed = resumed.fit()
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="a diffusion decoder, not a mean one"):
        load_decoder(tmp_path / "a")
    model, train, spec = parts
    DecoderTrainer(model.target_encoder, spec, train, mask_collator(model, 0), tmp_path / "m", tiny_tc(1),
                   device=torch.device("cpu")).fit()
    with pytest.raises(ValueError, match="a mean decoder, not a diffusion one"):
        load_diffusion_decoder(tmp_path / "m")


def test_training_roles_generate_one_block_beside_the_known_context():
    g = torch.Generator().manual_seed(0)
    context = torch.tensor([[0, 1, 2, 3]] * 6)
    masks = [torch.tensor([[10, 11]] * 6), torch.tensor([[20, 21]] * 6)]
    role = training_roles(32, context, masks, 0.5, g)
    for r in role:
        gen = set(torch.nonzero(r == 0).flatten().tolist())
        assert gen in ({10, 11}, {20, 21}) and set(torch.nonzero(r == 1).flatten().tolist()) == {0, 1, 2, 3} or gen == set(range(32))


def test_sampling_is_fixed_by_its_seed_and_keeps_the_context(parts):
    _, _, spec = parts
    torch.manual_seed(0)
    dec = DiffusionDecoder(spec, width=64, depth=1).eval()
    tokens, idx = torch.randn(2, 5, 192), torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])
    known_pix, known_idx = torch.randn(2, 64, 16), torch.tensor([[40, 41, 42]] * 2)

    def draw(seed):
        return sample(dec, tokens, idx, n_samples=3, steps=4, known_pix=known_pix, known_idx=known_idx,
                      generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (3, 2, 5, 16) and torch.equal(a, b) and not torch.allclose(a, c)
    assert float(a.std(0).mean()) > 0.01  # the samples of one call differ from each other
    lo, hi = (0 - spec.mean[0]) / spec.std[0], (1 - spec.mean[0]) / spec.std[0]
    assert float(a.min()) >= lo - 1e-5 and float(a.max()) <= hi + 1e-5  # clipped to real pixels
    moved = known_pix.clone()
    moved[:, 40:43] += 1.0  # the context conditions the samples
    assert not torch.allclose(a, sample(dec, tokens, idx, n_samples=3, steps=4, known_pix=moved, known_idx=known_idx,
                                        generator=torch.Generator().manual_seed(0)))


def test_a_diffusion_decoder_of_another_run_is_refused_in_one_line(parts, tmp_path):
    model, _, _ = parts
    _trainer(parts, tmp_path / "d", tiny_dtc(1)).fit()
    other = spec_for(random_twin(model).target_encoder, "random", *model.mean_std)
    with pytest.raises(ValueError, match=r"decoder trained for .*not for random") as e:
        load_diffusion_decoder(tmp_path / "d", other)
    assert "\n" not in str(e.value)
    moved = load_explore_model(write_tiny_run(tmp_path / "moved", shift=0.2))
    (tmp_path / "moved" / "decoder").mkdir()
    (tmp_path / "d").rename(tmp_path / "moved" / "decoder" / "diffusion")
    decoder, note = find_diffusion(moved, tmp_path / "moved")  # the page goes on without it, and says why
    assert decoder is None and note.startswith("Diffusion samples not shown:") and "decoder trained for" in note
    with pytest.raises(ValueError, match="decoder trained for"):
        load_diffusion_decoder(tmp_path / "moved", spec_for(moved.target_encoder, "moved", *moved.mean_std))


def test_train_and_measure_records(run):
    rec = train_decoders(run, tiny_dtc(4), kind="diffusion", baseline=False, val_images=8, sample_steps=3)
    saved = json.loads((diffusion_dir(run) / "record.json").read_text())
    assert saved["decoder_kind"] == "diffusion" and saved["reported_on"] == "val" and saved["trained"]["n_images"] == 8
    assert rec["trained"]["mse"] == saved["trained"]["mse"] and -1 <= saved["trained"]["ssim"] <= 1
    with pytest.raises(ValueError, match="whole_image=1.5"):
        tiny_dtc(4, whole_image=1.5)
    with pytest.raises(ValueError, match="takes a DiffusionTrainConfig"):
        train_decoders(run, tiny_tc(4), kind="diffusion")
    train_decoders(run, tiny_tc(2), baseline=False, val_images=8)
    m = measure_decoded(run, val_images=16, mean_images=16, batch_size=8, diffusion_images=8, n_samples=2, sample_steps=3)
    d = json.loads((decoder_dir(run) / "measure.json").read_text())["diffusion"]
    assert d == json.loads(json.dumps(m["diffusion"])) and d["n_images"] == 8 and d["n_samples"] == 2
    assert d["all"]["n_blocks"] == 8 * 2 == sum(r["n_blocks"] for r in d["by_block_size"].values())
    for name in ("target", "prediction", "mean_token"):
        row = d["all"]
        assert row[f"{name}_sample"] > 0 and row[f"{name}_diversity"] > 0
        assert row[f"{name}_samples_mean"] <= row[f"{name}_sample"] + 1e-6  # the mean of samples: never worse (convexity)


def test_cli_kind(tmp_path):
    from ijepa.cli import app
    from ijepa.cli import decoder as _registers  # noqa: F401

    run = write_tiny_run(tmp_path / "run")
    args = ["decoder", "train", str(run), "--kind", "diffusion", "--steps", "2", "--batch-size", "8", "--width", "64",
            "--depth", "1", "--train-images", "32", "--val-images", "8", "--no-baseline", "--results", str(tmp_path / "r")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "(one sample)" in r.output and "not measured" in r.output and (run / "decoder" / "diffusion" / "checkpoint.pt").is_file()
    from ijepa.results.io import read_records
    from ijepa.results.schema import validate

    (rec,) = read_records(tmp_path / "r")
    assert validate(rec) is None and rec["decoder_kind"] == "diffusion" and rec["encoder"].endswith(":diffusion_decoder")
    r = CliRunner().invoke(app, ["decoder", "train", str(run), "--kind", "flow"])
    assert r.exit_code == 2 and "--kind flow: expected one of mean, diffusion" in r.output


def test_explorer_export_shows_the_samples(run, tmp_path):
    model = load_explore_model(run)
    train, _ = run_dataset(model, "train")
    spec = spec_for(model.target_encoder, str(run), *model.mean_std)
    for folder, trainer, tc in ((decoder_dir(run), DecoderTrainer, tiny_tc(2)), (diffusion_dir(run), DiffusionTrainer, tiny_dtc(2))):
        if not (folder / "checkpoint.pt").is_file():
            trainer(model.target_encoder, spec, train, mask_collator(model, 0), folder, tc, device=torch.device("cpu")).fit()
    extras = Extras(decoder=find_decoder(model, run, None)[0], diffusion=find_diffusion(model, run)[0])
    assert extras.diffusion is not None
    base = tiny_explorer(2)
    explorer = type(base)(model, list(base.items.values()), device=torch.device("cpu"), extras=extras)
    assert explorer.info()["diffusion"] and not base.info()["diffusion"]
    export_static(explorer, tmp_path / "site", draws=2, per_source=1)
    manifest = json.loads((tmp_path / "site" / "manifest.json").read_text())
    first, second = manifest["samples"]["img-0"]
    assert "sampled_pred" in first["png"] and "sampled_pred" not in base.sample("img-0", base.defaults, 0).pngs
    pics = [np.asarray(Image.open(tmp_path / "site" / d["png"]["sampled_pred"]).convert("RGB")) for d in (first, second)]
    assert pics[0].shape == (256, 256, 3) and len(np.unique(pics[0].reshape(-1, 3), axis=0)) > 10  # non-blank
    assert not np.array_equal(pics[0], pics[1])
    h = 128  # the four tiles differ: they are samples, not copies
    tiles = [pics[0][:h, :h], pics[0][:h, h:], pics[0][h:, :h], pics[0][h:, h:]]
    assert any(not np.array_equal(tiles[0], t) for t in tiles[1:])
    with Image.open(tmp_path / "site" / "figure.png") as fig:
        assert fig.size[0] == 6 * 262 - 6  # image, mask, context, (b), (c), (c) samples
    assert "dsamples" in (tmp_path / "site" / "index.html").read_text()


def test_a_step_on_the_default_recipe_costs_about_the_mean_decoders():
    """The README's sizing, counted (matmul FLOPs, as `ijepa bench flops`): a diffusion step of
    the default recipe is within 1.25x of the deterministic decoder's, target encoder included."""
    from torch.utils.flop_counter import FlopCounterMode

    from ijepa.decoder.model import TokenDecoder, layer_normed
    from ijepa.decoder.train import decoder_loss
    from ijepa.training.config import load_config
    from ijepa.training.networks import random_networks

    model = random_networks(load_config())  # the packaged default recipe
    spec = spec_for(model.target_encoder, "default", *model.mean_std)
    (imgs, _), masks_enc, masks = mask_collator(model, 0)([(torch.randn(1, 32, 32), 0) for _ in range(8)])
    g, dtc = torch.Generator().manual_seed(0), DiffusionTrainConfig()
    mean, diff = TokenDecoder(spec), DiffusionDecoder(spec, width=dtc.width, depth=dtc.depth)

    def flops(fn) -> int:
        with FlopCounterMode(display=False) as fc:
            fn()
        return fc.get_total_flops()

    with torch.no_grad():
        encoder = flops(lambda: model.target_encoder(imgs))
        tokens = layer_normed(model.target_encoder(imgs))
    m = flops(lambda: decoder_loss(mean, tokens, imgs, masks).backward())
    d = flops(lambda: diffusion_loss(diff, tokens, patchify(imgs, 4), training_roles(64, masks_enc[0], masks, 0.25, g), g).backward())
    assert 1.0 < (encoder + d) / (encoder + m) < 1.25, (encoder, m, d)
