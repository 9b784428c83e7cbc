"""The crossover experiment's pieces: the `fmnist-clutter:LEVEL` family, sweeps and curves that
name their dataset, the `best` choice rule, `ijepa bench curve` end to end on an ImageFolder
(its --help example), and the crossover table and figure drawn from records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from ijepa.bench import curves
from ijepa.bench.experiment import choose_recipe, runs_at
from ijepa.bench.grids import read_grid
from ijepa.bench.sweep import (
    canonical_data,
    choose_best,
    data_overrides,
    data_slug,
    finished,
    grid_variants,
)
from ijepa.data import build_dataset, clutter, data_spec, generated
from ijepa.data.fashion_mnist import FashionMNIST
from ijepa.results.crossover import crossover_frame, crossover_markdown, moonshot, plot_crossover
from ijepa.results.io import load_records, write_record
from tests.fixtures.imagefolder import write_imagefolder
from tests.test_data import write_fmnist

ROOT = Path(__file__).parent.parent
IJEPA = str(ROOT / ".venv" / "bin" / "ijepa")


def test_level_zero_is_fashion_mnist_bit_for_bit(idx):
    spec = data_spec(f"fmnist-clutter:0:{idx}")
    assert spec.kind == "fashion-mnist" and spec.id == "fashion-mnist"  # one dataset, one id, one cache
    plain = FashionMNIST(idx, "val")
    rows = plain.rows
    assert np.array_equal(clutter.clutter_images(plain.images[:, 0].numpy(), rows, "train", 0.0), plain.images[:, 0].numpy())
    rng = np.random.default_rng(0)
    obj = plain.images[0, 0].numpy()
    assert np.array_equal(clutter.compose(obj, plain.images[:3, 0].numpy(), 0.0, rng), obj)


def test_clutter_is_seeded_per_image_and_keeps_labels(idx):
    spec = data_spec(f"fmnist-clutter:0.7:{idx}")
    assert spec.kind == "fmnist-clutter" and spec.id == "fmnist-clutter:0.7" and spec.level == 0.7 and spec.in_memory
    plain, val = FashionMNIST(idx, "val"), build_dataset(spec, "val")
    assert np.array_equal(val.targets.numpy(), plain.targets.numpy())  # labels are Fashion-MNIST's
    assert not np.array_equal(val.images.numpy(), plain.images.numpy())
    generated.generated.cache_clear()  # from disk, and generated afresh: the same bytes
    assert np.array_equal(build_dataset(spec, "val").images.numpy(), val.images.numpy())
    for p in (idx.parent / "cache").glob("*.npy"):
        p.unlink()
    generated.generated.cache_clear()
    assert np.array_equal(build_dataset(spec, "val").images.numpy(), val.images.numpy())
    # an image is seeded by its row of the source file, so it is the same in val and trainval
    trainval = build_dataset(spec, "trainval")
    rows = plain.rows
    assert np.array_equal(trainval.images.numpy()[rows], val.images.numpy())
    more = data_spec(f"fmnist-clutter:1:{idx}")
    assert build_dataset(more, "val").images.float().std() != val.images.float().std()
    assert spec.mean != (0.2860,) and 0 < spec.std[0] < 1  # the level's own train statistics


def test_the_generated_split_cache_keys_on_the_source_pixels(tmp_path):
    """An IDX file rewritten in place with its size and mtime kept is a new cache key."""
    import os

    root = tmp_path / "raw"
    write_fmnist(root, n_train=12, n_val=6, gz=False)
    images = root / "t10k-images-idx3-ubyte"
    before, stat = generated.cache_path(clutter.GENERATOR, FashionMNIST(root, "test"), 0.5), images.stat()
    raw = bytearray(images.read_bytes())
    raw[-1] ^= 0xFF
    images.write_bytes(bytes(raw))
    os.utime(images, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert images.stat().st_size == stat.st_size and generated.cache_path(clutter.GENERATOR, FashionMNIST(root, "test"), 0.5) != before


def test_fragments_come_from_the_images_own_split():
    """A fragment is cut from `others` (the split's own images): an all-black split gives
    fragments that add nothing, whatever the level."""
    rng = np.random.default_rng(0)
    obj = np.zeros((28, 28), np.uint8)
    with_black = clutter.compose(obj, np.zeros((3, 28, 28), np.uint8), 1.0, np.random.default_rng(1))
    with_white = clutter.compose(obj, np.full((3, 28, 28), 255, np.uint8), 1.0, np.random.default_rng(1))
    assert (with_white >= with_black).all() and (with_white > with_black).any()
    assert clutter.compose(obj, np.zeros((3, 28, 28), np.uint8), 0.5, rng).dtype == np.uint8


@pytest.mark.parametrize("level", ["1.5", "-0.1", "nan", "high"])
def test_a_level_outside_zero_one_is_one_error_naming_it(level):
    with pytest.raises(ValueError, match=rf"fmnist-clutter:{level}: LEVEL must be"):
        data_spec(f"fmnist-clutter:{level}")
    from ijepa.training.config import load_config
    from ijepa.typedconfig import ConfigError

    with pytest.raises(ConfigError, match="data.dataset"):
        load_config(None, [f"data.dataset=fmnist-clutter:{level}"])


def test_dataset_spellings_and_their_config_keys(tmp_path):
    folder = write_imagefolder(tmp_path / "imgs")
    assert canonical_data("fmnist-clutter:0") == "fashion-mnist" and data_overrides("fashion-mnist") == []
    assert canonical_data("fmnist-clutter:0.50") == "fmnist-clutter:0.5" and data_slug("fmnist-clutter:1") == "clutter1"
    assert data_overrides("fmnist-clutter:1") == ["data.dataset=fmnist-clutter:1"]
    assert data_overrides(str(folder))[0] == "data.dataset=imagefolder"
    assert "meta.in_chans=3" in data_overrides(str(folder)) and data_slug(str(folder)).startswith("imgs-")


def test_a_grid_can_take_a_variant_from_another_grid_as_it_is_there(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"_base": str(ROOT / "benchmarks/sweeps/bases/fmnist_round6.yaml"), "v": ["meta.seed=3"]}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"v": "a.yaml", "w": ["meta.seed=4"]}))
    g = read_grid(tmp_path / "b.yaml")
    assert g.variants["v"] == ["meta.seed=3"] and g.origin("v").path == tmp_path / "a.yaml" and g.origin("w") is g
    assert g.origin("v").base.name == "fmnist_round6.yaml"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"x": "a.yaml"}))
    with pytest.raises(ValueError, match="no variant of that name"):
        read_grid(tmp_path / "c.yaml")


def _sweep_record(results: Path, name: str, overrides: list[str], top1: float, dataset: str | None) -> None:
    write_record({"kind": "recipe_sweep", "encoder": name, "overrides": overrides, "selected_on": "val", "reported_on": "val",
                  "grid_val_top1": top1, "probe_best": top1, **({"dataset": dataset} if dataset else {})}, results_dir=results)


def test_the_best_rule_chooses_on_the_datasets_own_val_records(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"a": ["meta.seed=0"], "b": ["meta.seed=1"]}))
    results = tmp_path / "results"
    _sweep_record(results, "a", ["meta.seed=0"], 0.80, None)  # Fashion-MNIST, from before datasets were named
    _sweep_record(results, "b", ["meta.seed=1"], 0.70, "fashion-mnist")
    _sweep_record(results, "a", ["meta.seed=0"], 0.40, "fmnist-clutter:1")
    c = choose_best(grid_variants(grid, data="fashion-mnist"), results)
    assert c.variant.name == "a" and not c.pending
    c = choose_best(grid_variants(grid, data="fmnist-clutter:1"), results)
    assert c.variant is None and c.pending == ["b"]  # never borrowed from another dataset
    _sweep_record(results, "b", ["meta.seed=1"], 0.60, "fmnist-clutter:1")
    assert choose_best(grid_variants(grid, data="fmnist-clutter:1"), results).variant.name == "b"
    assert finished(grid_variants(grid, data="fmnist-clutter:0")[0], results)["grid_val_top1"] == 0.80
    r = curves.read_recipe(f"{grid}:b", results_dir=results, data="fmnist-clutter:1")
    assert r.val["grid_val_top1"] == 0.60 and r.data == "fmnist-clutter:1" and r.config().data.dataset == "fmnist-clutter:1"


def test_a_runs_name_and_identity_name_its_dataset_and_fashion_mnist_keeps_its_old_ones(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"_base": str(ROOT / "benchmarks/sweeps/bases/fmnist_round6.yaml"),
                                    "a": ["data.subset=25600", "optimization.epochs=1"]}))
    results = tmp_path / "results"
    for d in (None, "fmnist-clutter:1"):
        _sweep_record(results, "a", ["data.subset=25600", "optimization.epochs=1"], 0.5, d)
    plain = curves.plan_run(curves.read_recipe(f"{grid}:a", results_dir=results), folder="runs", minutes=5)
    clut = curves.plan_run(curves.read_recipe(f"{grid}:a", results_dir=results, data="fmnist-clutter:1"), folder="runs", minutes=5)
    deep = curves.plan_run(curves.read_recipe(f"{grid}:a", results_dir=results, extra=["meta.depth=12"]), folder="runs", minutes=5)
    assert plain.name == "ijepa-a-469" and "data" not in plain.identity()  # the records made before datasets were named
    assert clut.name == "ijepa-a-469-clutter1" and clut.identity()["data"] == "fmnist-clutter:1"
    assert deep.name.startswith("ijepa-a-469-x") and len({plain.name, clut.name, deep.name}) == 3
    assert curves.baseline_fields("raw-pixels", None, "fmnist-clutter:1")["piece"] == {"method": "raw-pixels", "data": "fmnist-clutter:1"}
    assert curves.baseline_fields("raw-pixels", None)["piece"] == {"method": "raw-pixels"}


def test_the_committed_fashion_mnist_curve_is_found_again_by_the_new_command():
    """`ijepa bench curve` on Fashion-MNIST finds the records the scripts made (same identities)."""
    out = subprocess.run([IJEPA, "bench", "curve", "--data", "fmnist-clutter:0", "--ijepa", "benchmarks/sweeps/fmnist_round8.yaml:r8_combo",
                          "--mae", "benchmarks/sweeps/fmnist_mae_round3.yaml:m3_lr1e-3_dec1", "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "done     pretrain ijepa-r8_combo-469 (5 I-JEPA minutes = 0.0277 PFLOPs, 469 steps)" in out.stderr
    assert "done     pretrain mae-m3_lr1e-3_dec1-7513 (30 I-JEPA minutes = 0.1661 PFLOPs, 7513 steps)" in out.stderr
    assert "done     score raw-pixels lowshot on test" in out.stderr


def _tiny_grids(tmp: Path) -> tuple[Path, Path]:
    tiny = ["meta.depth=1", "meta.pred_depth=1", "meta.pred_emb_dim=48", "meta.dec_depth=1", "meta.dec_emb_dim=32",
            "data.batch_size=8", "data.crop_size=16", "data.num_workers=0", "logging.progress=false", "meta.device=cpu",
            "optimization.epochs=1", "mask.min_keep=1"]
    (tmp / "ij.yaml").write_text(yaml.safe_dump({"tij": tiny}))
    (tmp / "ma.yaml").write_text(yaml.safe_dump({"tma": ["method=mae", *tiny], "tma2": ["method=mae", "mask.mask_ratio=0.5", *tiny]}))
    return tmp / "ij.yaml", tmp / "ma.yaml"


@pytest.mark.slow
def test_bench_curve_runs_the_whole_curve_on_an_image_folder_as_its_help_says(tmp_path):
    """`ijepa bench curve --data FOLDER`: candidates swept on val and chosen, both methods at
    matched FLOPs, the probes on val then test, the random-init line; run again: all done."""
    folder = write_imagefolder(tmp_path / "imgs", per_class={"train": 12, "val": 6, "test": 6}, size=16)
    ij, ma = _tiny_grids(tmp_path)
    cmd = [IJEPA, "bench", "curve", "--data", str(folder), "--ijepa", str(ij), "--mae", str(ma), "--minutes", "0.05",
           "--img-per-s", "16", "--probe", "logreg", "--probe", "knn", "--probe-set", "knn:ks=[3]", "--results", str(tmp_path / "results"),
           "--folder", str(tmp_path / "runs"), "--sweep-folder", str(tmp_path / "sweep")]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    records = load_records(tmp_path / "results")[0]
    sweeps = [r for r in records if r["kind"] == "recipe_sweep"]
    assert {r["encoder"] for r in sweeps} == {"tij", "tma", "tma2"} and all(r["reported_on"] == "val" for r in sweeps)
    assert all(r["dataset"] == str(folder.resolve()) for r in records if r["kind"].startswith(("recipe_sweep", "curve.")))
    pre = {r["method"]: r for r in records if r["kind"] == "curve.pretrain"}
    assert set(pre) == {"ijepa", "mae"} and abs(pre["mae"]["pretrain_flops"] / pre["ijepa"]["pretrain_flops"] - 1) < 0.05
    assert pre["ijepa"]["in_chans"] == 3  # an RGB folder trains RGB
    scores = [(r["method"], r["probe"], r["split"]) for r in records if r["kind"] == "curve.score"]
    for m in ("ijepa", "mae", "random-init"):
        assert {(m, "logreg", "val"), (m, "logreg", "test"), (m, "knn", "test")} <= set(scores)
    assert not any(m == "raw-pixels" for m, _, _ in scores)  # an image folder has no native size for raw pixels
    assert (tmp_path / "results" / f"compute_curve-{data_slug(str(folder))}.png").is_file()
    again = subprocess.run([*cmd, "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "to do" not in again.stderr and again.stderr.count("done ") == len(scores) + 2


def test_a_pretraining_config_is_a_recipe_as_it_stands_and_says_it_was_not_chosen_on_val(tmp_path):
    """`--ijepa my.yaml --mae my_mae.yaml`: configs run as given at matched FLOPs; their records
    say `selected_on: none (a given config)` (a grid variant's say val)."""
    tiny = {"meta": {"depth": 1, "pred_depth": 1, "pred_emb_dim": 48, "dec_depth": 1, "dec_emb_dim": 32, "device": "cpu"},
            "data": {"batch_size": 8, "crop_size": 16, "num_workers": 0}, "mask": {"min_keep": 1}, "logging": {"progress": False}}
    base = yaml.safe_load(curves.find_config("fmnist_vit_tiny").read_text())
    for optim, name in (({"epochs": 4, "warmup": 1}, "ij"), ({"epochs": 1, "warmup": 0}, "ma")):
        cfg = {k: {**base.get(k, {}), **tiny.get(k, {})} for k in base}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**cfg, "optimization": {**cfg["optimization"], **optim}}))
    assert curves.is_config(str(tmp_path / "ij.yaml")) and curves.is_config("fmnist_vit_tiny")
    assert not curves.is_config("benchmarks/sweeps/crossover_ijepa.yaml") and not curves.is_config("benchmarks/sweeps/crossover_ijepa.yaml:xc_pred4")
    kw = dict(data="fashion-mnist", results_dir=tmp_path / "results", folder=str(tmp_path / "sweep"), sweep=False)
    recipes = {m: choose_recipe(str(tmp_path / f"{m[:2]}.yaml"), method=m, **kw) for m in ("ijepa", "mae")}
    assert [(r.variant, r.method, r.selected_on) for r in recipes.values()] == [("ij", "ijepa", "none (a given config)"),
                                                                               ("ma", "mae", "none (a given config)")]
    assert recipes["ijepa"].warmup_fraction == pytest.approx(0.25) and recipes["mae"].config().meta.dec_depth == 1
    runs = runs_at(recipes, 1, folder=str(tmp_path / "runs"), img_per_s=None)
    assert runs["ijepa"].steps > 0 and runs["mae"].budget_flops == runs["ijepa"].budget_flops
    assert curves.recipe_selected_on({"recipe": recipes["mae"].provenance()}) == "none (a given config)"
    assert curves.recipe_selected_on({"recipe": {"val": {"record": "x.json"}}}) == "val" and curves.recipe_selected_on({}) is None


def test_bench_curve_refuses_a_folder_without_test_and_bad_options(tmp_path):
    folder = write_imagefolder(tmp_path / "imgs")  # train/ and val/ only
    out = subprocess.run([IJEPA, "bench", "curve", "--data", str(folder), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no test/ split" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([IJEPA, "bench", "curve", "--minutes", "0", "--dry-run"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--minutes" in out.stderr
    out = subprocess.run([IJEPA, "bench", "curve", "--probe", "nope", "--dry-run"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "nope" in out.stderr
    out = subprocess.run([IJEPA, "bench", "curve", "--ijepa", "benchmarks/sweeps/fmnist_mae_round3.yaml:m3_lr1e-3_dec1", "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "a mae recipe, not ijepa" in out.stderr


def _score(results: Path, method: str, level: float | None, minutes: float | None, metric: str, value: float,
           extra: tuple[str, ...] = (), pflops: float = 0.001, variant: str | None = None, family: str = "fmnist-clutter") -> None:
    dataset = None if level in (None, 0.0) else f"{family}:{level:g}"
    variant = variant or f"{method}_r"
    write_record({"kind": "curve.score", "encoder": f"{variant}-{family}-{level}-{minutes}-{pflops}", "method": method,
                  "piece": {"m": method, "x": [family, level, minutes, metric, list(extra), variant]}, "steps": 10, "images_seen": 10,
                  "pretrain_flops": pflops * 1e15, "wall_minutes": 1.0, "budget_minutes": minutes, "budget_pflops": pflops,
                  "recipe": {"variant": variant, "extra": list(extra)}, "split": "test", "probe_sets": [], "top1": value,
                  "metrics": {metric: value}, "metrics_std": {}, "selected_on": "val", "reported_on": "test",
                  **({"dataset": dataset, "dataset_level": level} if dataset else {})}, results_dir=results)


def test_the_crossover_table_gaps_and_the_moonshot_rule(tmp_path):
    results = tmp_path / "results"
    for level, ij, ma in ((0.0, 0.80, 0.88), (1.0, 0.60, 0.55)):
        for metric in ("linear", "logreg"):
            _score(results, "ijepa", level, 5, metric, ij)
            _score(results, "mae", level, 5, metric, ma)
    _score(results, "ijepa", 1.0, 5, "knn", 0.5, extra=("meta.depth=12",))  # no MAE partner: no row
    _score(results, "random-init", 1.0, None, "linear", 0.3)
    f = crossover_frame(load_records(results)[0])
    assert len(f) == 4 and set(f["level"]) == {0.0, 1.0}
    row = f[(f["level"] == 1.0) & (f["probe"] == "linear")].iloc[0]
    assert row["gap"] == pytest.approx(-5.0) and row["random_init"] == pytest.approx(30.0)
    assert f[(f["level"] == 0.0)]["gap"].round(6).tolist() == [8.0, 8.0]
    wins = moonshot(f)
    assert wins[["level", "budget_minutes"]].values.tolist() == [[1.0, 5.0]]
    assert "-5.00" in crossover_markdown(load_records(results)[0])
    assert plot_crossover(results).is_file()
    json.dumps(f.to_dict())  # plain values


def test_a_level_with_runs_of_two_recipes_pairs_each_by_its_budget(tmp_path):
    """Fashion-MNIST keeps the headline curve's runs (an older I-JEPA recipe, MAE sized to its
    minutes) beside the crossover rule's: the latest I-JEPA recipe is paired with the MAE run
    of ITS FLOPs budget, never with the newest MAE run of the same minutes."""
    results = tmp_path / "results"
    _score(results, "ijepa", 0.0, 5, "linear", 0.80, pflops=0.0277, variant="old")
    _score(results, "mae", 0.0, 5, "linear", 0.85, pflops=0.0277)
    _score(results, "ijepa", 0.0, 5, "linear", 0.82, pflops=0.0250, variant="new")
    assert crossover_frame(load_records(results)[0]).empty  # the new recipe's MAE partner is not measured yet
    _score(results, "mae", 0.0, 5, "linear", 0.86, pflops=0.0250)
    row = crossover_frame(load_records(results)[0]).iloc[0]
    assert (row["ijepa_recipe"], row["pflops"], row["gap"]) == ("new", pytest.approx(0.025), pytest.approx(4.0))


def test_crossover_from_no_records_is_one_error(tmp_path):
    with pytest.raises(ValueError, match="no level of any data family"):
        plot_crossover(tmp_path)
