"""What the results views show: `ijepa results plot` and the tables keep datasets, probes and
subsets apart, name the split and the limits of every number, and `make demo` writes none of
the committed results."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_writes_only_git_ignored_paths():
    """Every demo command that writes records or tables names a `--results` folder git ignores
    (the default `results/` holds the committed README.md and summary.csv)."""
    out = subprocess.run(["make", "-n", "-B", "demo"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    commands = [shlex.split(line) for line in out.splitlines() if re.match(r"\S*/bin/ijepa ", line)]
    assert {c[1] for c in commands} == {"pretrain", "eval", "results"}
    for words in commands:
        assert "--results" in words, f"{' '.join(words)}: writes under the committed results/"
        folder = words[words.index("--results") + 1]
        ignored = subprocess.run(["git", "check-ignore", "-q", f"{folder}/README.md"], cwd=ROOT)
        assert ignored.returncode == 0, f"{' '.join(words)}: {folder} is not ignored by git"


def _linear(results, encoder, top1, **extra):
    from ijepa.results.io import write_record

    write_record({"kind": "eval.linear", "encoder": encoder, "protocol": "linear-grid", "top1": top1,
                  "selected_on": "train-heldout", "reported_on": "test", **extra}, results_dir=results)


def test_results_plot_keeps_datasets_probes_and_subsets_apart(tmp_path):
    """A run on a user's folder never joins the Fashion-MNIST line, a floor only stands under
    its own dataset and probe, the probe and split are named, and both axes carry tick labels
    although the runs lie within one decade (they once had none)."""
    from ijepa.results.io import read_records, write_record
    from ijepa.results.plots import Setting, compute_panels, draw_compute

    for run, minutes in (("fm", 12), ("fm2", 18), ("own", 15)):
        write_record({"kind": "pretrain.compute", "encoder": run, "run": run, "method": "ijepa",
                      "pretrain_flops": minutes * 4e12, "pretrain_wall_s": minutes * 60.0}, results_dir=tmp_path)
    _linear(tmp_path, "fm:target_encoder", 0.79)  # before `dataset` was recorded: Fashion-MNIST
    _linear(tmp_path, "fm2:target_encoder", 0.81, dataset="fashion-mnist")
    _linear(tmp_path, "fm2:target_encoder", 0.84, dataset="fashion-mnist", protocol="sklearn-logreg")
    _linear(tmp_path, "fm2:target_encoder", 0.70, dataset="fashion-mnist", train_limit=2000)
    _linear(tmp_path, "own:target_encoder", 0.23, dataset="imagefolder:/data/mine")
    _linear(tmp_path, "random:vit_tiny-a", 0.75, dataset="fashion-mnist")
    _linear(tmp_path, "random:vit_tiny-a", 0.80, dataset="fashion-mnist", protocol="sklearn-logreg")
    _linear(tmp_path, "random:vit_tiny-b", 0.20, dataset="imagefolder:/data/mine")
    panels = compute_panels(read_records(tmp_path))
    grid, folder = Setting("fashion-mnist", "linear-grid", "all images", "test"), Setting("imagefolder:/data/mine", "linear-grid", "all images", "test")
    got = {s: (sorted(p["run"] for p in panel.points), panel.floors) for s, panel in panels.items()}
    assert got == {grid: (["fm", "fm2"], [75.0]), folder: (["own"], [20.0]),
                   Setting("fashion-mnist", "sklearn-logreg", "all images", "test"): (["fm2"], [80.0]),
                   Setting("fashion-mnist", "linear-grid", "train 2000", "test"): (["fm2"], [])}
    fig = draw_compute(panels)
    fig.canvas.draw()
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert "fashion-mnist: linear probe by logistic regression, test top-1" in titles
    assert "fashion-mnist: linear probe by linear head grid, test top-1, on a subset (train 2000)" in titles
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
        assert len(labels) >= 2, (ax.get_xlabel(), labels)
    assert {ax.get_xlabel() for ax in fig.axes} == {"pretraining GFLOPs", "pretraining wall time (min)"}


def test_tables_head_each_dataset_and_mark_subsets(tmp_path):
    """Each dataset under its own heading, the paper's ImageNet rows under theirs; a number on
    part of a split is "top1 (subset)", never a plain "top1"."""
    from ijepa.results.readme import write_tables

    _linear(tmp_path, "a:target_encoder", 0.80, dataset="fashion-mnist")
    _linear(tmp_path, "a:target_encoder", 0.70, dataset="fashion-mnist", val_limit=1000)
    _linear(tmp_path, "b:target_encoder", 0.23, dataset="imagefolder:/data/mine")
    md = (write_tables(tmp_path)[0]).read_text()
    linear = md.split("## Linear probe")[1].split("\n## ")[0]
    fm, rest = linear.split("### Ours: fashion-mnist")[1].split("### Ours: imagefolder:/data/mine")
    folder, paper = rest.split("### Paper reference (ImageNet-1k")
    assert "| top1 | top1 (subset) |" in fm and "| 80.00 |  |" in fm and "|  | 70.00 |" in fm and "23.00" not in fm
    assert "23.00" in folder and "imagenet-1k" not in folder and "| I-JEPA ViT-H/14 | 300 | imagenet-1k |" in paper


def test_linear_rows_and_passes_say_which_head_and_split(capsys):
    """The refit head's top-1 beside the search's best per feature set: each label says which
    head and which split; the two head passes (search, refit) are labelled; a subset is named."""
    import io

    import torch
    from rich.console import Console

    from ijepa.cli.evals import limits_note
    from ijepa.evals.core.features import Features
    from ijepa.evals.core.fit import GridConfig, fit_grid
    from ijepa.evals.entries.linear import rows

    rec = {"protocol": "linear-grid", "reported_on": "test", "top1": 0.799, "top5": 0.99, "heldout_top1": 0.81,
           "best_head": "concatPOOL4/bn/lr0.1/wd0", "best_by_features": {"concatPOOL4": {"top1": 0.796}}, "refit_rows": 50000,
           "n_train": 50000, "n_test": 10000, "wall_s": 1.0}
    labels = dict(rows(rec))
    assert labels["top-1 (test, chosen head refit on all 50000 train)"] == "79.90%"
    assert labels["best concatPOOL4 head: top-1 (test, before refit)"] == "79.60%"
    assert limits_note({"train_limit": 2000, "val_limit": None}) == ", on a subset (--train-limit 2000)" and limits_note({}) == ""
    y = torch.arange(200) % 4
    feats = Features(torch.randn(200, 8) + y[:, None].float(), y, 8)
    out = io.StringIO()
    cfg = GridConfig(feature_sets=("lastPOOL",), norms=("linear",), lrs=(0.1,), wds=(0.0,), epochs=1, min_steps=0)
    fit_grid(cfg, feats, {"val": feats}, num_classes=4, device=torch.device("cpu"), console=Console(file=out, width=200))
    text = out.getvalue()
    assert "heads: search 1, 1 heads on 180 train rows (20 held out)" in text
    assert "heads: refit of the chosen lastPOOL/linear/lr0.1/wd0 on all 200 train rows" in text
