"""Faults in a pretraining run: each one stops it with one line naming the file, never a
traceback, and never leaves a broken or non-finite file behind."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
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

from ijepa.rundir import RunError, RunLock
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
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "nan", optimization={"lr": 100.0, "epochs": 2.5},  # 40 steps
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
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from ijepa.rundir import RunLock; "
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


def test_resume_on_another_number_of_processes_is_refused(tmp_path):
    """A run of 2 DDP processes resumed on 1 went on with half the global batch and twice the
    steps per epoch: another lr, weight-decay and EMA schedule (issue 42: lr 5.5e-4 -> 3.8e-4,
    EMA momentum going backwards). The checkpoint is made a 2-process one as rank 0 writes it
    (tests/test_distributed.py resumes a real one)."""
    _run(tmp_path, "ws", optimization={"max_steps": 2}, logging=QUIET)
    ckpt = tmp_path / "ws" / "checkpoint.pt"
    torch.save({**_state(ckpt), "world_size": 2}, ckpt)
    more = write_tiny_yaml(tmp_path / "more.yaml", tmp_path, "ws", optimization={"max_steps": 3}, logging=QUIET)
    line = _error_line(_cli(["--config", str(more), "--resume", "--results", str(tmp_path / "results")]))
    assert line == (f"error: --resume: {ckpt} was trained on 2 processes, this run has 1: the batch, the schedules (lr, weight "
                    "decay, EMA) and the data order would change; resume it on 2 processes (torchrun --nproc_per_node 2)")
    assert _state(ckpt)["step"] == 2


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
    log.write_bytes("".join(good[:3]).encode() + b"\xff\xfe\x00binary\n")  # issue 27: was a decode error naming no file
    assert _error_line(_cli(["--config", str(cfg), "--resume"])) == f"error: {log} line 4: not UTF-8 text (byte 0xff); fix or delete that line"


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
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "full", optimization={"epochs": 0.375, "warmup": 0.1}, logging={"checkpoint_every": 2, **QUIET})  # 6 steps
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
                          "image_folder": "tree", "subset": 0, "num_workers": 1}, meta={"in_chans": 3}, optimization={"epochs": 1}, logging=QUIET)
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


# -- config values outside their meaning (issue 27) --------------------------------------------
@pytest.mark.parametrize(("override", "expect"), [
    ("optimization.lr=-1", "optimization.lr: expected >= 0, got -1.0"),
    ("optimization.ema=[100,100]", "optimization.ema: expected [a, b] with 0.0 <= a <= b <= 1.0, got [100.0, 100.0]"),
    ("optimization.ema=[1.0,0.996]", "optimization.ema: expected [a, b] with 0.0 <= a <= b <= 1.0, got [1.0, 0.996]"),
    ("data.crop_size=30", "data.crop_size: 30 is not a multiple of mask.patch_size 4 (the last 2 px would be dropped)"),
    ("data.crop_size=-32", "data.crop_size: expected >= 1, got -32"),
    ("mask.patch_size=0", "mask.patch_size: expected >= 1, got 0"),
    ("data.crop_scale=[0.0,1.0]", "data.crop_scale: expected [a, b] with 0.0 < a <= b <= 1.0, got [0.0, 1.0]"),
    ("mask.pred_mask_scale=[0.2,0.15]", "mask.pred_mask_scale: expected [a, b] with 0.0 < a <= b <= 1.0, got [0.2, 0.15]"),
    ("optimization.weight_decay=-0.1", "optimization.weight_decay: expected >= 0, got -0.1"),
])
def test_config_values_outside_their_meaning_are_one_line(tmp_path, override, expect):
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "range", logging=QUIET)
    assert _error_line(_cli(["--config", str(cfg), "--set", override])) == f"error: {expect}"
    assert not (tmp_path / "range").exists()


@pytest.mark.parametrize(("content", "expect"), [
    (b"- data\n- meta\n", "expected a mapping of options, got list"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "invalid YAML (not UTF-8 text); expected a mapping of options"),
])
def test_config_file_that_is_not_a_mapping_names_the_file(tmp_path, content, expect):
    (tmp_path / "cfg.yaml").write_bytes(content)
    assert _error_line(_cli(["--config", str(tmp_path / "cfg.yaml")])) == f"error: {tmp_path / 'cfg.yaml'}: {expect}"


# -- optimizer state that does not fit (issue 27) ------------------------------------------------
OFFICIAL_KEYS = ("encoder", "predictor", "target_encoder", "opt", "scaler", "epoch", "loss", "batch_size", "world_size", "lr")


def test_optimizer_state_that_does_not_match_the_model_is_one_line_not_a_segfault(tmp_path):
    """Our checkpoint with only the official keys kept reads as an official one, whose
    optimizer numbering differs: the moments land on parameters of other shapes, which fused
    AdamW read out of bounds (exit 139, nothing printed). Run in a child for that reason."""
    a = _run(tmp_path, "a", optimization={"max_steps": 2}, logging=QUIET)
    torch.save({k: v for k, v in _state(a / "checkpoint.pt").items() if k in OFFICIAL_KEYS}, tmp_path / "stripped.pth.tar")
    load = {"load_checkpoint": True, "read_checkpoint": "stripped.pth.tar"}
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "b", optimization={"max_steps": 17}, logging=QUIET, meta=load)
    child = subprocess.run([sys.executable, "-c", "import sys; from ijepa.cli import main; sys.argv[0] = \"ijepa\"; main()",
                            "pretrain", "--config", str(cfg)], capture_output=True, text=True)
    lines = [line for line in (child.stdout + child.stderr).splitlines() if line.strip()]
    assert child.returncode == 2 and len(lines) == 1, (child.returncode, lines)
    assert re.fullmatch(rf"error: {tmp_path / 'stripped.pth.tar'}: optimizer state exp_avg of \S+ has shape \(.*\), the parameter \(.*\): "
                        r"the optimizer state does not match the model; set meta.reset_optimizer: true to resume the weights "
                        r"with AdamW's moments restarted from zero", lines[0]), lines[0]
    assert not (tmp_path / "b" / "checkpoint.pt").exists()
    reset = write_tiny_yaml(tmp_path / "reset.yaml", tmp_path, "b", optimization={"max_steps": 17}, logging=QUIET,
                            meta={**load, "reset_optimizer": True})
    result = _cli(["--config", str(reset), "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert _state(tmp_path / "b" / "checkpoint.pt")["step"] == 17


def test_official_checkpoint_without_opt_says_what_is_missing(tmp_path):
    a = _run(tmp_path, "a", optimization={"max_steps": 2}, logging=QUIET)
    official = _as_official(_state(a / "checkpoint.pt"), build_method(tiny_config(tmp_path), "ijepa"), epoch=1)
    del official["opt"]
    torch.save(official, tmp_path / "weights-only.pth.tar")
    cfg = write_tiny_yaml(tmp_path / "cfg.yaml", tmp_path, "b", optimization={"max_steps": 17}, logging=QUIET,
                          meta={"load_checkpoint": True, "read_checkpoint": "weights-only.pth.tar"})
    assert _error_line(_cli(["--config", str(cfg)])) == (
        f"error: {tmp_path / 'weights-only.pth.tar'}: no optimizer state ('opt'): the checkpoint holds weights only; "
        "set meta.reset_optimizer: true to resume the weights with AdamW's moments restarted from zero")


# -- state dicts that do not describe a whole ViT (issue 27) ---------------------------------------
@pytest.mark.parametrize(("edit", "expect"), [
    (lambda s: s.pop("blocks.0.attn.proj.bias"), "state dict lacks blocks.0.attn.proj.bias: not the layout accepted"),
    (lambda s: s.pop("pos_embed"), "state dict lacks pos_embed: not the layout accepted"),
    (lambda s: s.update(pos_embed=s["pos_embed"][:, :15]), "pos_embed holds 15 positions, not a square grid"),
    (lambda s: s.update({"norm.weight": s["norm.weight"][:5]}), "size mismatch for norm.weight"),
])
def test_state_dict_missing_a_tensor_or_with_a_non_square_table_is_one_line(tmp_path, edit, expect):
    from ijepa.models.load import load_encoder
    from ijepa.models.registry import create_encoder

    state = create_encoder("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=1).state_dict()
    edit(state)
    torch.save({"target_encoder": state}, tmp_path / "enc.pt")
    with pytest.raises(ValueError) as e:
        load_encoder(tmp_path / "enc.pt")
    assert str(e.value).startswith(f"{tmp_path / 'enc.pt'}: {expect}") and "\n" not in str(e.value), str(e.value)


# -- a result that cannot be written is not lost (issue 27) ----------------------------------------
@pytest.mark.parametrize("fault", ["read-only", "disk full"])
def test_record_that_cannot_be_written_goes_to_stdout_then_one_line(tmp_path, monkeypatch, capsys, fault):
    from ijepa.results import io as records

    record = {"kind": "eval.knn", "encoder": "run:target_encoder", "dataset": "fashion-mnist", "top1": 0.8125}
    folder = Path(tempfile.mkdtemp(prefix="ijepa-ro-"))  # under /tmp, traversable by nobody
    try:
        folder.chmod(0o555)
        if fault == "disk full":
            def fills_the_disk(path, text):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            monkeypatch.setattr(records, "atomic_write_text", fills_the_disk)
        with _unprivileged(), pytest.raises(ValueError) as e:
            records.write_record(record, results_dir=folder)
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
    why = "Permission denied" if fault == "read-only" else "No space left on device"
    assert re.fullmatch(rf"{folder}/records\S*: cannot write the record \({why}\); the result is printed on stdout as one JSON line",
                        str(e.value)), str(e.value)
    printed = json.loads(capsys.readouterr().out)
    assert {k: printed[k] for k in record} == record and "created" in printed


# -- the explorer (issue 27) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def explore_server():
    import threading

    from fixtures.explore import tiny_explorer

    from ijepa.explore import make_server

    srv = make_server(tiny_explorer(2), 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(srv, method: str, path: str, host: str | None = None) -> tuple[int, bytes]:
    import http.client

    port = srv.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    conn.putheader("Content-Length", "0")
    conn.endheaders()
    r = conn.getresponse()
    out = r.status, r.read()
    conn.close()
    return out


@pytest.mark.parametrize("path", ["/", "/api/info", "/api/thumb/img-0.png", "/api/sample?image=img-0"])
def test_explorer_refuses_a_foreign_host_on_get(explore_server, path):
    """A DNS-rebinding page (its name now 127.0.0.1) sends its own name as Host."""
    port = explore_server.server_address[1]
    status, body = _request(explore_server, "GET", path, host=f"rebind.evil.example:{port}")
    assert status == 403 and json.loads(body)["error"].startswith("Host 'rebind.evil.example"), body[:200]
    assert _request(explore_server, "GET", path)[0] == 200


def test_explorer_keeps_a_bounded_number_of_uploads():
    from fixtures.explore import shapes_image, tiny_explorer
    from PIL import Image

    from ijepa.explore.session import MAX_UPLOADS

    explorer = tiny_explorer(2)
    buf = io.BytesIO()
    Image.fromarray(shapes_image(0)).save(buf, format="PNG")
    ids = [explorer.add_upload(buf.getvalue(), f"u{i}.png").id for i in range(MAX_UPLOADS + 5)]
    kept = [k for k, it in explorer.items.items() if it.source == "upload"]
    assert kept == ids[5:] and "img-0" in explorer.items
    with pytest.raises(KeyError, match="upload-0"):
        explorer.item(ids[0])


def test_explorer_client_that_hangs_up_early_is_one_log_line(explore_server, capsys):
    import socket
    import struct
    import time

    port = explore_server.server_address[1]
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /api/sample?image=img-0&seed=3 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # a reset, as a closed tab
    err = ""
    for _ in range(200):  # wait for the handler thread to meet the reset
        err += capsys.readouterr().err
        if err:
            time.sleep(0.2)
            err += capsys.readouterr().err
            break
        time.sleep(0.05)
    lines = err.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"explore: client 127\.0\.0\.1 hung up before the answer to .* \((ConnectionResetError|BrokenPipeError)\)", lines[0]), err
    assert _request(explore_server, "GET", "/api/info")[0] == 200


def test_missing_data_path_fails_before_the_model_is_built(tmp_path, monkeypatch):
    """The official ViT-H recipe built a 5.8 GB model for a minute before noticing."""
    import ijepa.training.loop as loop
    from ijepa.training.config import load_config

    def too_early(*a, **kw):
        raise AssertionError("the model was built before the data path was checked")

    monkeypatch.setattr(loop, "build_method", too_early)
    official = Path(__file__).parent / "fixtures" / "in1k_vith14_ep300.yaml"
    cfg = load_config(official, [f"logging.folder={tmp_path}", "meta.device=cpu", f"data.root_path={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path / 'nowhere'}/imagenet_full_size/061417: dataset not found"):
        Trainer(cfg, console=Console(file=io.StringIO()))


def test_non_utf8_record_is_named_and_skipped(tmp_path):
    from ijepa.results.io import read_records, write_record

    write_record({"kind": "eval.knn", "encoder": "a", "dataset": "d", "top1": 0.5}, results_dir=tmp_path)
    bad = tmp_path / "records" / "eval.knn" / "bad.json"
    bad.write_bytes(b'{"kind": "eval.knn", "top1": "\xff\xfe"}\n')
    with pytest.warns(UserWarning, match=r"^skipped records/eval.knn/bad.json: .*can't decode byte 0xff"):
        assert [r["encoder"] for r in read_records(tmp_path)] == ["a"]


# -- read-only folders and full disks wherever tables, plots, records and checkpoints go (issue 42) -
def _results_cli(args: list[str]):
    import ijepa.cli.results  # noqa: F401  (registers the command)
    from ijepa.cli import app

    return CliRunner().invoke(app, ["results", *args])


def _plottable(folder: Path) -> None:
    from ijepa.results.io import write_record

    write_record({"kind": "pretrain.compute", "encoder": "r", "run": "r", "method": "ijepa", "pretrain_flops": 1e15,
                  "pretrain_wall_s": 60.0}, results_dir=folder)
    write_record({"kind": "eval.linear", "encoder": "r:target_encoder", "dataset": "fashion-mnist", "top1": 0.8}, results_dir=folder)


def test_results_tables_and_plot_on_a_read_only_folder_are_one_line():
    import matplotlib.pyplot  # noqa: F401  (imported before the privileges drop: nobody cannot read every module file)

    import ijepa.results.plots  # noqa: F401
    import ijepa.results.readme  # noqa: F401

    folder = Path(tempfile.mkdtemp(prefix="ijepa-ro-"))  # under /tmp, traversable by nobody
    try:
        _plottable(folder)
        folder.chmod(0o555)
        with _unprivileged():
            tables, plot = _results_cli(["--results", str(folder)]), _results_cli(["--results", str(folder), "plot"])
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
    assert _error_line(tables) == f"error: {folder / 'summary.csv'}: cannot write the table (Permission denied)"
    assert _error_line(plot) == f"error: {folder / 'compute_vs_accuracy.png'}: cannot write the plot (Permission denied)"


def test_eval_on_a_read_only_results_folder_prints_the_record_then_one_line(tmp_path, monkeypatch):
    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    from ijepa.cli import app
    from ijepa.results import io as records

    def read_only(path, text):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(records, "atomic_write_text", read_only)
    tree = write_imagefolder(tmp_path / "tree", per_class={"train": 3, "val": 1})
    res = CliRunner().invoke(app, ["eval", "knn", "--data", str(tree), "--ks", "3", "--random-init", "vit_tiny", "--depth", "1", "--patch-size", "8",
                                   "--in-chans", "3", "--device", "cpu", "--no-cache", "--results", str(tmp_path / "ro")])
    record, error = (line for line in res.output.splitlines() if not line.startswith("features "))
    assert res.exit_code == 2 and json.loads(record)["kind"] == "eval.knn", res.output
    assert re.fullmatch(rf"error: {tmp_path / 'ro'}/records/eval\.knn/\S+\.json: cannot write the record \(Read-only file system\); "
                        r"the result is printed on stdout as one JSON line", error), error


def test_disk_full_during_a_decoder_checkpoint_is_one_line(tmp_path, monkeypatch):
    from fixtures.decoder import write_tiny_run

    import ijepa.cli.decoder  # noqa: F401  (registers the command)
    from ijepa.cli import app

    def fills_the_disk(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    run = write_tiny_run(tmp_path / "run")
    monkeypatch.setattr(torch, "save", fills_the_disk)
    res = CliRunner().invoke(app, ["decoder", "train", str(run), "--steps", "2", "--batch-size", "16", "--width", "64", "--depth", "1",
                                   "--train-images", "32", "--val-images", "16", "--no-baseline", "--results", str(tmp_path / "results")])
    ckpt = run / "decoder" / "checkpoint.pt"
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1] == \
        f"error: {ckpt}: cannot write the decoder checkpoint (No space left on device); no checkpoint was written", res.output
    assert "Traceback" not in res.output and not ckpt.exists() and not list(ckpt.parent.glob(".*.tmp"))


# -- records whose numbers cannot be are skipped, one line each, and never plotted (issue 42) ------
def test_records_with_impossible_numbers_are_named_skipped_and_never_plotted(tmp_path):
    from ijepa.results.io import load_records, write_record
    from ijepa.results.plots import compute_panels

    _plottable(tmp_path)
    bad = {
        "flops": {"kind": "pretrain.compute", "encoder": "neg", "run": "neg", "method": "mae", "pretrain_flops": -1e15, "pretrain_wall_s": 6.0},
        "head": {"kind": "eval.linear", "encoder": "neg:target_encoder", "dataset": "fashion-mnist", "top1": 0.5,
                 "best_by_features": {"lastPOOL": {"head": "h", "top1": 1.7}}},
        "fraction": {"kind": "eval.lowshot", "encoder": "r:target_encoder", "top1": 0.5,
                     "fractions": {"1.5": {"top1": 0.5, "top1_std": 0.0, "seeds": [{"n_labelled": 3}]}}},
    }
    paths = {name: write_record(rec, results_dir=tmp_path) for name, rec in bad.items()}
    inf = write_record({"kind": "eval.knn", "encoder": "e", "top1": 0.5, "feature_s": 1.0}, results_dir=tmp_path)
    inf.write_text(inf.read_text().replace('"feature_s": 1.0', '"feature_s": 1e999'))  # json reads it as inf
    res = _results_cli(["--results", str(tmp_path)])
    said = {line.split(": ", 1)[0].removeprefix("skipped "): line.split(": ", 1)[1] for line in res.output.splitlines() if line.startswith("skipped")}
    rel = lambda p: p.relative_to(tmp_path).as_posix()  # noqa: E731
    assert res.exit_code == 0 and said == {
        rel(paths["flops"]): "pretrain_flops is -1000000000000000.0; expected a finite number >= 0",
        rel(paths["head"]): "top1 is 1.7; expected a fraction in [0, 1]",
        rel(paths["fraction"]): "fractions[1.5]: expected a label fraction in (0, 1]",
        rel(inf): "feature_s is inf; a record holds finite numbers only",
    }, res.output
    panels = compute_panels(load_records(tmp_path)[0])
    assert [p["run"] for panel in panels.values() for p in panel.points] == ["r"]
    plot = _results_cli(["--results", str(tmp_path), "plot"])
    assert plot.exit_code == 0 and sum(line.startswith("skipped") for line in plot.output.splitlines()) == 4, plot.output
