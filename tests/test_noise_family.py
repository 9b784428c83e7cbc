"""The `fmnist-noise:LEVEL` family (`ijepa.data.noise`) and what every family shares: the name
registry (`ijepa.families`), run names and record fields, and the crossover table and figure
grouped by family."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ijepa import families
from ijepa.bench import curves
from ijepa.bench.sweep import canonical_data, data_overrides, data_slug
from ijepa.data import GENERATORS, build_dataset, data_spec, generated, noise
from ijepa.data.fashion_mnist import FashionMNIST
from ijepa.evals.core.features import fmnist_salt
from ijepa.results.crossover import crossover_frame, crossover_markdown, plot_crossover
from ijepa.results.io import load_records
from tests.test_crossover import _score


def test_every_family_name_has_its_generator():
    assert list(GENERATORS) == list(families.FAMILIES) and all(g.family == name for name, g in GENERATORS.items())
    assert families.family("fmnist-noise:0.5:/x") == ("fmnist-noise", 0.5) and families.family("fashion-mnist") is None
    assert families.family("/data/imgs") is None


def test_level_zero_is_fashion_mnist_bit_for_bit(idx):
    spec = data_spec(f"fmnist-noise:0:{idx}")
    assert spec.kind == "fashion-mnist" and spec.id == "fashion-mnist"
    plain = FashionMNIST(idx, "val")
    images = plain.images[:, 0].numpy()
    assert np.array_equal(noise.noise_images(images, plain.rows, "train", 0.0), images)


def test_noise_is_fixed_per_image_and_keeps_labels(idx):
    spec = data_spec(f"fmnist-noise:0.5:{idx}")
    assert (spec.kind, spec.id, spec.level, spec.in_memory) == ("fmnist-noise", "fmnist-noise:0.5", 0.5, True)
    plain, val = FashionMNIST(idx, "val"), build_dataset(spec, "val")
    assert np.array_equal(val.targets.numpy(), plain.targets.numpy()) and not np.array_equal(val.images.numpy(), plain.images.numpy())
    for p in (idx.parent / "cache").glob("fmnist-noise-0.5-val-*.npy"):
        p.unlink()
    generated.generated.cache_clear()  # generated afresh in a new build: the same bytes
    assert np.array_equal(build_dataset(spec, "val").images.numpy(), val.images.numpy())
    assert np.array_equal(build_dataset(spec, "trainval").images.numpy()[plain.rows], val.images.numpy())  # seeded by source row
    gray = np.full((4, 28, 28), 128, np.uint8)  # the same image at four rows: four different noises
    out = noise.noise_images(gray, np.arange(4), "train", 0.5)
    assert len({o.tobytes() for o in out}) == 4
    assert spec.mean != (0.2860,) and 0 < spec.std[0] < 1  # the level's own train statistics


def test_the_noise_sd_is_level_times_noise_max():
    """Level 1: every unclipped pixel is the clean one plus NOISE_MAX x its generator's z (to the
    uint8 rounding); level 0.1 on mid-gray (no clipping): the residual's sd is 0.1 x NOISE_MAX."""
    gray, rows = np.full((20, 28, 28), 128, np.uint8), np.arange(20)
    z = np.stack([generated.image_rng(noise.SEED, "train", r).standard_normal((28, 28)) for r in rows])
    out = noise.noise_images(gray, rows, "train", 1.0)
    free = (out > 0) & (out < 255)
    assert 0.3 < free.mean() < 0.7  # about half the pixels clip at level 1 (P(|z| < 0.5 / 0.82)): part of the image
    resid = (out.astype(np.float64) - gray) / 255
    assert np.abs(resid - noise.NOISE_MAX * z)[free].max() <= 0.5 / 255 + 1e-9
    low = (noise.noise_images(gray, rows, "train", 0.1).astype(np.float64) - gray) / 255
    assert low.std() == pytest.approx(0.1 * noise.NOISE_MAX, rel=0.03)  # sampling error of 15,680 pixels: 0.6%


@pytest.mark.parametrize("level", ["1.5", "-0.1", "nan", "high"])
def test_a_level_outside_zero_one_is_one_error_naming_it(level):
    with pytest.raises(ValueError, match=rf"^fmnist-noise:{level}: LEVEL must be [^\n]*$"):
        data_spec(f"fmnist-noise:{level}")
    from ijepa.training.config import load_config
    from ijepa.typedconfig import ConfigError

    with pytest.raises(ConfigError, match=rf"data.dataset: fmnist-noise:{level}: LEVEL"):
        load_config(None, [f"data.dataset=fmnist-noise:{level}"])


def test_names_slugs_record_fields_and_feature_salts(idx):
    assert canonical_data("fmnist-noise:0") == "fashion-mnist" and canonical_data(f"fmnist-noise:0.50:{idx}").startswith("fmnist-noise:0.5:")
    assert data_slug(f"fmnist-noise:0.5:{idx}") != data_slug(f"fmnist-clutter:0.5:{idx}")
    assert data_overrides(f"fmnist-noise:0.5:{idx}") == ["data.dataset=fmnist-noise:0.5", f"data.root_path={idx}"]
    assert curves.dataset_fields("fmnist-noise:0.5") == {"dataset": "fmnist-noise:0.5", "dataset_level": 0.5}
    assert curves.dataset_fields("fashion-mnist")["dataset_level"] == 0.0 and curves.n_train("fmnist-noise:1") == curves.N_TRAIN
    salts = {fmnist_salt(build_dataset(f"{name}:{lv}:{idx}", "val")) for name in families.FAMILIES for lv in (0.5, 1)}
    assert len(salts) == 4 and fmnist_salt(build_dataset(f"fashion-mnist:{idx}", "val")) == ""


def test_the_default_roots_slug_names_the_family():
    assert data_slug("fmnist-noise:0.5") == "noise0.5"


def _both(results, families_levels):
    for fam, level, ij, ma in families_levels:
        for metric in ("linear", "logreg"):
            _score(results, "ijepa", level, 5, metric, ij, family=fam)
            _score(results, "mae", level, 5, metric, ma, family=fam)


def test_the_crossover_groups_by_family_and_shares_fashion_mnist(tmp_path):
    """Clutter alone: no family column, one row of panels. With noise records: a family column,
    Fashion-MNIST's level 0 under both families, a second row of panels; clutter's rows unchanged."""
    results = tmp_path / "results"
    _both(results, [("fmnist-clutter", 0.0, 0.80, 0.88), ("fmnist-clutter", 1.0, 0.60, 0.70)])
    alone = crossover_markdown(load_records(results)[0])
    assert alone.splitlines()[0].startswith("| level |") and "family" not in alone
    one_row = Image.open(plot_crossover(results, out=tmp_path / "one.png")).size
    _both(results, [("fmnist-noise", 1.0, 0.70, 0.65)])
    f = crossover_frame(load_records(results)[0])
    assert f.groupby("family")["level"].apply(sorted).to_dict() == {"fmnist-clutter": [0, 0, 1, 1], "fmnist-noise": [0, 0, 1, 1]}
    assert f[(f["family"] == "fmnist-noise") & (f["level"] == 1.0)]["gap"].round(6).tolist() == [-5.0, -5.0]
    both = crossover_markdown(load_records(results)[0])
    assert both.splitlines()[0].startswith("| family | level |")
    clutter_rows = [line.removeprefix("| fmnist-clutter ") for line in both.splitlines() if line.startswith("| fmnist-clutter ")]
    assert clutter_rows == alone.splitlines()[2:]
    two_rows = Image.open(plot_crossover(results, out=tmp_path / "two.png")).size
    assert two_rows[1] > 1.6 * one_row[1]
