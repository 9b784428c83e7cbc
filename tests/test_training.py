"""Pretraining loop: learning, schedules, EMA, weight decay, checkpoints, exact resume, collapse."""

from __future__ import annotations

import io
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from fixtures.pretrain import tiny_config, write_tiny_yaml
from rich.console import Console
from typer.testing import CliRunner

from ijepa.models.registry import create_encoder
from ijepa.training.ema import ema_update
from ijepa.training.loop import build_optimizer, pretrain, schedules_for
from ijepa.training.schedules import Schedules
from ijepa.training.step import IJEPA
from ijepa.typedconfig import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# 128 images / batch 16 = 8 steps per epoch, 2 epochs: the schedule runs out at step 16.
RUN = {"data": {"subset": 128}, "optimization": {"epochs": 2}, "logging": {"checkpoint_every": 3}}
OFFICIAL_KEYS = {"encoder", "predictor", "target_encoder", "opt", "scaler", "epoch", "loss", "batch_size", "world_size", "lr"}
SAME_COLUMNS = ["step", "epoch", "loss", "lr", "wd", "momentum", "ctx_len", "tgt_len", "target_std", "pred_std", "rankme", "probe_acc"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """One uninterrupted tiny run, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("runs")
    return pretrain(tiny_config(folder, "reference", **RUN), console=Console(file=io.StringIO()))


def test_loss_decreases(reference_run):
    log = pd.read_csv(reference_run / "log.csv")
    assert log["step"].tolist() == list(range(1, 17))
    first, last = log["loss"].iloc[:3].mean(), log["loss"].iloc[-3:].mean()
    assert math.isfinite(last) and last < 0.8 * first, (first, last)


def test_log_has_schedule_mask_and_cost_columns(reference_run):
    log = pd.read_csv(reference_run / "log.csv")
    sched = schedules_for(tiny_config(Path("."), **RUN), ipe=8)
    for _, row in log.iterrows():
        t = int(row["step"]) - 1
        assert (row["lr"], row["wd"], row["momentum"]) == pytest.approx((sched.lr_at(t), sched.wd_at(t), sched.momentum_at(t)))
    assert (log["ctx_len"] > 0).all() and (log["tgt_len"] > 0).all()
    assert (log["step_time_s"] > 0).all() and (log["img_per_s"] > 0).all() and (log["peak_mem_mb"] > 0).all()
    assert log["rankme"].notna().sum() == 5  # steps 1, 5, 10, 15 (diag_every 5) and the last, 16


def test_checkpoint_has_official_keys_and_ours(reference_run):
    ckpt = torch.load(reference_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert OFFICIAL_KEYS | {"step", "config", "rng"} <= set(ckpt)
    assert ckpt["step"] == 16 and ckpt["epoch"] == 2 and ckpt["batch_size"] == 16 and ckpt["world_size"] == 1
    log = pd.read_csv(reference_run / "log.csv")
    assert ckpt["loss"] == pytest.approx(log["loss"].iloc[-1]) and ckpt["lr"] == pytest.approx(log["lr"].iloc[-1])
    assert ckpt["config"] == tiny_config(reference_run.parent, "reference", **RUN).to_dict()
    assert isinstance(ckpt["rng"], torch.Tensor) and ckpt["rng"].dtype == torch.uint8
    assert "blocks.0.attn.qkv.weight" in ckpt["target_encoder"]
    assert "mask_token" in ckpt["predictor"] and "predictor_proj.weight" in ckpt["predictor"]
    assert not torch.equal(ckpt["encoder"]["blocks.0.attn.qkv.weight"], ckpt["target_encoder"]["blocks.0.attn.qkv.weight"])
    # Weight decay reached only the decayed group, at the schedule's last value.
    groups = ckpt["opt"]["param_groups"]
    sched = schedules_for(tiny_config(Path("."), **RUN), ipe=8)
    assert [g["weight_decay"] for g in groups] == [pytest.approx(sched.wd_at(15)), 0.0]


def test_resume_of_a_finished_run_changes_nothing(reference_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(reference_run, folder / "reference")
    ckpt, log = folder / "reference" / "checkpoint.pt", folder / "reference" / "log.csv"
    before = (ckpt.read_bytes(), log.read_text())
    cfg_path = write_tiny_yaml(tmp_path / "cfg.yaml", folder, "reference", **RUN)
    result = _cli(["pretrain", "--config", str(cfg_path), "--resume"])
    assert result.exit_code == 0, result.output
    assert (ckpt.read_bytes(), log.read_text()) == before
    assert math.isfinite(torch.load(ckpt, weights_only=True)["loss"])


def test_existing_run_without_resume_is_an_error(reference_run):
    with pytest.raises(FileExistsError, match="checkpoint.pt: a run already exists"):
        pretrain(tiny_config(reference_run.parent, "reference", **RUN))


def _cli(args: list[str]):
    import ijepa.cli.pretrain  # noqa: F401  (registers the command)
    from ijepa.cli import app

    return CliRunner().invoke(app, args)


def _state(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def _assert_bitwise_equal(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_bitwise_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_kill_and_resume_is_exact(reference_run, tmp_path):
    """SIGKILL a real `ijepa pretrain` after its first checkpoint, `--resume`: same trajectory."""
    folder = reference_run.parent
    cfg_path = write_tiny_yaml(tmp_path / "cfg.yaml", folder, "killed", **RUN)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # same kernels as this process
    ijepa = str(Path(sys.executable).with_name("ijepa"))
    proc = subprocess.Popen([ijepa, "pretrain", "--config", str(cfg_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt, give_up = folder / "killed" / "checkpoint.pt", time.monotonic() + 300
    while not ckpt.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < give_up, "no checkpoint within 300 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    killed_at = _state(folder / "killed")["step"]
    assert killed_at < 16, "the run finished before it could be killed"

    result = _cli(["pretrain", "--config", str(cfg_path), "--resume", "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    ref, res = pd.read_csv(reference_run / "log.csv"), pd.read_csv(folder / "killed" / "log.csv")
    pd.testing.assert_frame_equal(ref[SAME_COLUMNS], res[SAME_COLUMNS], check_exact=True)
    a, b = _state(reference_run), _state(folder / "killed")
    for key in ("encoder", "predictor", "target_encoder", "opt", "probe", "probe_opt", "step", "loss", "lr", "std0"):
        _assert_bitwise_equal(a[key], b[key], key)


def _as_from_a_terminal() -> None:
    """SIGINT as a foreground command has it (a shell's background job, as pytest may be, ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_saves_the_step_reached_and_the_printed_resume_is_exact(reference_run, tmp_path):
    """SIGINT to the process group after the first logged step, as Ctrl-C in a terminal sends
    it (the loader worker gets it too): the run saves the step it reached, prints the command
    that continues it and exits 130; that command ends bit for bit where an uninterrupted run does."""
    folder, run = reference_run.parent, reference_run.parent / "interrupted"
    cfg_path = write_tiny_yaml(tmp_path / "cfg.yaml", folder, "interrupted", data={**RUN["data"], "num_workers": 1},
                               optimization=RUN["optimization"], logging={"checkpoint_every": 1000, "progress": True})
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": str(ROOT)}  # same kernels as this process
    main = "import sys; from ijepa.cli import main; sys.argv[0] = 'ijepa'; main()"
    proc = subprocess.Popen([sys.executable, "-c", main, "pretrain", "--config", str(cfg_path), "--results", str(tmp_path / "r")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)
    for line in proc.stderr:
        if line.startswith("step "):
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait() == 130, rest
    at = _state(run)["step"]
    assert 1 <= at < 16, "the run finished before it could be interrupted"
    last = rest.strip().splitlines()[-1]
    assert last == (f"interrupted: SIGINT at step {at}/16: saved {run / 'checkpoint.pt'}; continue with: "
                    f"ijepa pretrain --resume --set logging.folder={folder} --set logging.write_tag=interrupted"), rest
    assert not list(run.glob(".*.tmp")) and not (tmp_path / "r").exists()  # no record for a run cut short

    command = shlex.split(last.split("continue with: ")[1])
    result = _cli([*command[1:], "--results", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    ref, res = pd.read_csv(reference_run / "log.csv"), pd.read_csv(run / "log.csv")
    pd.testing.assert_frame_equal(ref[SAME_COLUMNS], res[SAME_COLUMNS], check_exact=True)
    a, b = _state(reference_run), _state(run)
    for key in ("encoder", "predictor", "target_encoder", "opt", "probe", "probe_opt", "step", "loss", "lr", "std0"):
        _assert_bitwise_equal(a[key], b[key], key)


@pytest.mark.parametrize("repeat_ignored", [False, True])
def test_a_second_signal_acts_at_once_unless_ignored(repeat_ignored):
    """Ctrl-C twice stops without saving; under torchrun the launcher's copy of the signal is ignored."""
    from ijepa.training.interrupt import StopRequest

    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a foreground command has it
    raised = False
    try:
        with StopRequest(repeat_ignored=repeat_ignored) as stop:
            signal.raise_signal(signal.SIGINT)
            assert stop.signum == signal.SIGINT
            signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        raised = True
    finally:
        restored = signal.signal(signal.SIGINT, outer)
    assert raised != repeat_ignored and restored is signal.default_int_handler


def test_a_signal_the_process_ignores_stays_ignored():
    """`nohup ijepa pretrain &` keeps ignoring Ctrl-C, as Python does."""
    from ijepa.training.interrupt import StopRequest

    outer = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopRequest() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
        assert stop.signum is None
    finally:
        signal.signal(signal.SIGINT, outer)


def test_collapse_warning_fires_and_stops_the_run(tmp_path):
    """A real collapse: weight decay x lr = 1 wipes the weights, EMA 0 copies them to the target."""
    out = io.StringIO()
    cfg = tiny_config(
        tmp_path, "collapse",
        optimization={"max_steps": 8, "start_lr": 1e-3, "lr": 1e-3, "weight_decay": 1000.0,
                      "final_weight_decay": 1000.0, "ema": [0.0, 0.0]},
        logging={"diag_every": 1, "stop_on_collapse": True},
    )
    run = pretrain(cfg, console=Console(file=out, width=300))
    assert "representation collapse" in out.getvalue()
    log = pd.read_csv(run / "log.csv")
    assert len(log) < 8 and log["target_std"].iloc[-1] < 0.2 * log["target_std"].iloc[0]
    ckpt = _state(run)
    assert ckpt["collapse_warned"] and ckpt["step"] == len(log)


def test_no_collapse_warning_on_a_healthy_run(reference_run):
    assert not _state(reference_run)["collapse_warned"]


# -- schedules --------------------------------------------------------------------------------
def official_lr(t: int, *, warmup: int, start: float, ref: float, final: float, total: int) -> float:
    """src/utils/schedulers.py WarmupCosineSchedule after its (t + 1)-th step() call."""
    s = t + 1
    if s < warmup:
        return start + s / max(1, warmup) * (ref - start)
    progress = (s - warmup) / max(1, total - warmup)
    return max(final, final + (ref - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def official_wd(t: int, *, ref: float, final: float, total: int) -> float:
    wd = final + (ref - final) * 0.5 * (1.0 + math.cos(math.pi * (t + 1) / total))
    return max(final, wd) if final <= ref else min(final, wd)


def test_schedules_match_the_official_schedulers():
    s = Schedules(total_steps=50, warmup_steps=10, start_lr=2e-4, lr=1e-3, final_lr=1e-6,
                  weight_decay=0.04, final_weight_decay=0.4, ema=(0.996, 1.0))
    for t in range(50):
        assert s.lr_at(t) == pytest.approx(official_lr(t, warmup=10, start=2e-4, ref=1e-3, final=1e-6, total=50), abs=1e-12)
        assert s.wd_at(t) == pytest.approx(official_wd(t, ref=0.04, final=0.4, total=50), abs=1e-12)
        assert s.momentum_at(t) == pytest.approx(0.996 + t * 0.004 / 50, abs=1e-12)
    assert s.lr_at(0) == pytest.approx(2e-4 + 0.1 * 8e-4)
    assert s.lr_at(9) == pytest.approx(1e-3)  # end of warm-up: the peak
    assert s.lr_at(29) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)  # half-way through the cosine
    assert s.lr_at(49) == pytest.approx(1e-6)
    assert s.wd_at(24) == pytest.approx(0.22) and s.wd_at(49) == pytest.approx(0.4)
    assert s.momentum_at(0) == 0.996 and s.momentum_at(50) == pytest.approx(1.0) and s.momentum_at(80) == 1.0


def test_schedule_lengths_follow_ipe_scale():
    cfg = tiny_config(Path("."), optimization={"epochs": 3, "warmup": 1.5, "ipe_scale": 1.25})
    s = schedules_for(cfg, ipe=8)
    assert (s.total_steps, s.warmup_steps) == (30, 12)


# -- EMA and weight decay ------------------------------------------------------------------------
def test_ema_update_is_exact_and_skips_frozen_params():
    torch.manual_seed(0)
    online = create_encoder("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=1)
    target = create_encoder("vit_tiny", img_size=16, patch_size=4, in_chans=1, depth=1).requires_grad_(False)
    before_t = {k: v.clone() for k, v in target.state_dict().items()}
    before_o = {k: v.clone() for k, v in online.state_dict().items()}
    ema_update(target, online, 0.9)
    for (k, t), o in zip(target.named_parameters(), online.parameters(), strict=True):
        expect = before_t[k] if not o.requires_grad else 0.9 * before_t[k] + 0.1 * before_o[k]
        torch.testing.assert_close(t, expect, rtol=0, atol=1e-7)
    _assert_bitwise_equal(online.state_dict(), before_o)
    ema_update(target, online, 0.0)
    _assert_bitwise_equal(target.state_dict(), online.state_dict())


def test_no_weight_decay_on_biases_and_1d_params(tmp_path):
    model = IJEPA(tiny_config(tmp_path))
    opt = build_optimizer(model.trainable(), fused=False)
    names = {id(p): f"{k}.{n}" for k, m in model.trainable().items() for n, p in m.named_parameters()}
    decay, no_decay = ({names[id(p)] for p in g["params"]} for g in opt.param_groups)
    assert opt.param_groups[1]["weight_decay"] == 0.0 and not opt.param_groups[1]["apply_wd"]
    assert all(n.endswith(".bias") or "norm" in n for n in no_decay)
    assert all(not n.endswith(".bias") and "norm" not in n for n in decay)
    assert "encoder.patch_embed.proj.weight" in decay and "predictor.mask_token" in decay  # official groups
    assert not any("target_encoder" in n or "pos_embed" in n for n in decay | no_decay)
    # With zero gradients AdamW moves only the decayed group, by exactly lr * wd.
    for g in opt.param_groups:
        g["lr"] = 0.1
        if g["apply_wd"]:
            g["weight_decay"] = 0.5
    params = [p for g in opt.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, b in zip(params, before, strict=True):
        expect = b * (1 - 0.05) if names[id(p)] in decay else b
        torch.testing.assert_close(p.detach(), expect, rtol=1e-6, atol=0)


def test_target_layers_average_layer_normed_blocks(tmp_path):
    """target_layers=K: the mean of the last K blocks, each layer-normed (data2vec targets);
    K=1 is the official last-block output; K beyond the depth is a config error."""
    cfg = tiny_config(tmp_path, meta={"depth": 3, "target_layers": 2})
    model = IJEPA(cfg).eval()
    x = torch.randn(2, 1, 32, 32)
    outs = model.target_encoder.forward_intermediates(x, [1, 2], norm=False)
    want = (torch.nn.functional.layer_norm(outs[0], (192,)) + torch.nn.functional.layer_norm(outs[1], (192,))) / 2
    torch.testing.assert_close(model.targets(x), want)
    model.target_layers = 1
    torch.testing.assert_close(model.targets(x), model.target_encoder(x))
    with pytest.raises(ConfigError, match="target_layers"):
        IJEPA(tiny_config(tmp_path, meta={"depth": 3, "target_layers": 4}))


def test_sigreg_separates_gaussian_from_collapse():
    """SIGReg is near 0 for isotropic Gaussian features and large for collapsed or shifted ones."""
    from ijepa.training.step import sigreg

    torch.manual_seed(0)
    gauss = sigreg(torch.randn(512, 32))
    assert gauss < 1.0
    assert sigreg(torch.zeros(512, 32) + 0.1) > 20 * gauss
    assert sigreg(torch.randn(512, 32) * 0.2) > 10 * gauss
