"""Learning and compute curves (`ijepa.bench.curves`, `ijepa bench curve`):
budgets matched in measured FLOPs, pieces skipped when their record exists, provenance, and the
table and figures drawn from records. Tiny runs on a Fashion-MNIST subset, never the real budgets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from ijepa.bench import curves
from ijepa.bench.experiment import coverage
from ijepa.results.curves import curve_table, matched_pairs, plot_compute_curve, plot_learning_curve
from ijepa.results.io import load_records, write_record
from ijepa.results.readme import write_tables

ROOT = Path(__file__).parent.parent
# A depth-1 ViT on 256 images in batches of 16: a run of a few steps takes seconds.
TINY = ["data.subset=256", "data.batch_size=16", "meta.depth=1", "meta.pred_depth=1", "meta.pred_emb_dim=48", "meta.dec_depth=1",
        "meta.dec_emb_dim=32", "data.num_workers=0", "logging.progress=false", "meta.device=cpu"]
VARIANTS = {"ij": ["data.subset=25600", "optimization.epochs=1", "optimization.warmup=0.1"],
            "ma": ["method=mae", "budget_pflops=0.0264", "mask.mask_ratio=0.6"]}
BASE = ROOT / "benchmarks" / "sweeps" / "bases" / "fmnist_round6.yaml"  # warm-up 0.2 epochs
LINEAR = ["train_limit=300", "val_limit=300", "grid.epochs=1", "grid.min_steps=5", "grid.lrs=[0.1]", "grid.wds=[0.0]"]


def sweep(tmp: Path, reported_on: str = "val") -> tuple[Path, Path]:
    """A sweep grid and its records on `reported_on`."""
    grid, results = tmp / "grid.yaml", tmp / "results"
    grid.write_text(yaml.safe_dump({"_base": str(BASE), **VARIANTS}))  # the schedule shape the sweeps ran
    for name, overrides in VARIANTS.items():
        write_record({"kind": "recipe_sweep", "encoder": name, "overrides": overrides, "selected_on": reported_on,
                      "reported_on": reported_on, "probe_best": 0.7, "grid_val_top1": 0.71}, results_dir=results)
    return grid, results


def n_records(results: Path, kind: str) -> int:
    return len(list((results / "records" / kind).glob("*.json")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both methods pretrained at one budget: 0.2 minutes of the I-JEPA recipe at 16 img/s."""
    tmp = tmp_path_factory.mktemp("curves")
    grid, results = sweep(tmp)
    ij = curves.read_recipe(f"{grid}:ij", results_dir=results, extra=TINY)
    ma = curves.read_recipe(f"{grid}:ma", results_dir=results, extra=TINY)
    budget = curves.minutes_budget(ij, 0.2, img_per_s=16)
    plans = {"ijepa": curves.plan_run(ij, folder=str(tmp / "runs"), minutes=0.2, img_per_s=16),
             "mae": curves.plan_run(ma, folder=str(tmp / "runs"), budget_flops=budget, img_per_s=16, budget_minutes=0.2)}
    recs = {m: curves.pretrain_run(p, results_dir=results)[0] for m, p in plans.items()}
    return {"grid": grid, "results": results, "plans": plans, "recs": recs, "budget": budget, "tmp": tmp}


def test_recipe_is_the_val_chosen_variant_less_its_sizing(tmp_path):
    grid, results = sweep(tmp_path)
    ma = curves.read_recipe(f"{grid}:ma", results_dir=results)
    assert ma.method == "mae" and ma.applied == ("mask.mask_ratio=0.6",)
    assert ma.warmup_fraction == pytest.approx(0.2)  # the base's 0.2 epochs of the sweep's one-epoch run
    assert ma.base == str(BASE) and ma.provenance()["base"] == str(BASE)
    ij = curves.read_recipe(f"{grid}:ij", results_dir=results)
    assert ij.applied == ("optimization.warmup=0.1",) and ij.warmup_fraction == pytest.approx(0.1)
    assert ij.val["record"].startswith("records/recipe_sweep/") and ij.val["probe_best"] == 0.7
    with pytest.raises(ValueError, match="no variant 'nope'"):
        curves.read_recipe(f"{grid}:nope", results_dir=results)
    with pytest.raises(ValueError, match="GRID.yaml:VARIANT"):
        curves.read_recipe(str(grid), results_dir=results)


def test_a_recipe_scored_only_on_test_is_refused(tmp_path):
    grid, results = sweep(tmp_path, reported_on="test")
    with pytest.raises(ValueError, match="no recipe_sweep record on val.*report on test"):
        curves.read_recipe(f"{grid}:ij", results_dir=results)
    with pytest.raises(ValueError, match="no recipe_sweep record on val"):
        curves.read_recipe(f"{grid}:ij", results_dir=tmp_path / "empty")


def test_budgets_matched_in_measured_flops(runs):
    """Both methods' measured training FLOPs within 5% of the budget and of each other; the
    schedule ends at the budget's step with the recipe's warm-up fraction."""
    ij, ma = runs["recs"]["ijepa"], runs["recs"]["mae"]
    for rec in (ij, ma):
        assert abs(rec["pretrain_flops"] / runs["budget"] - 1) < 0.05
        assert rec["flops_rel_budget"] == pytest.approx(rec["pretrain_flops"] / runs["budget"] - 1)
        assert rec["budget_pflops"] == pytest.approx(runs["budget"] / 1e15) and rec["budget_minutes"] == 0.2
        assert rec["images_seen"] == rec["steps"] * 16 and rec["flops_per_image"] == pytest.approx(rec["flops_per_step"] / 16)
        assert rec["wall_minutes"] > 0
    assert abs(ij["pretrain_flops"] / ma["pretrain_flops"] - 1) < 0.05
    assert ma["steps"] > ij["steps"]  # MAE's step is cheaper: more of them for the same FLOPs
    assert ij["steps"] == round(0.2 * 60 * 16 / 16)
    o = runs["plans"]["mae"].cfg.optimization
    assert o.max_steps == ma["steps"] and int(o.warmup * 16) == int(0.2 * ma["steps"])
    pairs = matched_pairs(load_records(runs["results"])[0], {"ijepa": "ij", "mae": "ma"})
    assert len(pairs) == 1 and pairs[0]["rel_diff"] < 0.05


def test_a_run_missing_on_this_machine_is_trained_again_to_its_recorded_weights(runs, monkeypatch):
    """Records are committed, runs are not: scoring on a fresh machine retrains the run and
    refuses weights other than the record's digest."""
    import shutil

    plan, rec = runs["plans"]["mae"], runs["recs"]["mae"]
    assert rec["target_digest"] == curves.target_digest(rec["run_dir"])
    shutil.rmtree(rec["run_dir"])
    assert curves.pretrained(plan, runs["results"]) == curves.find_record(runs["results"], "curve.pretrain", plan.identity())
    assert curves.target_digest(rec["run_dir"]) == rec["target_digest"]
    shutil.rmtree(rec["run_dir"])
    real = curves.find_record
    monkeypatch.setattr(curves, "find_record", lambda *a: {**real(*a), "target_digest": "0" * 24})
    with pytest.raises(ValueError, match="retrained weights differ from the record's target_digest"):
        curves.pretrained(plan, runs["results"])


def test_flops_off_the_budget_is_an_error():
    rec = {"encoder": "r", "pretrain_flops": 1.06e12}
    with pytest.raises(ValueError, match=r"\+6.0% off the budget"):
        curves.check_match(rec, 1e12)
    curves.check_match({**rec, "pretrain_flops": 1.04e12}, 1e12)


def test_pieces_are_skipped_when_their_record_exists(runs):
    results = runs["results"]
    before = n_records(results, "curve.pretrain")
    rec, skipped = curves.pretrain_run(runs["plans"]["ijepa"], results_dir=results)
    assert skipped and rec["encoder"] == runs["recs"]["ijepa"]["encoder"] and n_records(results, "curve.pretrain") == before
    fields = curves.pretrained(runs["plans"]["ijepa"], results)
    with pytest.raises(ValueError, match="on test before val"):
        curves.score(fields, "linear", split="test", results_dir=results, sets=LINEAR, cache_dir=None, val_first=True)
    first, skipped = curves.score(fields, "linear", split="val", results_dir=results, sets=LINEAR, cache_dir=None)
    assert not skipped and n_records(results, "curve.score") == 1
    again, skipped = curves.score(fields, "linear", split="val", results_dir=results, sets=LINEAR, cache_dir=None)
    assert skipped and again["metrics"] == first["metrics"] and n_records(results, "curve.score") == 1
    # provenance: the val-chosen variant, the split reported, and the run's compute
    assert first["selected_on"] == "val" and first["reported_on"] == "val" and first["head_selected_on"] == "train-heldout"
    assert first["recipe"]["variant"] == "ij" and first["recipe"]["val"]["record"].startswith("records/recipe_sweep/")
    assert first["eval"]["reported_on"] == "val" and first["eval"]["n_val"] == 300
    for key in ("method", "budget_pflops", "pretrain_flops", "steps", "images_seen", "flops_per_image", "wall_minutes"):
        assert first[key] == runs["recs"]["ijepa"][key], key
    with pytest.raises(ValueError, match="scores test only"):
        curves.score(fields, "knn", split="val", results_dir=results, cache_dir=None)


def test_reference_lines_random_init_and_raw_pixels(runs):
    """Random init of the recipe's own encoder (same architecture), and raw pixels by the same probes (all but fine-tuning)."""
    results, recipe = runs["results"], runs["plans"]["ijepa"].recipe
    rand, _ = curves.score(curves.baseline_fields("random-init", recipe), "knn", split="test", results_dir=results,
                           sets=["train_limit=300", "val_limit=200", "ks=[5]"], cache_dir=None)
    assert rand["eval"]["encoder"].startswith("random:vit_tiny") and rand["eval"]["depth"] == 1 and rand["steps"] == 0
    assert rand["selected_on"] == "train-heldout" and rand["reported_on"] == "test" and 0 <= rand["metrics"]["knn"] <= 1
    raw, _ = curves.score(curves.baseline_fields("raw-pixels", None), "logreg", split="val", results_dir=results,
                          sets=["train_limit=300", "val_limit=200"])
    assert raw["eval"]["n_train"] == 300 and raw["eval"]["n_val"] == 200 and raw["reported_on"] == "val" and raw["top1"] > 0.5
    knn, _ = curves.score(curves.baseline_fields("raw-pixels", None), "knn", split="test", results_dir=results,
                          sets=["train_limit=300", "val_limit=200", "ks=[5]"])
    assert knn["eval"]["encoder"] == "raw-pixels" and knn["eval"]["width"] == 784 and knn["metrics"]["knn"] > 0.5
    with pytest.raises(ValueError, match="raw pixels: no encoder to fine-tune"):
        curves.score(curves.baseline_fields("raw-pixels", None), "finetune", split="test", results_dir=results)


def test_scoring_a_run_never_pretrained_is_an_error(runs):
    ij = runs["plans"]["ijepa"].recipe
    other = curves.plan_run(ij, folder=str(runs["tmp"] / "runs"), minutes=0.4, img_per_s=16)
    with pytest.raises(ValueError, match="no curve.pretrain record"):
        curves.pretrained(other, runs["results"])


# -- figures and table from synthetic records ------------------------------------------------

def synthetic(results: Path, *, mae_flops_off: float = 0.0) -> None:
    """Three matched budgets (8x apart) per method, every probe on test, I-JEPA's linear probes on val too, and the reference lines."""
    prov = {"grid": "g.yaml", "val": {"record": "records/recipe_sweep/x.json"}}
    for i, budget in enumerate((0.05, 0.1, 0.4)):
        for method, variant, per_image in (("ijepa", "ij", 1.0e9), ("mae", "ma", 0.5e9)):
            flops = budget * 1e15 * (1 + (mae_flops_off if method == "mae" else 0))
            steps = int(budget * 1e15 / per_image / 64)
            base = {"method": method, "budget_pflops": budget, "budget_minutes": 5 * 2**i, "steps": steps, "images_seen": steps * 64,
                    "flops_per_image": per_image, "pretrain_flops": flops, "wall_minutes": 6.0 * 2**i, "ref_img_per_s": 100.0,
                    "recipe": {**prov, "variant": variant}, "selected_on": "val"}
            run = f"{method}-{variant}-{steps}"
            write_record({"kind": "curve.pretrain", "encoder": run, "piece": {"steps": steps}, **base, "reported_on": "none"}, results_dir=results)
            probes = {"linear": 0.8, "logreg": 0.81, "knn": 0.78, "lowshot": 0.7, "finetune": 0.6}
            for probe, acc in probes.items():
                metrics = ({f"lowshot {f}": acc + 0.01 * k for k, f in enumerate(("1%", "5%", "10%"))} if probe == "lowshot"
                           else {"finetune 1%": acc} if probe == "finetune" else {probe: acc})
                for split in ("val", "test") if method == "ijepa" and probe in ("linear", "logreg") else ("test",):
                    write_record({"kind": "curve.score", "encoder": run, "piece": {"probe": probe, "split": split}, **base, "probe": probe,
                                  "split": split, "probe_sets": [], "top1": next(iter(metrics.values())) + 0.01 * i, "reported_on": split,
                                  "metrics": {k: v + 0.01 * i for k, v in metrics.items()}, "metrics_std": {}}, results_dir=results)
    for method, probe, acc in (("random-init", "linear", 0.75), ("random-init", "knn", 0.6), ("raw-pixels", "logreg", 0.835)):
        for split in ("val", "test") if probe != "knn" else ("test",):
            write_record({"kind": "curve.score", "encoder": method, "piece": {"m": method, "probe": probe, "split": split}, "method": method,
                          "steps": 0, "images_seen": 0, "pretrain_flops": 0.0, "wall_minutes": 0.0, "probe": probe, "split": split,
                          "probe_sets": [], "top1": acc, "metrics": {probe: acc}, "selected_on": "train-heldout", "reported_on": split},
                         results_dir=results)


def test_plots_and_table_from_records(tmp_path):
    synthetic(tmp_path)
    records, skipped = load_records(tmp_path)
    assert not skipped
    table = curve_table(records)
    assert list(table.columns[:9]) == ["method", "recipe (val-chosen)", "budget PFLOPs", "budget (I-JEPA minutes)", "steps", "images seen",
                                        "GFLOPs/image", "measured PFLOPs", "wall minutes"]
    assert list(table.columns[9:]) == ["linear", "logreg", "knn", "lowshot 1%", "lowshot 5%", "lowshot 10%", "finetune 1%",
                                       "linear (val)", "logreg (val)"]
    assert list(table["method"]) == ["I-JEPA"] * 3 + ["MAE"] * 3 + ["random init", "raw pixels"]
    assert table.loc[2, "linear"] == "82.00" and table.loc[5, "GFLOPs/image"] == "0.500" and table.loc[7, "logreg"] == "83.50"
    for out in (plot_compute_curve(tmp_path), plot_learning_curve(tmp_path)):
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "compute_curve.png").exists() and (tmp_path / "learning_curve.png").exists()
    md, _, _ = write_tables(tmp_path)
    text = md.read_text()
    assert "## Learning and compute curves (`curve.score`)" in text
    assert "| I-JEPA | ij | 0.4 | 20 |" in text and "| finetune 1% | linear (val) |" in text


def test_compute_curve_legends_list_every_line_and_cover_no_axes(tmp_path, monkeypatch):
    """Each column's legend sits under the figure's bottom row: a legend inside a panel hid data points."""
    import ijepa.results.curves as rc

    figs, save = [], rc.save_figure
    monkeypatch.setattr(rc, "save_figure", lambda fig, out, **kw: (figs.append(fig), save(fig, out, **kw))[1])
    synthetic(tmp_path)
    plot_compute_curve(tmp_path)
    (fig,) = figs
    fig.canvas.draw()
    top, bottom = fig.axes[: len(fig.axes) // 2], fig.axes[len(fig.axes) // 2:]
    panels = [ax.get_window_extent() for ax in fig.axes]
    for upper, lower in zip(top, bottom, strict=True):
        assert upper.get_legend() is None
        legend = lower.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == upper.get_legend_handles_labels()[1]
        box = legend.get_window_extent()
        assert not any(box.overlaps(panel) for panel in panels), upper.get_title()


def test_coverage_says_what_the_curve_covers(tmp_path):
    """What `ijepa bench curve` prints after its figures: the matched budgets, their span, the
    largest in I-JEPA minutes and the worst FLOPs mismatch of a pair."""
    synthetic(tmp_path)
    recipes = {"ijepa": SimpleNamespace(variant="ij"), "mae": SimpleNamespace(variant="ma")}
    cover = coverage(tmp_path, recipes, "fashion-mnist")
    assert cover["recipes"] == {"ijepa": "ij", "mae": "ma"} and cover["matched_budgets_pflops"] == [0.05, 0.1, 0.4]
    assert cover["span"] == pytest.approx(8) and cover["largest_in_ijepa_minutes"] == 20 and cover["max_flops_rel_diff"] == 0


def test_compute_plot_refuses_budgets_not_matched(tmp_path):
    synthetic(tmp_path, mae_flops_off=0.08)
    with pytest.raises(ValueError, match=r"differ by 8.0% \(more than 5%\)"):
        plot_compute_curve(tmp_path)


def test_plot_asks_which_recipe_when_several(tmp_path):
    synthetic(tmp_path)
    write_record({"kind": "curve.score", "encoder": "ijepa-other-10", "method": "ijepa", "piece": {}, "steps": 10, "images_seen": 640,
                  "pretrain_flops": 1e12, "wall_minutes": 1.0, "ref_img_per_s": 100.0, "recipe": {"variant": "other"}, "probe": "linear",
                  "split": "test", "probe_sets": [], "top1": 0.5, "metrics": {"linear": 0.5}, "reported_on": "test"}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="several recipes"):
        plot_learning_curve(tmp_path)
    assert plot_learning_curve(tmp_path, recipe="ij").exists()


def test_schema_refuses_a_curve_score_out_of_range(tmp_path):
    synthetic(tmp_path)
    write_record({"kind": "curve.score", "encoder": "x", "method": "ijepa", "piece": {}, "steps": 1, "images_seen": 64, "pretrain_flops": 1.0,
                  "wall_minutes": 1.0, "split": "test", "reported_on": "test", "top1": 0.5, "metrics": {"linear": 85.0}}, results_dir=tmp_path)
    _, skipped = load_records(tmp_path)
    assert len(skipped) == 1 and "metrics: expected a mapping of probe -> top-1 fraction" in skipped[0][1]


def test_random_init_line_is_the_recipes_own_init(tmp_path):
    """The reference line is the recipe's encoder as its training starts: init and patch std too."""
    from ijepa.evals.core.encoders import build_encoder
    from ijepa.training.step import encoder_from_config

    grid, results = sweep(tmp_path)
    ij = curves.read_recipe(f"{grid}:ij", results_dir=results, extra=[*TINY, "meta.init=rescaled"])
    enc, name, _ = build_encoder(curves.encoder_of(curves.baseline_fields("random-init", ij)))
    cfg = ij.config()
    torch.manual_seed(cfg.meta.seed)
    ref = encoder_from_config(cfg)
    assert name.endswith("-pe0.14-rescaled")
    assert enc.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v), k
