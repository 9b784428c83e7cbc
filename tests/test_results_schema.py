"""Records follow one schema: invalid ones are named and skipped, records are strict JSON and
carry what reproduces them, tables keep settings apart and read units from the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ijepa.results.io import load_records, write_record
from ijepa.results.readme import write_tables
from ijepa.results.schema import validate


def cli(args: list[str]):
    import ijepa.cli.results  # noqa: F401
    from ijepa.cli import app

    return CliRunner().invoke(app, args)


GOOD = {"kind": "eval.knn", "created": "2026-01-01T00:00:00+00:00", "encoder": "x", "dataset": "d", "top1": 0.5}


@pytest.mark.parametrize(("rec", "said"), [
    ([1, 2], "expected a JSON object, got a JSON list"),
    ({**GOOD, "top1": "high"}, "top1 is 'high'; expected a finite number"),
    ({**GOOD, "top1": 81.2}, "top1 is 81.2; expected a fraction in [0, 1]"),
    ({**GOOD, "encoder": None}, "encoder is None; expected a string"),
    ({**GOOD, "kind": "eval.new"}, "kind 'eval.new' declares no headline"),
    ({**GOOD, "kind": "eval.lowshot", "fractions": {"0.01": {"top1": 0.5}}}, "fractions[0.01]: expected top1, top1_std"),
    ({**GOOD, "world_size": 0}, "world_size is 0; expected a whole number >= 1"),
    ({**GOOD, "feature_dtype": "float16"}, "feature_dtype is 'float16'; expected one of float32, bfloat16"),
])
def test_invalid_records_are_named(rec, said):
    assert validate(rec).startswith(said)
    assert validate(GOOD) is None and validate({**GOOD, "kind": "eval.new", "headline": "mae", "unit": "value", "mae": 3.0}) is None
    assert validate({**GOOD, "world_size": 2, "feature_dtype": "bfloat16"}) is None


def test_invalid_record_is_skipped_loudly(tmp_path):
    write_record(GOOD | {"top1": 0.8}, results_dir=tmp_path)
    bad = tmp_path / "records" / "eval.knn" / "bad.json"
    bad.write_text(json.dumps({**GOOD, "top1": "high"}))
    (tmp_path / "records" / "eval.knn" / "inf.json").write_text('{"kind": "eval.knn", "top1": -Infinity}')
    records, skipped = load_records(tmp_path)
    assert len(records) == 1 and dict(skipped) == {"records/eval.knn/bad.json": "top1 is 'high'; expected a finite number",
                                                   "records/eval.knn/inf.json": "not valid JSON (-Infinity is not JSON)"}
    res = cli(["results", "--results", str(tmp_path)])
    assert res.exit_code == 0 and "skipped records/eval.knn/bad.json: top1 is 'high'" in res.output
    assert "| 80.00 |" in (tmp_path / "README.md").read_text()


def test_records_are_strict_json_with_provenance(tmp_path):
    path = write_record({**GOOD, "cv_top1": float("-inf"), "nested": [float("nan")]}, results_dir=tmp_path)
    text = path.read_text()
    rec = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a record"))
    assert rec["cv_top1"] is None and rec["nested"] == [None]
    assert {"torch", "timm", "ijepa"} <= set(rec["versions"]) and rec["versions"]["torch"]
    assert isinstance(rec["command"], list) and rec["code_version"].startswith(("git:", "ijepa=="))


def test_records_name_the_commit_the_process_started_from(tmp_path, monkeypatch):
    """A commit made while a long run goes on must not be credited with the run's record."""
    import subprocess

    import ijepa

    assert ijepa.COMMIT_AT_START == (subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                                    cwd=Path(ijepa.__file__).parent).stdout.strip() or None)
    monkeypatch.setattr(ijepa, "COMMIT_AT_START", "0ld5tar")  # HEAD has moved on since the process started
    rec = json.loads(write_record(dict(GOOD), results_dir=tmp_path).read_text())
    assert (rec["git_commit"], rec["code_version"]) == ("0ld5tar", "git:0ld5tar")


def test_tables_keep_settings_apart_and_order_fractions(tmp_path):
    base = {"kind": "eval.linear", "encoder": "run:target_encoder", "dataset": "fashion-mnist", "protocol": "linear-grid",
            "selected_on": "train-heldout", "reported_on": "test"}
    write_record({**base, "top1": 0.7423, "encoder_key": "aaaaaaaaaaaaaaaa-target_encoder"}, results_dir=tmp_path)
    write_record({**base, "top1": 0.75, "encoder_key": "bbbbbbbbbbbbbbbb-target_encoder"}, results_dir=tmp_path)  # another checkpoint
    write_record({**base, "top1": 0.6, "encoder_key": "bbbbbbbbbbbbbbbb-target_encoder", "val_limit": 1000}, results_dir=tmp_path)
    fr = {f: {"top1": v, "top1_std": 0.0, "seeds": [{"n_labelled": 5}]} for f, v in (("0.1", 0.9), ("0.01", 0.7), ("0.05", 0.8))}
    write_record({**base, "kind": "eval.lowshot", "top1": 0.7, "fractions": fr}, results_dir=tmp_path)
    write_record({"kind": "eval.segmentation", "encoder": "e", "dataset": "ade", "miou": 0.25, "headline": "miou", "unit": "fraction"},
                 results_dir=tmp_path)
    md = (tmp_path / "README.md") if write_tables(tmp_path) else None
    text = md.read_text()
    assert "| aaaaaaaa |" in text and "| bbbbbbbb |" in text and "| 74.23 |" in text and "| 75.00 |" in text and "| 60.00 |" in text
    header = next(ln for ln in text.splitlines() if "top1@1%" in ln)
    assert header.index("top1@1%") < header.index("top1@5%") < header.index("top1@10%")
    assert "| 25.00 |" in text  # mIoU is a fraction: shown in %
    assert "| 1000 |" in text and "1000.0" not in text  # a subset of images is a count, beside rows without one
    csv = (tmp_path / "summary.csv").read_text()
    assert "74.23," in csv and "74.2299" not in csv


def test_plot_reads_the_results_folder_given_to_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "elsewhere"
    write_record(GOOD, results_dir=other)
    res = cli(["results", "--results", str(other), "plot"])
    assert res.exit_code == 2 and f"{other}/records: no pretrain.compute" in res.output
    assert not Path("results").exists()


def test_the_gpu_checks_records_are_tabled_not_skipped(tmp_path):
    """benchmarks/gpu_check.sh writes these kinds; `ijepa results` must not call them invalid."""
    for kind, extra in (("bench.eval_speed", {"img_per_s": 1502.0}), ("bench.gpu_pretrain", {"img_per_s": 46.0}),
                        ("bench.gpu_check", {"records": [], "steps": []}),
                        ("bench.feature_dtype", {"headline": "delta_points", "unit": "value", "delta_points": -0.04})):
        write_record({"kind": kind, "encoder": "x", "device": "cuda", **extra}, results_dir=tmp_path)
    _, _, skipped = write_tables(tmp_path)
    assert skipped == []
    assert "| 1502.00 |" in (tmp_path / "README.md").read_text()



def test_the_sweep_has_its_own_table_of_both_probes_in_run_order(tmp_path):
    base = {"kind": "recipe_sweep", "dataset": "fashion-mnist", "overrides": []}
    write_record({**base, "encoder": "r9_b", "method": "mae", "selected_on": "val", "reported_on": "val", "steps": 694,
                  "pretrain_pflops": 0.026384, "pretrain_minutes": 5.66, "probe_best": 0.8232, "grid_val_top1": 0.8289,
                  "rankme_end": 20.8, "created": "2026-12-03T22:46:22+00:00"}, results_dir=tmp_path)
    write_record({**base, "encoder": "r1_a", "selected_on": "test", "reported_on": "test", "steps": 100, "probe_best": 0.711,
                  "created": "2026-11-28T00:46:20+00:00"}, results_dir=tmp_path)
    write_record({**base, "encoder": "random-init (reference)", "selected_on": "val", "reported_on": "val", "probe_best": 0.7455,
                  "grid_val_top1": 0.801, "created": "2026-12-03T17:11:33+00:00"}, results_dir=tmp_path)
    write_tables(tmp_path)
    lines = (tmp_path / "README.md").read_text().splitlines()
    rows = [ln for ln in lines if ln.startswith("| r") and ln.split(" | ")[1] in ("ijepa", "mae", "random-init")]
    assert rows == ["| r1_a | ijepa | fashion-mnist | test | 100 |  |  | 71.10 |  |  |",
                    "| random-init (reference) | random-init | fashion-mnist | val |  |  |  | 74.55 | 80.10 |  |",
                    "| r9_b | mae | fashion-mnist | val | 694 | 0.0264 | 5.7 | 82.32 | 82.89 | 20.8 |"]
