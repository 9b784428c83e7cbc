"""What a new user types: shipped configs by name, placeholders refused before anything is
created, `--resume` without repeating overrides, log lines and a summary off a terminal, the
pretrain.compute record, the [dense] extra's one-line error, benchmark help that runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.pretrain import tiny_raw, write_tiny_yaml
from typer.testing import CliRunner

from ijepa.training.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = Path(__file__).parent / "fixtures" / "in1k_vith14_ep300.yaml"
QUIET = {"diag_every": 0, "online_probe": False}


def _cli(args: list[str]):
    import ijepa.cli.pretrain  # noqa: F401  (registers the command)
    from ijepa.cli import app

    return CliRunner().invoke(app, ["pretrain", *args])


def _lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def _sets(raw: dict) -> list[str]:
    """A whole config as `--set` flags, the way a user overrides the default recipe."""
    return [a for s, values in raw.items() for k, v in values.items() for a in ("--set", f"{s}.{k}={json.dumps(v)}")]


# -- shipped configs -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["in1k_vith14_ep300", "in1k_vith14_ep300.yaml"])
def test_the_official_config_ships_unchanged_and_is_found_by_name(name):
    assert load_config(name).to_dict() == load_config(OFFICIAL).to_dict()


@pytest.mark.parametrize("name,arch", [("in1k_vitb16_ep600", "vit_base"), ("in1k_vits16_ep600", "vit_small")])
def test_derived_configs_change_only_the_keys_they_mark(name, arch):
    derived, official = load_config(name).to_dict(), load_config(OFFICIAL).to_dict()
    changed = {f"{s}.{k}" for s in official for k in official[s] if official[s][k] != derived[s][k]}
    assert changed == {"mask.patch_size", "meta.model_name", "meta.pred_depth", "optimization.epochs",
                       "logging.folder", "logging.write_tag"}
    assert (derived["meta"]["model_name"], derived["mask"]["patch_size"], derived["meta"]["pred_depth"]) == (arch, 16, 6)


def test_an_unknown_name_lists_the_shipped_configs():
    with pytest.raises(ConfigError, match=r"^in1k_vitx: config file not found, nor a shipped config \(fmnist_vit_tiny, in1k_vitb16"):
        load_config("in1k_vitx")


# -- nothing created before the config can run ---------------------------------------------------
def test_readme_official_command_refuses_its_placeholders_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _cli(["-c", "in1k_vith14_ep300.yaml"])
    assert result.exit_code == 2 and len(_lines(result)) == 1, result.output
    assert _lines(result)[0].startswith("error: data.root_path, logging.folder: placeholder paths ('$replace_this_with_"), result.output
    assert "--set data.root_path=PATH --set logging.folder=PATH" in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_unexpanded_variable_in_a_path_is_refused(tmp_path):
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "x", logging={"folder": "$HOME/runs"})
    result = _cli(["-c", str(cfg)])
    assert _lines(result) == ["error: logging.folder: placeholder path ('$HOME/runs'); set it: --set logging.folder=PATH"]


def test_missing_data_fails_before_the_run_directory_exists(tmp_path):
    result = _cli(["-c", "in1k_vitb16_ep600", "--set", f"data.root_path={tmp_path / 'nowhere'}",
                   "--set", f"logging.folder={tmp_path / 'runs'}"])
    assert result.exit_code == 2 and len(_lines(result)) == 1 and str(tmp_path / "nowhere") in result.output, result.output
    assert not (tmp_path / "runs").exists()



def test_a_device_this_machine_lacks_names_the_config_key(tmp_path):
    """Pretraining has no --device flag: the error names the key the user set."""
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "x", meta={"device": "cuda:99"})
    result = _cli(["-c", str(cfg)])
    assert result.exit_code == 2 and len(_lines(result)) == 1, result.output
    assert _lines(result)[0].startswith("error: meta.device cuda:99: "), result.output
    assert not (tmp_path / "x").exists()


# -- resume --------------------------------------------------------------------------------------
def test_resume_reads_the_stored_config_and_checks_only_given_keys(tmp_path):
    raw = tiny_raw(tmp_path, "res", optimization={"max_steps": 2}, logging=QUIET)
    res = ["--results", str(tmp_path / "results")]
    assert _cli([*_sets(raw), *res]).exit_code == 0
    where = ["--set", f"logging.folder={tmp_path}", "--set", "logging.write_tag=res"]

    again = _cli([*where, "--set", "optimization.max_steps=3", "--resume", *res])  # the default recipe's keys differ: not given
    assert again.exit_code == 0, again.output
    ckpt = torch.load(tmp_path / "res" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["config"]["data"]["batch_size"] == 16 and ckpt["config"]["meta"]["depth"] == 1
    assert yaml.safe_load((tmp_path / "res" / "config.yaml").read_text())["optimization"]["max_steps"] == 3

    same = _cli([*where, "--set", "data.batch_size=16", "--resume", *res])  # given and equal: fine (finished: nothing to do)
    assert same.exit_code == 0 and "nothing to train" in same.output, same.output
    changed = _cli([*where, "--set", "data.batch_size=64", "--resume", *res])
    assert _lines(changed) == [f"error: --resume: data.batch_size differs from {tmp_path / 'res' / 'config.yaml'} (given 64, stored 16); "
                               "only logging.*, optimization.epochs, optimization.max_steps, meta.device, meta.load_checkpoint, "
                               "meta.read_checkpoint, meta.reset_optimizer, data.num_workers, data.pin_mem may change on resume"]


# -- output off a terminal, the summary and the compute record -------------------------------------
def test_log_lines_summary_and_compute_record_off_a_terminal(tmp_path):
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "lines", optimization={"max_steps": 4},
                          logging={**QUIET, "progress": True, "log_every": 2})
    result = _cli(["-c", str(cfg), "--results", str(tmp_path / "results")])  # CliRunner's streams are not terminals
    assert result.exit_code == 0, result.output
    lines = _lines(result)
    assert lines[0].startswith(f"pretrain {tmp_path / 'lines'}: step 0 -> 4 (0.25 epochs of 16 steps), 16 images per step on cpu")
    steps = [line for line in lines if line.startswith("step ")]
    assert [s.split()[1] for s in steps] == ["2/4", "4/4"]
    assert all(" loss " in s and " img/s " in s and " ETA " in s for s in steps), steps
    assert lines[-3].startswith(f"done: {tmp_path / 'lines'}: step 4/4 (0.25 epochs); 4 steps in ") and "img/s" in lines[-3]
    records = list((tmp_path / "results" / "records" / "pretrain.compute").glob("*.json"))
    assert lines[-2] == f"record: {records[0]}" and lines[-1] == str(tmp_path / "lines") and len(records) == 1
    rec = json.loads(records[0].read_text())
    assert (rec["run"], rec["method"], rec["steps"]) == ("lines", "ijepa", 4)
    assert rec["pretrain_flops"] == 4 * rec["flops_per_step"] > 0 and rec["pretrain_wall_s"] > 0
    assert 0 < torch.load(tmp_path / "lines" / "checkpoint.pt", weights_only=True)["wall_s"] <= rec["pretrain_wall_s"]

    again = _cli(["-c", str(cfg), "--resume", "--results", str(tmp_path / "results")])  # finished: no second record
    assert again.exit_code == 0 and len(list(records[0].parent.glob("*.json"))) == 1, again.output


def test_eval_progress_writes_plain_lines_off_a_terminal_and_nothing_when_disabled():
    import io

    from rich.console import Console

    from ijepa.evals.core.features import progress

    out = io.StringIO()
    with progress(Console(file=out, force_terminal=False, width=200), "features train", every=0) as bar:
        task = bar.add_task("", total=4, rate="")
        for _ in range(4):
            bar.update(task, advance=1, rate="12 img/s")
    lines = [line for line in out.getvalue().splitlines() if line.startswith("features train: ")]
    assert lines[0].startswith("features train: 1/4  12 img/s") and lines[-1] == "features train: 4/4  12 img/s", out.getvalue()
    assert len(lines) == 4 and "ETA" not in lines[-1]  # an ETA only while there is one

    quiet = io.StringIO()
    with progress(Console(file=quiet, force_terminal=False), "heads", enabled=False, every=0) as bar:
        bar.update(bar.add_task("", total=2, rate=""), advance=2)
    assert quiet.getvalue() == ""


# -- the [dense] extra ---------------------------------------------------------------------------
def test_a_missing_dense_package_is_one_line_naming_the_extra(tmp_path):
    """In a fresh process (the eval registry caches imported modules), as if pycocotools were not installed."""
    code = (
        "import sys; sys.modules['pycocotools'] = None\n"
        f"sys.argv = ['ijepa', 'eval', 'detection', '--random-init', 'vit_tiny', '--data', {str(tmp_path)!r}]\n"
        "from ijepa.cli import main; main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: pycocotools is not installed; ijepa eval detection needs it: pip install 'ijepa[dense]'"
    ]


def test_a_plain_install_imports_everything_but_the_pycocotools_modules():
    code = (
        "import importlib, json, pkgutil, sys, ijepa\n"
        "for m in ('pycocotools', 'segmentation_models_pytorch', 'h5py'): sys.modules[m] = None\n"
        "bad = []\n"
        "for m in pkgutil.walk_packages(ijepa.__path__, 'ijepa.'):\n"
        "    try: importlib.import_module(m.name)\n"
        "    except ImportError as e: bad.append((m.name, str(e)))\n"
        "print(json.dumps(dict(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    bad = json.loads(out.splitlines()[-1])
    assert set(bad) == {"ijepa.data.coco", "ijepa.evals.detection"}, bad  # counting reads COCO-style JSON without pycocotools
    assert all(msg.endswith("pip install 'ijepa[dense]'") for msg in bad.values()), bad


def test_the_upernet_head_without_smp_names_the_extra(monkeypatch):
    from ijepa.evals.dense.heads import UperNetHead
    from ijepa.extras import MissingExtra

    for mod in ("segmentation_models_pytorch", "segmentation_models_pytorch.decoders.upernet.decoder"):
        monkeypatch.setitem(sys.modules, mod, None)  # as if not installed, even after another test imported it
    with pytest.raises(MissingExtra, match=r"^segmentation-models-pytorch is not installed; the UperNet head needs it: pip install 'ijepa\[dense\]'$"):
        UperNetHead(32, 5)


# -- benchmark help ------------------------------------------------------------------------------
def test_eval_speed_help_runs():
    out = subprocess.run([sys.executable, "benchmarks/eval_speed.py", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "90% of the 50k train split" in " ".join(out.stdout.split())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_gpu_check_without_a_gpu_is_one_line_and_writes_nothing(tmp_path):
    env = {**os.environ, "PY": sys.executable, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cuda", "--results", str(tmp_path / "r")],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 2 and out.stdout == "", out.stdout
    assert out.stderr.strip().splitlines() == ["gpu_check.sh: error: --device cuda: CUDA is not available on this machine; use --device cpu or auto"]
    assert not (tmp_path / "r").exists()
