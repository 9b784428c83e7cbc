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

from ijepa.training.config import load_config
from ijepa.typedconfig import ConfigError

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
    assert lines[0] == ("data: fashion-mnist: 256 train images, 10 classes; grayscale images, 1 channel (meta.in_chans); "
                        "random crops resized to 32 px (data.crop_size), its own mean/std")
    assert lines[1].startswith("optimization.max_steps=4 truncates the 64-step schedule: it stops still in warm-up")
    assert lines[2].startswith(f"pretrain {tmp_path / 'lines'}: step 0 -> 4 (0.25 epochs of 16 steps), 16 images per step on cpu")
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

    from ijepa.progress import progress

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


# -- your own data -------------------------------------------------------------------------------
FAST = {  # appended to the README's commands to keep them seconds; they change size, never the path
    "pretrain": ["--steps", "3", "--set", "data.batch_size=8", "--set", "data.num_workers=0", "--set", "meta.depth=1",
                 "--set", "meta.pred_depth=1", "--set", "meta.pred_emb_dim=48", "--set", "logging.diag_every=0"],
    "eval linear": ["--set", "grid.epochs=1", "--set", "grid.min_steps=1", "--set", "grid.lrs=[0.01]", "--set", "grid.wds=[0.0]"],
}


def _section(title: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]


def _commands(md: str) -> list[list[str]]:
    """The `ijepa` commands of a README section: its ```bash lines, then its inline ones."""
    import re
    import shlex

    fenced = [re.sub(r"(^|\s)#.*$", "", line).strip() for block in re.findall(r"```bash\n(.*?)```", md, re.S) for line in block.splitlines()]
    inline = re.findall(r"`(ijepa [^`]+)`", re.sub(r"```.*?```", "", md, flags=re.S))
    return [shlex.split(line) for line in [*fenced, *inline] if line.startswith("ijepa ")]


def _run(argv: list[str]):
    """One command line in this process, as `main()` runs it (every command registered)."""
    import importlib
    import pkgutil

    import ijepa.cli
    from ijepa.cli import app

    for mod in pkgutil.iter_modules(ijepa.cli.__path__):
        importlib.import_module(f"ijepa.cli.{mod.name}")
    extra = FAST.get(argv[1], FAST.get(" ".join(argv[1:3]), [])) if "--data" in argv else []
    return CliRunner().invoke(app, [*argv[1:], *extra])


def test_the_own_data_section_runs_as_written_on_a_generated_folder(tmp_path, monkeypatch):
    from fixtures.imagefolder import write_imagefolder

    monkeypatch.chdir(tmp_path)
    write_imagefolder(tmp_path / "my_images", per_class={"train": 60, "val": 3})  # k-NN's k = 200 needs 200 in its bank
    commands = _commands(_section("Your own data"))
    assert [c[:3] for c in commands[:3]] == [["ijepa", "pretrain", "--data"], ["ijepa", "eval", "linear"], ["ijepa", "eval", "knn"]]
    assert any("--resume" in c for c in commands) and ["ijepa", "results"] in commands
    for argv in commands:
        result = _run(argv)
        assert result.exit_code == 0, f"{' '.join(argv)}:\n{result.output}"
    cfg = yaml.safe_load((tmp_path / "runs" / "mine" / "config.yaml").read_text())
    assert (cfg["data"]["dataset"], cfg["data"]["root_path"], cfg["data"]["image_folder"], cfg["meta"]["in_chans"]) == (
        "imagefolder", str(tmp_path.resolve()), "my_images", 3)
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "records").glob("eval.*/*.json")]
    data = f"imagefolder:{(tmp_path / 'my_images').resolve()}"
    assert sorted((r["kind"], r["dataset"]) for r in records) == [("eval.knn", data), ("eval.linear", data), ("eval.linear", data)]
    assert (tmp_path / "results" / "README.md").is_file()


def test_colour_images_into_a_one_channel_model_are_refused_naming_both(tmp_path):
    from fixtures.imagefolder import write_imagefolder

    root = write_imagefolder(tmp_path / "rgb", per_class={"train": 2, "val": 1})
    by_hand = ["--set", "data.dataset=imagefolder", "--set", f"data.root_path={tmp_path}", "--set", "data.image_folder=rgb"]
    for args in (by_hand, ["--data", str(root), "--set", "meta.in_chans=1"]):  # the recipe's in_chans: 1, or asked for
        result = _cli([*args, "--set", f"logging.folder={tmp_path / 'runs'}", "--set", "data.batch_size=4"])  # it trained as gray
        assert result.exit_code == 2 and len(_lines(result)) == 1, result.output
        assert _lines(result)[0].startswith(f"error: meta.in_chans: 1 (a grayscale model), but {root / 'train'} holds colour images (e.g. "), result.output
        assert "set meta.in_chans=3" in result.output
    assert not (tmp_path / "runs").exists()


def test_grayscale_images_set_one_channel_and_a_three_channel_model_says_it_replicates(tmp_path):
    from fixtures.imagefolder import write_imagefolder

    root = write_imagefolder(tmp_path / "gray", per_class={"train": 4, "val": 1}, mode="L")
    common = ["--data", str(root), "--results", str(tmp_path / "results"), *FAST["pretrain"], "--steps", "1",
              "--set", f"logging.folder={tmp_path}", "--set", "data.batch_size=16"]
    one = _cli([*common, "--set", "logging.write_tag=one"])
    assert one.exit_code == 0, one.output
    assert yaml.safe_load((tmp_path / "one" / "config.yaml").read_text())["meta"]["in_chans"] == 1
    assert f"data: {root}: 16 train images, 4 classes; grayscale images, 1 channel (meta.in_chans)" in one.output

    three = _cli([*common, "--set", "logging.write_tag=three", "--set", "meta.in_chans=3"])
    assert three.exit_code == 0, three.output
    assert "grayscale images replicated to the model's 3 channels (meta.in_chans: 3" in three.output
    recs = {json.loads(p.read_text())["run"]: json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")}
    assert (recs["three"]["data_channels"], recs["three"]["in_chans"]) == (1, 3)
    assert (recs["one"]["data_channels"], recs["one"]["in_chans"]) == (1, 1)


def test_data_overrides_name_the_builtin_sets_and_a_folder(tmp_path):
    from fixtures.imagefolder import write_imagefolder

    from ijepa.training.data import data_overrides

    assert data_overrides("fashion-mnist") == ["data.dataset=fashion-mnist", 'data.root_path=""', "meta.in_chans=1"]
    assert data_overrides(f"fashion-mnist:{tmp_path}") == ["data.dataset=fashion-mnist", f'data.root_path="{tmp_path}"', "meta.in_chans=1"]
    root = write_imagefolder(tmp_path / "a: b", per_class={"train": 1})  # a name YAML would misread unquoted
    cfg = load_config(None, data_overrides(str(root)))
    assert (cfg.data.dataset, cfg.data.root_path, cfg.data.image_folder, cfg.meta.in_chans) == ("imagefolder", str(tmp_path), "a: b", 3)


def test_the_official_keys_left_at_their_defaults_name_them(tmp_path):
    """`data.dataset=imagefolder` alone points at the authors' cluster: the error names the keys."""
    result = _cli(["--set", "data.dataset=imagefolder", "--set", f"logging.folder={tmp_path}"])
    assert result.exit_code == 2 and len(_lines(result)) == 1, result.output
    assert "(data.root_path '' + data.image_folder 'imagenet_full_size/061417/'); for a folder of your own images: " \
           "ijepa pretrain --data DIR" in result.output


# -- short runs ----------------------------------------------------------------------------------
def test_steps_is_a_whole_run_with_its_schedule_scaled(tmp_path):
    """--steps 6 on 8 steps per epoch: warm-up, cosine, EMA and weight decay all end at step 6."""
    raw = tiny_raw(tmp_path, "short", data={"subset": 128}, optimization={"epochs": 10, "warmup": 5, "final_lr": 1e-6,
                                                                          "ema": [0.99, 1.0]}, logging=QUIET)
    result = _cli([*_sets(raw), "--steps", "6", "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert "--steps 6: the whole schedule in 6 steps: lr warm-up over 3 steps to 0.001, then cosine to 1e-06; " \
           "EMA 0.99 -> 1, weight decay 0.04 -> 0.4, both ending at step 6" in result.output
    import pandas as pd

    log = pd.read_csv(tmp_path / "short" / "log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert log["lr"].iloc[-1] == pytest.approx(1e-6) and log["lr"].max() == pytest.approx(1e-3)
    assert log["wd"].iloc[-1] == pytest.approx(0.4) and log["momentum"].iloc[-1] == pytest.approx(0.99 + 0.01 * 5 / 6)
    stored = yaml.safe_load((tmp_path / "short" / "config.yaml").read_text())["optimization"]
    assert stored["max_steps"] == 6  # --resume reads the scaled schedule back
    again = _cli(["--set", f"logging.folder={tmp_path}", "--set", "logging.write_tag=short", "--resume", "--steps", "7"])
    assert again.exit_code == 2 and "--steps 7: the run in" in again.output and "was not scaled to 7 steps" in again.output
    both = _cli([*_sets(raw), "--set", "logging.write_tag=both", "--set", "optimization.max_steps=5", "--steps", "6"])
    assert _lines(both) == ["error: --steps 6 with optimization.max_steps 5: give one (--steps scales the schedule to its steps, "
                            "max_steps stops the configured schedule early)"]


@pytest.mark.parametrize("steps,ipe", [(50, 3), (127, 3), (1406, 781), (6, 8), (1, 5)])
def test_scaled_schedules_end_exactly_at_their_step(steps, ipe):
    """`ijepa.bench.flops.budget_config`'s float product ends some of these a step early."""
    import dataclasses

    from ijepa.training.loop import schedules_for
    from ijepa.training.schedules import scale_to_steps

    cfg = load_config()
    scaled = scale_to_steps(cfg.optimization, steps, ipe)
    sched = schedules_for(dataclasses.replace(cfg, optimization=scaled), ipe)
    assert (sched.total_steps, scaled.max_steps, sched.warmup_steps) == (steps, steps, max(1, round(steps * 0.2)))
    assert scale_to_steps(scaled, steps, ipe) == scaled  # --resume --steps N finds the same schedule


def test_max_steps_says_it_truncates_and_where_epochs_cap_it(tmp_path):
    """The issue's two cases: a schedule cut in warm-up, and max_steps=10 giving 5 steps."""
    cut = tiny_raw(tmp_path, "cut", optimization={"max_steps": 2}, logging=QUIET)  # 16 steps/epoch x 4 epochs
    result = _cli([*_sets(cut), "--results", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert ("optimization.max_steps=2 truncates the 64-step schedule: it stops still in warm-up at lr 0.000325 (peak 0.001), "
            "before the EMA and weight-decay ramps end; for a whole run of 2 steps: ijepa pretrain --steps 2") in result.output

    # 48 images / 16 = 3 steps per epoch; 1.8 epochs = 5 steps, fewer than max_steps 10
    capped = tiny_raw(tmp_path, "capped", data={"subset": 48}, optimization={"epochs": 1.8, "max_steps": 10}, logging=QUIET)
    result = _cli([*_sets(capped), "--results", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert ("optimization.max_steps=10 is past the run's end: it trains 5 steps (optimization.epochs 1.8 x 3 steps per epoch); "
            "for a whole run of 10 steps: ijepa pretrain --steps 10") in result.output
    assert torch.load(tmp_path / "capped" / "checkpoint.pt", weights_only=True)["step"] == 5
