"""Faults in a pretraining run: each one stops it with one line naming the file, never a
traceback, and never leaves a broken or non-finite file behind."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.imagefolder import corrupt, write_imagefolder
from fixtures.pretrain import tiny_config, write_tiny_yaml
from rich.console import Console
from typer.testing import CliRunner

from ijepa.training.checkpointing import RunError, RunLock
from ijepa.training.loop import Trainer, build_method, build_optimizer, pretrain

QUIET = {"diag_every": 0, "online_probe": False}


def _cli(args: list[str]):
    import ijepa.cli.pretrain  # noqa: F401  (registers the command)
    from ijepa.cli import app

    return CliRunner().invoke(app, ["pretrain", *args])


def _error_line(result) -> str:
    """The run failed with exit status 2 and printed exactly one `error:` line; return it."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def _run(tmp_path: Path, tag: str, **sections) -> Path:
    return pretrain(tiny_config(tmp_path, tag, **sections), console=Console(file=io.StringIO()))


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _finite(state: dict) -> bool:
    return all(torch.isfinite(t).all() for k in ("encoder", "predictor", "target_encoder") for t in state[k].values())


# -- non-finite loss ---------------------------------------------------------------------------
def test_divergence_stops_at_the_first_bad_step_and_keeps_the_last_good_checkpoint(tmp_path):
    """lr 100 diverges within ~10 steps. Rows are logged only every 1000 steps, so the first
    bad step is found from the device-side flag at the next checkpoint, not by a per-step sync."""
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "nan", optimization={"lr": 100.0, "max_steps": 40},
                          logging={"checkpoint_every": 4, "log_every": 1000, **QUIET})
    line = _error_line(_cli(["--config", str(cfg)]))
    m = re.fullmatch(r"error: (loss is NaN|loss is infinite|gradient is not finite) at step (\d+); "
                     r"last good checkpoint: step (\d+) \((.+)\)", line)
    assert m, line
    bad, good = int(m[2]), int(m[3])
    run = tmp_path / "nan"
    assert Path(m[4]) == run / "checkpoint.pt" and good % 4 == 0 and good < bad <= good + 4
    state = _state(run / "checkpoint.pt")
    assert state["step"] == good and _finite(state)
    assert sorted(p.name for p in run.glob("checkpoint-step*.pt")) == [f"checkpoint-step{good - 4}.pt", f"checkpoint-step{good}.pt"]
    assert all(_finite(_state(p)) for p in run.glob("checkpoint*.pt"))


def test_non_finite_weights_are_never_saved(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "inf", logging=QUIET), console=Console(file=io.StringIO()))
    try:
        with torch.no_grad():
            trainer.model.encoder.blocks[0].mlp.fc1.weight[0, 0] = float("inf")
        with pytest.raises(RunError, match=r"weights are not finite after step 0; no checkpoint was written"):
            trainer.save(0.0)
        assert not trainer.ckpt_path.exists()
    finally:
        trainer.close()


def test_keep_last_prunes_oldest_first(tmp_path):
    run = _run(tmp_path, "keep", optimization={"max_steps": 7}, logging={"checkpoint_every": 2, "keep_last": 2, **QUIET})
    assert sorted(p.name for p in run.glob("checkpoint*.pt")) == ["checkpoint-step6.pt", "checkpoint-step7.pt", "checkpoint.pt"]
    assert _state(run / "checkpoint-step6.pt")["step"] == 6
    assert (run / "checkpoint-step7.pt").read_bytes() == (run / "checkpoint.pt").read_bytes()
    run = _run(tmp_path, "none", optimization={"max_steps": 3}, logging={"checkpoint_every": 1, "keep_last": 0, **QUIET})
    assert [p.name for p in run.glob("checkpoint*.pt")] == ["checkpoint.pt"]


# -- one run per directory ---------------------------------------------------------------------
def test_second_lock_on_a_run_directory_fails_naming_the_holder(tmp_path):
    first = RunLock(tmp_path / "run").acquire()
    with pytest.raises(RunError, match=rf"{tmp_path / 'run'}: another ijepa pretrain \(PID {os.getpid()}\) is running"):
        RunLock(tmp_path / "run").acquire()
    first.release()
    RunLock(tmp_path / "run").acquire().release()


def test_a_second_pretrain_on_a_held_directory_fails_at_once_and_a_dead_holder_frees_it(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from ijepa.training.checkpointing import RunLock; "
         "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(120)", str(tmp_path / "busy")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "busy", optimization={"max_steps": 1}, logging=QUIET)
        line = _error_line(_cli(["--config", str(cfg)]))
        assert line == (f"error: {tmp_path / 'busy'}: another ijepa pretrain (PID {holder.pid}) is running in this "
                        "directory; wait for it or set logging.write_tag")
        assert not (tmp_path / "busy" / "log.csv").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    result = _cli(["--config", str(cfg), "--results", str(tmp_path / "results")])  # the kernel dropped the dead holder's lock
    assert result.exit_code == 0, result.output
    assert (tmp_path / "busy" / ".lock").read_text().strip() != str(holder.pid)


# -- resume holds the stored config --------------------------------------------------------------
def test_resume_refuses_a_changed_key_and_allows_the_documented_ones(tmp_path):
    _run(tmp_path, "res", optimization={"max_steps": 2}, logging=QUIET)
    changed = write_tiny_yaml(tmp_path / "lr.yaml", tmp_path, "res", optimization={"max_steps": 2, "lr": 2e-3}, logging=QUIET)
    line = _error_line(_cli(["--config", str(changed), "--resume"]))
    assert line.startswith(f"error: --resume: optimization.lr differs from {tmp_path / 'res' / 'config.yaml'} "
                           "(given 0.002, stored 0.001); only logging.*, optimization.epochs,"), line
    longer = write_tiny_yaml(tmp_path / "more.yaml", tmp_path, "res", optimization={"max_steps": 3},
                             data={"num_workers": 1}, logging={**QUIET, "log_every": 2})
    result = _cli(["--config", str(longer), "--resume", "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert _state(tmp_path / "res" / "checkpoint.pt")["step"] == 3
    stored = yaml.safe_load((tmp_path / "res" / "config.yaml").read_text())
    assert stored["optimization"]["max_steps"] == 3 and stored["logging"]["log_every"] == 2


def test_garbage_row_in_log_csv_names_the_line(tmp_path):
    run = _run(tmp_path, "log", optimization={"max_steps": 3}, logging={"checkpoint_every": 1, **QUIET})
    log = run / "log.csv"
    good = log.read_text().splitlines(keepends=True)
    fields = good[2].split(",")  # line 3: step 2
    log.write_text("".join([*good[:2], ",".join([*fields[:2], "zzz", *fields[3:]]), *good[3:]]))
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "log", optimization={"max_steps": 4}, logging={"checkpoint_every": 1, **QUIET})
    line = _error_line(_cli(["--config", str(cfg), "--resume"]))
    assert line == f"error: {log} line 3: not a log row of numbers (column 'loss'); fix or delete that line"
    log.write_text("".join(good[:3]) + "garbage\n")
    assert "line 4: not a log row of numbers" in _error_line(_cli(["--config", str(cfg), "--resume"]))
    assert log.read_text().endswith("garbage\n")  # the log is left as it was


# -- writes that fail ------------------------------------------------------------------------------
def test_disk_full_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def fills_the_disk(obj, f, *args, **kwargs):
        calls.append(obj.get("step"))
        if len(calls) == 2:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fills_the_disk)
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "full", optimization={"max_steps": 6}, logging={"checkpoint_every": 2, **QUIET})
    line = _error_line(_cli(["--config", str(cfg)]))
    ckpt = tmp_path / "full" / "checkpoint.pt"
    assert line == f"error: {ckpt}: cannot write the checkpoint (No space left on device); last good checkpoint: step 2 ({ckpt})"
    monkeypatch.undo()
    assert _state(ckpt)["step"] == 2 and not list((tmp_path / "full").glob(".*.tmp"))


@contextlib.contextmanager
def _unprivileged():
    """Root ignores file modes: drop to `nobody` for the block so a read-only mode is real."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_read_only_run_directory_is_one_line():
    folder = Path(tempfile.mkdtemp(prefix="ijepa-ro-"))  # under /tmp, traversable by nobody
    try:
        folder.chmod(0o755)
        (folder / "ro").mkdir(mode=0o555)
        (folder / "ro").chmod(0o555)
        cfg = write_tiny_yaml(folder / "cfg.yaml", folder, "ro", optimization={"max_steps": 1}, logging=QUIET)
        cfg.chmod(0o644)
        with _unprivileged():
            result = _cli(["--config", str(cfg)])
        assert _error_line(result) == f"error: {folder / 'ro'}: run directory is not writable (Permission denied)"
    finally:
        (folder / "ro").chmod(0o755)
        (folder / "ro").rmdir()
        (folder / "cfg.yaml").unlink(missing_ok=True)
        folder.rmdir()


def test_stale_temp_files_of_a_killed_save_are_removed_at_start(tmp_path):
    run = tmp_path / "stale"
    killed = subprocess.run(
        [sys.executable, "-c", "import os, signal, sys; from ijepa.atomic import atomic_write; "
         "atomic_write(sys.argv[1], lambda f: (f.write(b'x'), f.flush(), os.kill(os.getpid(), signal.SIGKILL)), binary=True)",
         str(run / "checkpoint.pt")],
    )
    assert killed.returncode == -signal.SIGKILL
    (stale,) = run.glob(".checkpoint.pt.*.tmp")
    out = io.StringIO()
    pretrain(tiny_config(tmp_path, "stale", optimization={"max_steps": 1}, logging=QUIET), console=Console(file=out))
    assert not stale.exists() and "removed 1 temp file(s) left by an interrupted save" in out.getvalue()


# -- bad data --------------------------------------------------------------------------------------
def test_corrupt_image_in_a_loader_worker_is_one_line_naming_it(tmp_path):
    tree = write_imagefolder(tmp_path / "data" / "tree", per_class={"train": 4, "val": 1})
    bad = corrupt(tree, "train")
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "bad", data={"dataset": "imagefolder", "root_path": str(tmp_path / "data"),
                          "image_folder": "tree", "subset": 0, "num_workers": 1}, optimization={"max_steps": 1}, logging=QUIET)
    line = _error_line(_cli(["--config", str(cfg)]))
    assert line.startswith(f"error: {bad}: unreadable image (UnidentifiedImageError"), line


# -- official meta.load_checkpoint / meta.read_checkpoint ----------------------------------------
def test_load_checkpoint_missing_file_is_one_line(tmp_path):
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "x", meta={"load_checkpoint": True, "read_checkpoint": "nope.pth.tar"})
    assert _error_line(_cli(["--config", str(cfg)])).startswith(f"error: {tmp_path / 'nope.pth.tar'}: checkpoint not found")


def test_read_checkpoint_resumes_exactly_from_a_kept_checkpoint(tmp_path):
    a = _run(tmp_path, "a", optimization={"max_steps": 4}, logging={"checkpoint_every": 2, **QUIET})
    b = _run(tmp_path, "b", optimization={"max_steps": 4}, logging={"checkpoint_every": 2, **QUIET},
             meta={"load_checkpoint": True, "read_checkpoint": "a/checkpoint-step2.pt"})
    sa, sb = _state(a / "checkpoint.pt"), _state(b / "checkpoint.pt")
    assert sb["step"] == 4
    for key in ("encoder", "predictor", "target_encoder"):
        assert all(torch.equal(v, sb[key][k]) for k, v in sa[key].items()), key
    assert [r.split(",")[0] for r in (b / "log.csv").read_text().splitlines()] == ["step", "3", "4"]
    changed = tiny_config(tmp_path, "c", optimization={"max_steps": 4, "lr": 5e-4}, meta={"load_checkpoint": True, "read_checkpoint": "a/checkpoint.pt"})
    with pytest.raises(RunError, match=r"meta.load_checkpoint: optimization.lr differs from .*a/config.yaml"):
        pretrain(changed)


def _as_official(ours: dict, model: torch.nn.Module, epoch: int) -> dict:
    """Our checkpoint in the official trainer's format: DDP `module.` keys, no step/rng/config,
    and 4 optimizer groups (encoder decay, predictor decay, encoder no-decay, predictor no-decay)
    numbering every parameter in state-dict order, frozen position tables included."""
    name = {id(p): f"{k}.{n}" for k, m in model.trainable().items() for n, p in m.named_parameters()}
    our_id = {name[id(p)]: i for i, p in enumerate(p for g in build_optimizer(model.trainable(), fused=False).param_groups for p in g["params"])}
    state, groups, start = {}, [], 0
    for decay in (True, False):
        for k in ("encoder", "predictor"):
            names = [f"{k}.{n}" for n, t in ours[k].items() if ("bias" not in n and t.ndim != 1) == decay]
            state.update({start + i: ours["opt"]["state"][our_id[n]] for i, n in enumerate(names) if n in our_id})
            groups.append({"params": list(range(start, start + len(names))), "lr": 1e-3, "weight_decay": 0.04 if decay else 0.0})
            start += len(names)
    assert start > len(our_id)  # the frozen position tables are numbered too
    official = {k: {f"module.{n}": t for n, t in ours[k].items()} for k in ("encoder", "predictor", "target_encoder")}
    return {**official, "opt": {"state": state, "param_groups": groups}, "scaler": None, "epoch": epoch,
            "loss": 0.5, "batch_size": 16, "world_size": 1, "lr": 1e-3}


def test_load_checkpoint_reads_an_official_checkpoint_at_its_epoch(tmp_path):
    a = _run(tmp_path, "a", optimization={"max_steps": 3}, logging=QUIET)
    ours = _state(a / "checkpoint.pt")
    model = build_method(tiny_config(tmp_path), "ijepa")
    torch.save(_as_official(ours, model, epoch=1), tmp_path / "jepa-latest.pth.tar")
    cfg = tiny_config(tmp_path, "from_official", optimization={"max_steps": 17}, logging=QUIET,
                      meta={"load_checkpoint": True, "read_checkpoint": "jepa-latest.pth.tar"})
    out = io.StringIO()
    t = Trainer(cfg, console=Console(file=out, width=300))
    try:
        assert t.step == 16  # epoch 1 x 16 steps per epoch: the official trainer's start
        assert f"resuming from the official checkpoint {tmp_path / 'jepa-latest.pth.tar'} at its epoch 1: step 16 " in out.getvalue()
        assert all(torch.equal(v, ours["encoder"][k]) for k, v in t.model.encoder.state_dict().items())
        loaded = t.opt.state_dict()
        assert [g["apply_wd"] for g in loaded["param_groups"]] == [True, False]
        assert loaded["state"].keys() == ours["opt"]["state"].keys()
        for i, s in ours["opt"]["state"].items():
            assert torch.equal(loaded["state"][i]["exp_avg"], s["exp_avg"])
    finally:
        t.close()
    run = pretrain(cfg, console=Console(file=io.StringIO()))
    assert _state(run / "checkpoint.pt")["step"] == 17 and _finite(_state(run / "checkpoint.pt"))
