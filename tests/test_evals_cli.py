"""The eval command-line contract (`--json`, records, clear errors) and `ijepa results`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.imagefolder import corrupt, write_imagefolder
from typer.testing import CliRunner

from ijepa.data.fashion_mnist import DEFAULT_ROOT
from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.entries.linear import LinearSpec
from ijepa.evals.linear import run_linear
from ijepa.results.io import write_record

SHAPE_SPEC = EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=3)
SHAPE = ["--random-init", "vit_tiny", "--depth", "1", "--patch-size", "8", "--in-chans", "3", "--device", "cpu"]


ROOT = Path(__file__).resolve().parents[1]


def cli(args: list[str]):
    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    import ijepa.cli.results  # noqa: F401
    from ijepa.cli import app

    return CliRunner().invoke(app, args)


def all_evals():
    from ijepa.evals import registry

    return [registry.get(n) for n in registry.names()]


@pytest.mark.parametrize("entry", all_evals(), ids=lambda e: e.name)
def test_every_registered_eval_runs_its_fixture_through_the_cli(entry, tmp_path, monkeypatch):
    """Generated from the registry: each eval's command runs on its tiny fixture, `--json`."""
    import importlib

    monkeypatch.chdir(tmp_path)
    module, fn = entry.fixture.make.rsplit(".", 1)
    root = getattr(importlib.import_module(f"fixtures.{module}"), fn)(tmp_path / "data")
    res = cli(["eval", entry.name, *entry.fixture.args, "--data", str(root), "--results", str(tmp_path / "results"), "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert rec["kind"] == entry.kind and rec["headline"] == entry.headline and rec["unit"] == entry.unit
    assert isinstance(rec[entry.headline], float) and (entry.unit != "fraction" or 0 <= rec[entry.headline] <= 1)
    from ijepa.results.schema import validate

    assert validate(json.loads(Path(rec["record"]).read_text())) is None and entry.rows(rec)
    res = cli(["eval", entry.name, "--help"])
    assert res.exit_code == 0 and "Example:" in res.output and "--eval-limit" in res.output and "--set" in res.output


def test_eval_help_lists_every_registered_eval_without_importing_any():
    """`ijepa eval --help` reads names and summaries from the sources (registry.listing), in a fresh process."""
    import os
    import subprocess
    import sys

    from ijepa.evals import registry

    assert registry.listing() == {n: registry.get(n).summary for n in registry.names()}
    code = ("import sys\nfrom ijepa.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('ijepa.evals.') or m == 'torch'))")
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, "eval", "--help"], capture_output=True, text=True, env=env, check=True).stdout
    assert out.splitlines()[-1] == "['ijepa.evals.entries', 'ijepa.evals.registry']"  # the package, none of its entries
    assert all(f"{name} " in out and summary in out for name, summary in registry.listing().items())


def test_help_and_wrong_options_answer_before_torch_is_imported():
    """In a fresh process: every eval's --help, an unknown option, a wrong value, a wrong --set
    key, a missing recipe, and export's wrong --format all answer (exit 0 or 2) with torch
    never imported, so in well under a second (they took 7-11 s when the evals' modules were
    imported to build their commands, and the checks came after the torch imports)."""
    import os
    import subprocess
    import sys

    from ijepa.evals import registry

    argvs = [["eval", name, "--help"] for name in registry.listing()] + [
        ["eval", "linear", "--bogus"], ["eval", "knn", "--random-init", "vit_tiny", "--ks", "abc"],
        ["eval", "linear", "--random-init", "vit_tiny", "--set", "grid.nope=1"], ["eval", "lowshot", "-c", "nope"],
        ["eval", "depth", "--random-init", "vit_tiny", "--data", "x", "--taps", "a"], ["export", "x", "--format", "onnx", "--out", "y"],
        ["--help"], ["pretrain", "--help"], ["results", "plot", "--help"], ["decoder", "train", "--help"], ["explore", "--help"],
    ]
    code = ("import json, sys\nfrom ijepa.cli import main\ncodes = []\n"
            f"for argv in {argvs!r}:\n    sys.argv = ['ijepa', *argv]\n"
            "    try:\n        main()\n    except SystemExit as e:\n        codes.append(e.code or 0)\n"
            "print(json.dumps([codes, 'torch' in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    codes, torch_imported = json.loads(out.stdout.splitlines()[-1])
    assert codes == [0] * len(registry.listing()) + [2] * 6 + [0] * 5, out.stderr
    assert not torch_imported


@pytest.mark.parametrize("path", sorted((ROOT / "ijepa" / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    """Every recipe in ijepa/recipes/ is a valid spec of the eval its name starts with."""
    from ijepa.evals import registry
    from ijepa.typedconfig import load

    entry = registry.get(path.stem.split("_")[0])
    spec = load(entry.spec, path)
    assert isinstance(spec, entry.spec)


def test_recipes_are_shipped_by_name_like_configs(tmp_path, monkeypatch):
    """`-c linear_fmnist` (the help's own example) from a folder outside the clone: recipes are
    package data, found by name; the clone's `evals/NAME.yaml` paths lead to the same files."""
    import tomllib

    from ijepa.evals.registry import RECIPES, find_recipe

    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "missing")
    res = cli(["eval", "linear", "-c", "linear_fmnist", *SHAPE, "--data", missing, "--results", str(tmp_path)])
    assert res.exit_code == 2 and "recipe not found" not in res.output and missing in res.output, res.output
    res = cli(["eval", "linear", "-c", "linear_fmnis", *SHAPE])
    assert res.exit_code == 2 and "linear_fmnis: recipe not found, nor a shipped recipe of linear (linear_fmnist, " in res.output
    (tmp_path / "linear_fmnist.yaml").write_text("seed: 1\n")
    assert find_recipe("linear_fmnist.yaml", "linear") == Path("linear_fmnist.yaml")  # a file of the folder first
    shipped = sorted(RECIPES.glob("*.yaml"))
    assert shipped and all((ROOT / "evals" / p.name).resolve() == p.resolve() for p in shipped)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ijepa"]
    assert "recipes/*.yaml" in package_data


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("if"))


def test_linear_json_contract(tmp_path, tree, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli(["eval", "linear", *SHAPE, "--data", str(tree), "--epochs", "3", "--batch-size", "16", "--lrs", "0.1,1", "--json"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    rec = json.loads(lines[-1])
    assert 0 <= rec["top1"] <= 1 and 0 <= rec["top5"] <= 1 and rec["kind"] == "eval.linear"
    assert rec["grid"]["feature_sets"] == ["lastPOOL"]  # depth 1: both sets are the one block's pool, fitted once
    assert rec["grid"]["lrs"] == [0.1, 1.0] and len(rec["heads"]) == 1 * 2 * len(rec["lrs_searched"]) * 2  # grown past an edge
    assert Path(rec["record"]).exists() and json.loads(Path(rec["record"]).read_text())["top1"] == rec["top1"]
    assert list((tmp_path / ".cache" / "features").glob("*.pt"))  # default cache, relative to the working dir


def test_linear_logreg_protocol(tmp_path, tree, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli(["eval", "linear", *SHAPE, "--data", str(tree), "--protocol", "logreg", "--cs", "0.1,1", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert rec["protocol"] == "sklearn-logreg" and len(rec["candidates"]) == 1 * 2 and 0 <= rec["top1"] <= 1  # depth 1: one feature set
    assert rec["best_head"] == f"{rec['best_features']}/logreg/C{rec['best_C']:g}"
    res = cli(["eval", "linear", *SHAPE, "--data", str(tree), "--protocol", "svm"])
    assert res.exit_code == 2 and "protocol is 'svm'; expected 'grid' or 'logreg'" in res.output


def test_recipe_file_and_context_encoder(tmp_path, tree, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(f"data: {tree}\ngrid:\n  epochs: 2\n  lrs: [0.5]\n  feature_sets: [lastPOOL]\n")
    res = cli(["eval", "linear", *SHAPE, "--config", "r.yaml", "--which", "context", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert rec["grid"]["epochs"] == 2 and rec["best_features"] == "lastPOOL" and len(rec["heads"]) == 4
    (tmp_path / "bad.yaml").write_text("grid:\n  epoch: 2\n")
    res = cli(["eval", "linear", *SHAPE, "--config", "bad.yaml"])
    assert res.exit_code == 2 and "bad.yaml: unknown key(s) grid.epoch" in res.output


def test_knn_and_lowshot_json(tmp_path, tree, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli(["eval", "knn", *SHAPE, "--data", str(tree), "--ks", "1,3", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert rec["best_k"] in (1, 3) and rec["reported_on"] == "val" and "val_top1" in rec["scores"][0] and rec["n_val"] > 4
    res = cli(["eval", "knn", *SHAPE, "--data", str(tree), "--ks", "1", "--eval-limit", "4"])
    assert res.exit_code == 0 and "top-1 (val)" in res.stdout and "train / val images" in res.stdout, res.output
    res = cli(["eval", "lowshot", *SHAPE, "--data", str(tree), "--fractions", "0.25", "--seeds", "0,1", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert rec["seeds"] == [0, 1] and 0 <= rec["top1"] <= 1 and "top1_std" in rec


def test_corrupt_image_fails_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_imagefolder(tmp_path / "if", per_class={"train": 2, "val": 2})
    bad = corrupt(root, "val")
    res = cli(["eval", "linear", *SHAPE, "--data", str(root), "--no-cache"])
    assert res.exit_code == 2 and str(bad) in res.output and "unreadable image" in res.output
    with pytest.raises(ValueError, match=f"^{bad}: unreadable image"):  # one line, also through a worker process
        run_linear(SHAPE_SPEC, LinearSpec(data=str(root), workers=1), cache_dir=None)
    res = cli(["eval", "linear", "--data", str(root)])
    assert res.exit_code == 2 and "--encoder PATH, --random-init ARCH or --raw-pixels" in res.output


def test_results_tables_group_ours_beside_the_paper(tmp_path):
    write_record({"kind": "eval.linear", "encoder": "runs/x:target_encoder", "dataset": "fashion-mnist", "protocol": "linear-grid",
                  "top1": 0.8123, "best_head": "lastPOOL/bn/lr0.1/wd0"}, results_dir=tmp_path)
    write_record({"kind": "eval.lowshot", "encoder": "runs/x:target_encoder", "dataset": "fashion-mnist", "protocol": "logreg",
                  "top1": 0.7, "fractions": {"0.01": {"top1": 0.7, "top1_std": 0.01, "seeds": [{"n_labelled": 600}] * 3}}},
                 results_dir=tmp_path)
    res = cli(["results", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "README.md").read_text()
    assert "## Linear probe (`eval.linear`)" in md and "| 81.23 |" in md and "70.00 ± 1.00" in md
    assert "| I-JEPA ViT-H/14 | 300 | imagenet-1k | top1 | 79.3 | I-JEPA paper (arXiv 2301.08243), Table 1 |" in md
    assert "| MAE ViT-L/16 |  | imagenet-1k (1% labels) | top1 | 67.1 | I-JEPA paper (arXiv 2301.08243), Table 2 |" in md
    import pandas as pd

    csv = pd.read_csv(tmp_path / "summary.csv")
    assert set(csv["source"].str.startswith("I-JEPA paper")) == {True, False}
    assert csv.loc[csv["source"] == "ours", "value"].round(2).tolist()[:1] == [81.23]
    res = cli(["results", "plot", "--results", str(tmp_path)])  # no pretrain.compute records yet
    assert res.exit_code == 2 and "no pretrain.compute" in res.output and not (tmp_path / "compute_vs_accuracy.png").exists()


MALFORMED = [  # (command, recipe text, what the one line must say after "<file>: ")
    ("linear", "data: [unclosed\n", "invalid YAML at line 2, column 1"),
    ("linear", "- a\n- b\n", "expected a mapping of options, got list"),
    ("linear", "grid: 5\n", "grid is 5; expected a mapping"),
    ("linear", "grid:\n  lrs: 0.1\n", "grid.lrs is 0.1; expected list of float"),
    ("linear", "grid:\n  epochs: 3\nseed: 1e-4\n", "seed is '1e-4'; expected int"),
    ("knn", "seed: abc\n", "seed is 'abc'; expected int"),
    ("lowshot", "finetune:\n  crop_scale: [0.3]\n", "finetune.crop_scale is [0.3]; expected [float, float]"),
    ("lowshot", "fractions: abc\n", "fractions is 'abc'; expected list of float"),
    ("depth", "max_iters: [1\n", "invalid YAML at line 2, column 1"),
    ("depth", "7\n", "expected a mapping of options, got int"),
    ("depth", "taps: 3\n", "taps is 3; expected list of int or null"),
    ("segmentation", "scale_range: 2\n", "scale_range is 2; expected [float, float]"),
    ("segmentation", "max_iters: ten\n", "max_iters is 'ten'; expected int"),
    ("knn", "temperature: 0\n", "temperature is 0; expected a number > 0"),
    ("linear", "grid:\n  lrs: [0.1, -1]\n", "grid.lrs is [0.1, -1]; expected a non-empty list, each a number > 0"),
    ("linear", "grid:\n  epoch: 2\n", "unknown key(s) grid.epoch (did you mean grid.epochs?)"),
    ("knn", "heldout: .nan\n", "heldout is nan; expected a finite number"),
]


@pytest.mark.parametrize(("command", "text", "said"), MALFORMED)
def test_malformed_recipe_is_one_line_naming_the_file(tmp_path, monkeypatch, command, text, said):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(text)
    res = cli(["eval", command, *SHAPE, "--config", "r.yaml", "--data", str(tmp_path / "missing")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and lines == [lines[0]] and lines[0].startswith(f"error: r.yaml: {said}"), res.output


def test_non_utf8_recipe_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_bytes(b"\xff\xfe data")
    res = cli(["eval", "linear", *SHAPE, "--config", "r.yaml"])
    assert res.exit_code == 2 and res.output.strip() == "error: r.yaml: invalid YAML (not UTF-8 text); expected a mapping of options"


def test_lr_in_exponent_form_is_a_number_everywhere(tmp_path):
    """YAML 1.1 reads `1e-4` as a string; every recipe field typed float takes it."""
    from ijepa.evals.depth import DepthRun
    from ijepa.evals.linear import LinearSpec
    from ijepa.typedconfig import load

    (tmp_path / "r.yaml").write_text("lr: 1e-4\n")
    assert load(DepthRun, tmp_path / "r.yaml").lr == 1e-4
    (tmp_path / "g.yaml").write_text("grid:\n  lrs: [1e-4, 0.1]\n")
    assert load(LinearSpec, tmp_path / "g.yaml").grid.lrs == (1e-4, 0.1)
    assert load(LinearSpec, overrides=["grid.epochs=3", "cs=[0.1, 1]"]).grid.epochs == 3


def test_cuda_without_a_gpu_is_one_line(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = cli(["eval", "knn", "--random-init", "vit_tiny", "--device", "cuda", "--data", str(tmp_path)])
    assert res.exit_code == 2 and res.output.strip() == "error: --device cuda: CUDA is not available on this machine; use --device cpu or auto"


def test_version():
    from ijepa import __version__

    res = cli(["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"ijepa {__version__}"


@pytest.mark.skipif(not (DEFAULT_ROOT / "train-labels-idx1-ubyte.gz").exists(), reason="Debian's Fashion-MNIST not installed")
def test_raw_pixels_are_scored_by_the_pooled_feature_evals_and_refused_by_the_others(tmp_path, monkeypatch):
    """`--raw-pixels`: the pixels / 255 are the features of every pooled-feature probe (the
    tables' baseline row by the same heads); evals that need an encoder refuse it in one line."""
    from ijepa.data import build_dataset, data_spec
    from ijepa.evals.core.features import pixel_features

    monkeypatch.chdir(tmp_path)
    rows = torch.tensor([3, 1, 4, 1000])
    feats, side = pixel_features(data_spec("fashion-mnist"), "val", indices=rows)
    images = build_dataset("fashion-mnist", "val").images[rows]
    assert torch.equal(feats.get("lastPOOL"), images.flatten(1).float() / 255) and torch.equal(feats.get("concatPOOL4"), feats.get("lastPOOL"))
    assert side == 28 and feats.distinct(("lastPOOL", "concatPOOL4")) == ("lastPOOL",)
    limits = ["--data", "fashion-mnist", "--train-limit", "1000", "--eval-limit", "300", "--results", str(tmp_path), "--json"]
    res = cli(["eval", "knn", "--raw-pixels", *limits, "--ks", "5"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert rec["encoder"] == "raw-pixels" and rec["width"] == 784 and rec["img_size"] == 28 and rec["depth"] == 0
    assert rec["preprocessing"] == "raw pixels / 255" and rec["n_train"] == 1000 and 0.6 < rec["top1"] <= 1
    assert {r["features"] for r in rec["scores"]} == {"lastPOOL"}  # one input, so one set of neighbours, not the same twice
    for refused in (["eval", "attentive", "--raw-pixels", *limits], ["eval", "lowshot", "--raw-pixels", "--protocol", "finetune", *limits],
                    ["eval", "linear", "--raw-pixels", "--random-init", "vit_tiny", *limits]):
        res = cli(refused)
        assert res.exit_code == 2 and "raw-pixels" in res.output and "Traceback" not in res.output, (refused, res.output)
    root = write_imagefolder(tmp_path / "if", per_class={"train": 2, "val": 2})
    res = cli(["eval", "knn", "--raw-pixels", "--data", str(root), "--results", str(tmp_path)])
    assert res.exit_code == 2 and "image folder" in res.output


# -- every option held to its declared meaning before any work (issue 42, item 2; issue 41) --------
OUT_OF_RANGE = [  # (command and options, the one line after "error: ")
    (["knn", "--temperature", "0"], "--temperature is 0; expected a number > 0"),
    (["knn", "--temperature", "-1"], "--temperature is -1; expected a number > 0"),
    (["knn", "--heldout", "1.0"], "--heldout is 1.0; expected a number in (0, 1)"),
    (["knn", "--heldout", "0"], "--heldout is 0; expected a number in (0, 1)"),
    (["knn", "--eval-limit", "0"], "--eval-limit is 0; expected a number of rows >= 1 or a fraction in (0, 1)"),
    (["knn", "--feature-batch-size", "0"], "--feature-batch-size is 0; expected a number >= 1"),
    (["knn", "--feature-batch-size", "-4"], "--feature-batch-size is -4; expected a number >= 1"),
    (["knn", "--img-size", "30"], "--img-size is 30; expected a multiple of the encoder's patch size 8 (the last 6 px would be dropped)"),
    (["linear", "--lrs", "-0.1"], "--lrs is [-0.1]; expected a non-empty list, each a number > 0"),
    (["linear", "--lrs", "0"], "--lrs is [0]; expected a non-empty list, each a number > 0"),
    (["linear", "--wds", "-1"], "--wds is [-1]; expected a non-empty list, each a number >= 0"),
    (["linear", "--batch-size", "0"], "--batch-size is 0; expected a number >= 1"),
    (["linear", "--train-limit", "2"], "--train-limit is 2; expected an image of every class (2 rows leave 2 of 4 classes without an image)"),
    (["linear", "--protocol", "logreg", "--cs", "0"], "--cs is [0]; expected a non-empty list, each a number > 0"),
    (["linear", "--protocol", "logreg", "--cs", "-1"], "--cs is [-1]; expected a non-empty list, each a number > 0"),
    (["lowshot", "--fractions", "0"], "--fractions is [0]; expected a non-empty list, each a number in (0, 1]"),
    (["lowshot", "--fractions", "1.5"], "--fractions is [1.5]; expected a non-empty list, each a number in (0, 1]"),
    (["attentive", "--lrs", "-1"], "--lrs is [-1]; expected a non-empty list, each a number > 0"),
    (["depth", "--set", "max_depth=-1"], "--set: max_depth is -1; expected a number > 0"),
    (["depth", "--max-depth", "0.0001"], "--max-depth is 0.0001; expected a depth above min_depth 0.001"),
    (["knn", "--set", "eval_limit=3"], "--set: unknown key(s) eval_limit (did you mean val_limit?); expected some of data, val_limit,"),
    (["linear", "--set", "lrs=0.1"], "--set: unknown key(s) lrs (did you mean grid.lrs?); expected some of data,"),
]


@pytest.mark.parametrize(("args", "said"), OUT_OF_RANGE, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_options_outside_their_meaning_are_one_line_naming_the_option_as_typed(tmp_path, tree, monkeypatch, args, said):
    """Each was a number with exit 0 (a chance-level k-NN, a held-out top-1 of 1.0, a grid row
    trained at a negative lr), a traceback, or a message naming the internal key (`val_limit`)."""
    monkeypatch.chdir(tmp_path)
    res = cli(["eval", *args, *SHAPE, "--data", str(tree), "--results", str(tmp_path / "results")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {said}"), res.output
    assert not (tmp_path / "results").exists()


def test_a_check_across_fields_sees_every_layer():
    """max_depth above min_depth: raised by the options alone (min 20 against the default max 10)
    it would refuse what `--set` completes; checked once, on the loaded spec."""
    from ijepa.evals.depth import DepthRun
    from ijepa.typedconfig import OptionError, load

    run = load(DepthRun, values={"min_depth": 20}, names={"min_depth": "--min-depth"}, overrides=["max_depth=30"])
    assert (run.min_depth, run.max_depth) == (20, 30)
    with pytest.raises(OptionError, match=r"^--max-depth is 5.0; expected a depth above min_depth 20$"):
        load(DepthRun, values={"max_depth": 5}, names={"max_depth": "--max-depth"}, overrides=["min_depth=20"])


def test_decoder_options_go_through_the_same_checks():
    import ijepa.cli.decoder  # noqa: F401  (registers the command)
    from ijepa.cli import app

    res = CliRunner().invoke(app, ["decoder", "train", "/nonexistent/run", "--batch-size", "0"])
    assert res.exit_code == 2 and res.output.strip() == "error: --batch-size is 0; expected a number >= 1", res.output


@pytest.mark.parametrize("entry", all_evals(), ids=lambda e: e.name)
def test_every_number_of_every_spec_declares_its_meaning(entry):
    """The one place: each numeric option of each eval says its range (`typedconfig.checked`),
    and its default lies in it. A new option without one fails here, not in a user's record."""
    import dataclasses
    from typing import get_type_hints

    from ijepa import typedconfig

    def numbers(cls, obj, prefix=""):
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from numbers(hints[f.name], getattr(obj, f.name), f"{prefix}{f.name}.")
            elif {"int", "float"} & set(typedconfig.describe(hints[f.name]).replace(",", " ").split()) and f.name not in FREE:
                yield prefix + f.name, f, getattr(obj, f.name)

    found = list(numbers(entry.spec, entry.spec()))
    assert found
    for key, f, default in found:
        assert "check" in f.metadata, f"{entry.name}: {key} declares no range"
        typedconfig.check_field(f, default, key=key, where="default")


FREE = ("seed", "seeds", "taps")  # any whole number means something (taps: negative counts from the last block)
