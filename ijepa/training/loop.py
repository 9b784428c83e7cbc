"""One pretraining loop for every method: data, schedules, optimizer, EMA, logs, checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import resource
import signal
import time
from pathlib import Path

import torch
import yaml
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ijepa.atomic import atomic_save, atomic_write, remove_stale_temps
from ijepa.data import eval_transform
from ijepa.data.loader import worker_errors
from ijepa.devices import bf16_autocast, varlen_attention
from ijepa.distributed import DistInfo, init_distributed
from ijepa.models.checkpoint import read_checkpoint
from ijepa.progress import progress_bar
from ijepa.rundir import RunError, RunLock
from ijepa.training.checkpointing import (
    RESET_HINT,
    check_opt_state,
    check_resume,
    keep_copy,
    strip_prefix,
)
from ijepa.training.config import Config, from_dict, load_config
from ijepa.training.data import PretrainData
from ijepa.training.diagnostics import OnlineProbe, rankme
from ijepa.training.distributed import device_type_of, resolve_device
from ijepa.training.interrupt import Interrupted, StopRequest, resume_command
from ijepa.training.logging import CSVLog, duration, progress_line
from ijepa.training.mae import MAE
from ijepa.training.resume import check_world_size
from ijepa.training.schedules import Schedules, scale_to_steps
from ijepa.training.step import IJEPA
from ijepa.typedconfig import ConfigError, keys_of

METHODS = {"ijepa": IJEPA, "mae": MAE}
NONFINITE = {1: "loss is NaN", 2: "loss is infinite", 3: "gradient is not finite"}  # codes of nonfinite_code


def build_optimizer(modules: dict[str, nn.Module], *, fused: bool) -> torch.optim.AdamW:
    """AdamW; biases and 1-D params get no weight decay (official param groups)."""
    decay, no_decay = [], []
    for module in modules.values():
        for name, p in module.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "apply_wd": True}, {"params": no_decay, "weight_decay": 0.0, "apply_wd": False}]
    return torch.optim.AdamW(groups, fused=fused)


def build_method(cfg: Config, method: str) -> nn.Module:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return METHODS[method](cfg)


def optimizer_step(
    model: nn.Module, modules: dict[str, nn.Module], opt: torch.optim.Optimizer, micro: list, *,
    lr: float, wd: float, momentum: float, autocast: torch.autocast, ddp: bool = False,
) -> tuple[torch.Tensor, dict]:
    """One optimizer step over micro-batches (imgs, masks_enc, masks_pred), then the EMA.

    A function of its arguments alone, so `ijepa bench` times exactly what the Trainer runs.
    Returns the mean loss as a tensor and the stats, with `nonfinite` (see `nonfinite_code`):
    nothing here waits for the device.
    """
    for g in opt.param_groups:
        g["lr"] = lr
        if g["apply_wd"]:
            g["weight_decay"] = wd
    total = None
    for i, (imgs, masks_enc, masks_pred) in enumerate(micro):
        sync = i == len(micro) - 1 or not ddp
        ctx = contextlib.nullcontext() if sync else contextlib.ExitStack()
        if not sync:
            for m in modules.values():
                ctx.enter_context(m.no_sync())
        with ctx, autocast:
            loss, stats = model(imgs, masks_enc, masks_pred, **modules)
            (loss / len(micro)).backward()
        part = loss.detach() / len(micro)
        total = part if total is None else total + part
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    code = nonfinite_code(total, torch.nn.utils.get_total_norm(grads))
    opt.step()
    opt.zero_grad(set_to_none=True)
    model.after_step(momentum)
    return total, {**stats, "nonfinite": code}


def nonfinite_code(loss: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
    """0 if loss and gradients are finite, else the NONFINITE code, as a device tensor.

    Computed every step but read only at log and checkpoint boundaries, so a GPU is never
    made to wait for it. Under DDP the gradients are all-reduced: every rank sees the same.
    """
    return torch.where(loss.isnan(), 1, torch.where(loss.isinf(), 2, torch.where(grad_norm.isfinite(), 0, 3)))


def official_opt_state(ckpt: dict, opt: torch.optim.Optimizer, modules: dict[str, nn.Module]) -> dict:
    """The official optimizer's state, re-keyed for ours.

    Its 4 groups (encoder decay, predictor decay, encoder no-decay, predictor no-decay) number
    every parameter in state-dict order, frozen position tables included; ours number only
    the trained ones, in 2 groups. Matched by name.
    """
    official = []
    for decay in (True, False):
        for k in ("encoder", "predictor"):
            names = [n for n, t in strip_prefix(ckpt[k]).items() if ("bias" not in n and t.ndim != 1) == decay]
            official += [f"{k}.{n}" for n in names]
    name_of = {id(p): f"{k}.{n}" for k, m in modules.items() for n, p in m.named_parameters()}
    ours = {name_of[id(p)]: i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
    saved = ckpt["opt"]["state"]
    state = {ours[n]: saved[i] for i, n in enumerate(official) if i in saved and n in ours}
    return {"state": state, "param_groups": opt.state_dict()["param_groups"]}


def schedules_for(cfg: Config, ipe: int) -> Schedules:
    o = cfg.optimization
    return Schedules(
        total_steps=int(o.ipe_scale * o.epochs * ipe), warmup_steps=max(1, int(o.warmup * ipe)),
        start_lr=o.start_lr, lr=o.lr, final_lr=o.final_lr, weight_decay=o.weight_decay,
        final_weight_decay=o.final_weight_decay, ema=o.ema,
    )


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.logging.folder) / cfg.logging.write_tag


PATH_KEYS = ("data.root_path", "data.image_folder", "logging.folder", "logging.write_tag", "meta.read_checkpoint")
PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_]")  # the official configs' `$replace_this_with_...`, or any unexpanded $VAR


def check_placeholders(cfg: Config) -> None:
    """Refuse paths still holding a `$name`: the official configs ship two such placeholders,
    and a run would otherwise create a directory literally called `$replace_this_...`."""
    values = {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in PATH_KEYS}
    bad = {k: v for k, v in values.items() if v and PLACEHOLDER.search(v)}
    if bad:
        raise ConfigError(f"{', '.join(bad)}: placeholder path{'s' if len(bad) > 1 else ''} "
                          f"({', '.join(repr(v) for v in bad.values())}); set "
                          f"{'them' if len(bad) > 1 else 'it'}: {' '.join(f'--set {k}=PATH' for k in bad)}")


class Trainer:
    """State of one run; `fit()` runs it to the end of its schedule (or max_steps).

    The main process holds the run directory's lock from construction to the end of `fit()`.
    """

    def __init__(
        self, cfg: Config, *, method: str = "ijepa", resume: bool = False, steps: int | None = None, console: Console | None = None,
    ) -> None:
        """`steps`: a new run's whole schedule scaled to that many steps (`scale_to_steps`)."""
        check_placeholders(cfg)
        self.cfg, self.console = cfg, console or Console(stderr=True)
        self.info: DistInfo = init_distributed(device_type_of(cfg.meta.device))
        self.device = resolve_device(cfg.meta.device, self.info)
        varlen_attention(self.device, method)
        self.run_dir = run_dir_of(cfg)
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        source = self._resume_source(resume)
        self._build(method, steps=steps, new_run=source is None)  # model and data first: a config that cannot run creates nothing on disk
        self.lock = RunLock(self.run_dir).acquire() if self.info.is_main else None
        try:
            if self.info.is_main and (stale := remove_stale_temps(self.run_dir)):
                self.console.print(f"removed {len(stale)} temp file(s) left by an interrupted save in {self.run_dir}")
            if source:
                self._load(self._read_resume(source), source)
            self.start_step = self.step
            self.modules = self._wrap()
        except BaseException:
            self.close()
            raise

    def _build(self, method: str, *, steps: int | None, new_run: bool) -> None:
        cfg = self.cfg
        self.method_name = method
        # The data first (it draws nothing from torch's global RNG): a missing dataset fails before a big model is built.
        self.data = PretrainData(cfg, self.info, pin_memory=self.device.type == "cuda" and cfg.data.pin_mem, method=method)
        torch.manual_seed(cfg.meta.seed)  # same on every rank: DDP syncs only the trained modules, not the EMA target
        self.model = build_method(cfg, method).to(self.device)
        self.accum = cfg.optimization.accum_steps
        self.ipe = self.data.batches_per_epoch // self.accum
        if self.ipe < 1:
            raise ValueError(f"one epoch has {self.data.batches_per_epoch} batches, fewer than optimization.accum_steps={self.accum}")
        self.steps = steps if new_run else None  # a schedule scaled now, said at the start
        self._apply_steps(steps, new_run=new_run)
        self.sched = schedules_for(self.cfg, self.ipe)
        self.opt = build_optimizer(self.model.trainable(), fused=True)
        self.autocast, _ = bf16_autocast(self.device, use_bfloat16=cfg.meta.use_bfloat16, cpu_bfloat16=cfg.meta.cpu_bfloat16)
        self.probe = OnlineProbe(self.model.encoder.embed_dim, self.data.num_classes).to(self.device) if cfg.logging.online_probe else None
        self.step, self.std0, self.collapse_warned, self.last_good = 0, None, False, None
        self.wall_s0, self.t_start, self.t_end, self.last_row = 0.0, None, None, None  # wall_s0: training seconds before this session
        self.bad_step = torch.zeros((), dtype=torch.long, device=self.device)  # first non-finite step, on the device
        self.bad_code = torch.zeros_like(self.bad_step)
        self.stop = StopRequest()

    def _apply_steps(self, steps: int | None, *, new_run: bool) -> None:
        """A new run gets its schedule scaled to `steps`; a resumed one keeps the schedule it stored."""
        if not steps:
            return
        o = self.cfg.optimization
        scaled = scale_to_steps(o, steps, self.ipe)
        if new_run and o.max_steps not in (0, steps):
            raise ConfigError(f"--steps {steps} with optimization.max_steps {o.max_steps}: give one (--steps scales the schedule "
                              "to its steps, max_steps stops the configured schedule early)")
        if new_run:
            self.cfg = dataclasses.replace(self.cfg, optimization=scaled)
        elif scaled != o:
            raise ConfigError(f"--steps {steps}: the run in {self.run_dir} was not scaled to {steps} steps (its config.yaml: "
                              f"optimization.max_steps {o.max_steps}); resume it without --steps, or start a new run (logging.write_tag)")

    def close(self) -> None:
        """Release the run directory; the trained state stays readable."""
        if self.lock:
            self.lock.release()

    @property
    def wall_s(self) -> float:
        """Seconds of training that reached a checkpoint or the end, over every session of the run."""
        if self.t_start is None:
            return self.wall_s0
        return self.wall_s0 + (self.t_end or time.perf_counter()) - self.t_start

    def _wrap(self) -> dict[str, nn.Module]:
        mods = dict(self.model.trainable())
        if self.cfg.meta.compile:
            mods = {k: torch.compile(m, dynamic=True) for k, m in mods.items()}
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # static_graph breaks under no_sync (gradient accumulation): pytorch/pytorch#143580
            static = self.accum == 1
            mods = {k: DDP(m, device_ids=ids, static_graph=static) for k, m in mods.items()}
        return mods

    # -- checkpoints ----------------------------------------------------------------------
    def state(self, loss: float) -> dict:
        s = {k: getattr(self.model, k).state_dict() for k in self.model.checkpoint_keys}
        s.update(
            opt=self.opt.state_dict(), scaler=None, epoch=self.step // self.ipe, step=self.step, loss=loss,
            batch_size=self.cfg.data.batch_size, world_size=self.info.world_size, lr=self.sched.lr_at(max(0, self.step - 1)),
            method=self.method_name, config=self.cfg.to_dict(), rng=torch.get_rng_state(),
            std0=self.std0, collapse_warned=self.collapse_warned, wall_s=self.wall_s,
            probe=self.probe.state_dict() if self.probe else None,
            probe_opt=self.probe.opt.state_dict() if self.probe else None,
        )
        return s

    def _resume_source(self, resume: bool) -> Path | None:
        """The checkpoint to start from: meta.read_checkpoint (official semantics), else ours."""
        meta = self.cfg.meta
        if meta.load_checkpoint:
            path = Path(self.cfg.logging.folder) / meta.read_checkpoint if meta.read_checkpoint else self.ckpt_path
            if not path.is_file():
                raise FileNotFoundError(f"{path}: checkpoint not found (meta.load_checkpoint resumes from "
                                        "logging.folder/meta.read_checkpoint, or the run's checkpoint.pt if that is unset)")
            return path
        if self.ckpt_path.exists():
            if not resume:
                raise FileExistsError(f"{self.ckpt_path}: a run already exists here; pass --resume or set logging.write_tag")
            return self.ckpt_path
        if resume:
            self.console.print(f"no checkpoint at {self.ckpt_path}: starting a new run")
        return None

    def _read_resume(self, path: Path) -> dict:
        """Read the checkpoint and hold this config to the stored one (config.yaml beside it, else
        the checkpoint's own); an official checkpoint carries none."""
        s = read_checkpoint(path)
        stored_yaml, mode = path.parent / "config.yaml", "meta.load_checkpoint" if self.cfg.meta.load_checkpoint else "--resume"
        check_world_size(s, self.info.world_size, path, mode)
        if not stored_yaml.is_file() and not isinstance(s.get("config"), dict):
            return s
        source = stored_yaml if stored_yaml.is_file() else path
        try:
            stored = load_config(stored_yaml) if stored_yaml.is_file() else from_dict(s["config"])
        except ConfigError as e:
            raise RunError(f"{source}: the stored config does not load ({e})") from None
        check_resume(self.cfg, stored, keys_of(Config), source, mode)
        return s

    def _load(self, s: dict, path: Path) -> None:
        """Our checkpoint resumes exactly; an official one (no `step`) at its epoch, as the official trainer does."""
        for k in self.model.checkpoint_keys:
            if k not in s:
                raise ValueError(f"{path}: no {k!r} weights (not a {self.method_name} checkpoint)")
            try:
                getattr(self.model, k).load_state_dict(strip_prefix(s[k]))
            except RuntimeError as e:
                raise ValueError(f"{path}: {k} weights do not fit this config's model ({str(e).splitlines()[-1].strip()})") from None
        official = "step" not in s
        self._load_opt(s, path, official)
        if official:
            self.step = int(s["epoch"]) * self.ipe
            if self.info.is_main:
                self.console.print(f"resuming from the official checkpoint {path} at its epoch {int(s['epoch'])}: step {self.step} "
                                   f"({self.ipe} steps per epoch), as the official trainer does (it saves no data or RNG position)",
                                   highlight=False, soft_wrap=True, markup=False)
        else:
            self.step, self.std0, self.collapse_warned = s["step"], s["std0"], s["collapse_warned"]
            self.wall_s0 = float(s.get("wall_s") or 0.0)
            torch.set_rng_state(s["rng"].cpu())
            if self.probe and s.get("probe"):
                self.probe.load_state_dict(s["probe"])
                self.probe.opt.load_state_dict(s["probe_opt"])
        self.last_good = (self.step, path)

    def _load_opt(self, s: dict, path: Path, official: bool) -> None:
        """AdamW's state, checked against the parameters first; skipped only when asked."""
        if self.cfg.meta.reset_optimizer:
            self.console.print(f"meta.reset_optimizer: weights from {path}, AdamW's moments restarted from zero")
            return
        if not isinstance(s.get("opt"), dict):
            raise RunError(f"{path}: no optimizer state ('opt'): the checkpoint holds weights only; {RESET_HINT}")
        try:
            state = official_opt_state(s, self.opt, self.model.trainable()) if official else s["opt"]
        except (KeyError, TypeError, AttributeError) as e:
            raise RunError(f"{path}: optimizer state ('opt') is malformed ({e.__class__.__name__}: {e}); {RESET_HINT}") from None
        names = {id(p): f"{k}.{n}" for k, m in self.model.trainable().items() for n, p in m.named_parameters()}
        check_opt_state(state, self.opt, names, path)
        self.opt.load_state_dict(state)

    def save(self, loss: float) -> None:
        """Check the state, then write checkpoint.pt and keep a copy: never a non-finite state."""
        self._check_finite()
        weights = [t for k in self.model.checkpoint_keys for t in getattr(self.model, k).state_dict().values() if t.is_floating_point()]
        if not bool(torch.stack([t.isfinite().all() for t in weights]).all()):
            raise RunError(f"weights are not finite after step {self.step}; {self.last_good_text()}")
        if self.info.is_main:
            try:
                atomic_save(self.state(loss), self.ckpt_path)
                self.last_good = (self.step, self.ckpt_path)  # already, should keeping the copy fail
                keep_copy(self.ckpt_path, self.step, self.cfg.logging.keep_last)
            except OSError as e:
                raise RunError(f"{e.filename or self.ckpt_path}: cannot write the checkpoint ({e.strerror or e}); {self.last_good_text()}") from None
        self.last_good = (self.step, self.ckpt_path)
        if self.info.enabled:
            torch.distributed.barrier()

    def last_good_text(self) -> str:
        if self.last_good is None:
            return "no checkpoint was written"
        return f"last good checkpoint: step {self.last_good[0]} ({self.last_good[1]})"

    def _track(self, code: torch.Tensor) -> None:
        """Remember the first non-finite step on the device (no host sync)."""
        new = (self.bad_code == 0) & (code != 0)
        self.bad_step = torch.where(new, self.step, self.bad_step)
        self.bad_code = torch.where(new, code, self.bad_code)

    def _check_finite(self) -> None:
        """At a log or checkpoint boundary: stop if any step since the start was non-finite."""
        code = int(self.bad_code)
        if code:
            raise RunError(f"{NONFINITE[code]} at step {int(self.bad_step)}; {self.last_good_text()}")

    # -- one optimizer step ---------------------------------------------------------------
    def train_step(self, micro: list) -> tuple[torch.Tensor, dict]:
        s = self.step
        return optimizer_step(
            self.model, self.modules, self.opt, micro, lr=self.sched.lr_at(s), wd=self.sched.wd_at(s),
            momentum=self.sched.momentum_at(s), autocast=self.autocast, ddp=self.info.enabled,
        )

    def _to_device(self, batch) -> tuple:
        (imgs, labels), masks_enc, masks_pred = batch
        nb = self.device.type == "cuda"
        mv = [m.to(self.device, non_blocking=nb) for m in masks_enc], [m.to(self.device, non_blocking=nb) for m in masks_pred]
        return imgs.to(self.device, non_blocking=nb), labels.to(self.device, non_blocking=nb), *mv

    def _diag_batch(self) -> torch.Tensor:
        spec, cfg = self.data.spec, self.cfg
        tf = eval_transform(cfg.data.crop_size, in_chans=cfg.meta.in_chans, mean=spec.mean, std=spec.std)
        base = self.data.views.base
        return torch.stack([tf(base[i][0]) for i in range(min(256, len(base)))]).to(self.device)

    @torch.no_grad()
    def _rankme(self, diag: torch.Tensor) -> float:
        with self.autocast:
            return rankme(self.model.eval_encoder()(diag).mean(1))

    def _check_collapse(self, std: float) -> bool:
        if self.std0 is None:
            self.std0 = std
        collapsed = std < self.cfg.logging.collapse_ratio * self.std0
        if collapsed and not self.collapse_warned and self.info.is_main:
            self.console.print(
                f"[bold red]WARNING: representation collapse? target-feature std {std:.4f} is below "
                f"{self.cfg.logging.collapse_ratio:g} x its start ({self.std0:.4f}) at step {self.step}. "
                "Lower optimization.lr or raise optimization.ema[0]."
            )
            self.collapse_warned = True
        return collapsed

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train to the schedule's end (or max_steps), then release the run directory.

        A non-finite loss, gradient or weight, or a failed write, stops it with a RunError
        naming the last good checkpoint; SIGINT or SIGTERM, after saving the step it reached,
        with `Interrupted`.
        """
        log = None
        try:
            if self.info.is_main:
                log = CSVLog(self.run_dir / "log.csv", resume_step=self.step)
                atomic_write(self.run_dir / "config.yaml", lambda f: yaml.safe_dump(self.cfg.to_dict(), f, sort_keys=False))
            with StopRequest(repeat_ignored=self.info.enabled) as self.stop:
                self._train(log)
        finally:
            self.t_end = time.perf_counter()
            if log:
                log.close()
            self.close()
        if self.info.is_main:
            self.console.print(self.summary(), highlight=False, soft_wrap=True, markup=False)
        return self.run_dir

    def stop_step(self) -> int:
        """Train `epochs` epochs (schedules span ipe_scale x that: official semantics), or max_steps."""
        stop = max(1, int(self.cfg.optimization.epochs * self.ipe))
        return min(stop, self.cfg.optimization.max_steps or stop)

    def summary(self) -> str:
        """One line: where the run is and its headline numbers."""
        stop, where = self.stop_step(), f"{self.run_dir}: step {self.step}/{self.stop_step()} ({self.step / self.ipe:.2f} epochs)"
        if self.step == self.start_step:
            return f"{where}: nothing to train (the run had already reached its last step)" if self.step >= stop else where
        parts = [f"{self.step - self.start_step} steps in {duration(self.t_end - self.t_start)}"]
        if self.step < stop:
            parts.append(f"stopped early, {stop - self.step} steps short")
        if (row := self.last_row) is not None:
            parts.append(f"loss {row['loss']:.4f}, {row['img_per_s']:.0f} img/s")
            parts += [f"online probe {row['probe_acc']:.1%}"] if row["probe_acc"] != "" else []
        return f"done: {where}; {'; '.join(parts)}; checkpoint.pt, log.csv"

    def _train(self, log: CSVLog | None) -> None:
        cfg, lg = self.cfg, self.cfg.logging
        stop = self.stop_step()
        diag = self._diag_batch() if lg.diag_every and self.step < stop else None
        start_time, last_loss, imgs_per_step = time.perf_counter(), float("nan"), cfg.data.batch_size * self.accum * self.info.world_size
        self.t_start = start_time
        # A terminal gets a live bar; a file or pipe gets one plain line per log row.
        shown = lg.progress and self.info.is_main
        lines = shown and not self.console.is_terminal
        bar = progress_bar(self.console, shown and self.console.is_terminal)
        task = bar.add_task("pretrain", total=stop, completed=self.step, info="")
        if self.info.is_main and self.step < stop:
            for note in self._start_notes():
                self.console.print(note, highlight=False, soft_wrap=True, markup=False)
        if lines and self.step < stop:
            self.console.print(f"pretrain {self.run_dir}: step {self.step} -> {stop} ({stop / self.ipe:.2f} epochs of {self.ipe} steps), "
                               f"{imgs_per_step} images per step on {self.device}", highlight=False, soft_wrap=True, markup=False)
        with bar:
            while self.step < stop:
                epoch, offset = divmod(self.step, self.ipe)
                loader = self.data.epoch_loader(epoch, offset * self.accum)
                micro, t0 = [], time.perf_counter()
                for batch in worker_errors(loader):
                    imgs, labels, masks_enc, masks_pred = self._to_device(batch)
                    micro.append((imgs, masks_enc, masks_pred))
                    if len(micro) < self.accum:
                        continue
                    loss, stats = self.train_step(micro)
                    probe_acc = self.probe.step(stats["pooled"], labels) if self.probe else None
                    self.step += 1
                    self._track(stats["nonfinite"])
                    micro, dt = [], time.perf_counter() - t0
                    row = self._row(epoch, loss, stats, probe_acc, masks_enc, masks_pred, dt, imgs_per_step, start_time, diag, last=self.step >= stop)
                    if row is not None:
                        last_loss, self.last_row = row["loss"], row
                        if log:
                            log.write(row)
                        bar.update(task, completed=self.step, info=f"loss {row['loss']:.4f} lr {row['lr']:.2e} {row['img_per_s']:.0f} img/s")
                        if lines:
                            done = self.step - self.start_step
                            eta = (time.perf_counter() - start_time) / done * (stop - self.step)
                            self.console.print(progress_line(row, stop, eta), highlight=False, soft_wrap=True, markup=False)
                    else:
                        bar.update(task, completed=self.step)
                    if row is not None and row.get("collapsed") and lg.stop_on_collapse:
                        stop = self.step
                    if self.step % lg.checkpoint_every == 0 or self.step >= stop:
                        self.save(last_loss if row is None else row["loss"])
                    if self.step < stop and (signum := self._stop_signal()):
                        self._interrupt(signum, last_loss if row is None else row["loss"], stop)
                    t0 = time.perf_counter()
                    if self.step >= stop or self.step % self.ipe == 0:
                        break

    def _start_notes(self) -> list[str]:
        """What the run reads (with the progress lines; always when it converts channels) and,
        always, where it stops short of its configured schedule or past it."""
        o, s = self.cfg.optimization, self.sched
        converted = self.data.channels != self.cfg.meta.in_chans
        notes = [self.data.describe(in_chans=self.cfg.meta.in_chans, crop_size=self.cfg.data.crop_size)] if self.cfg.logging.progress or converted else []
        epoch_stop, m = max(1, int(o.epochs * self.ipe)), o.max_steps
        if self.steps:
            notes.append(f"--steps {self.steps}: the whole schedule in {self.steps} steps: lr warm-up over {s.warmup_steps} step{'s' * (s.warmup_steps > 1)} to "
                         f"{o.lr:g}, then cosine to {o.final_lr:g}; EMA {o.ema[0]:g} -> {o.ema[1]:g}, weight decay "
                         f"{o.weight_decay:g} -> {o.final_weight_decay:g}, both ending at step {s.total_steps}")
        elif m and m < min(epoch_stop, s.total_steps):
            phase = "still in warm-up" if m < s.warmup_steps else "mid-cosine"
            notes.append(f"optimization.max_steps={m} truncates the {s.total_steps}-step schedule: it stops {phase} at lr "
                         f"{s.lr_at(m - 1):.3g} (peak {o.lr:g}), before the EMA and weight-decay ramps end; "
                         f"for a whole run of {m} steps: ijepa pretrain --steps {m}")
        elif m > epoch_stop:
            notes.append(f"optimization.max_steps={m} is past the run's end: it trains {epoch_stop} steps (optimization.epochs "
                         f"{o.epochs:g} x {self.ipe} steps per epoch); for a whole run of {m} steps: ijepa pretrain --steps {m}")
        return notes

    def _stop_signal(self) -> int:
        """The signal that asked the run to stop (0: none), the same on every rank: under DDP
        agreed at log rows (logging.log_every), not to make a GPU wait at every step."""
        signum = self.stop.signum or 0
        if not self.info.enabled:
            return signum
        if self.step % self.cfg.logging.log_every:
            return 0
        flag = torch.tensor(signum, device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag)

    def _interrupt(self, signum: int, loss: float, stop: int) -> None:
        """Save the step reached (unless just saved; never a non-finite state) and stop."""
        if self.last_good != (self.step, self.ckpt_path):
            self.save(loss)
        command = resume_command(self.cfg, self.method_name, distributed=self.info.enabled)
        raise Interrupted(signum, f"{signal.Signals(signum).name} at step {self.step}/{stop}: saved {self.ckpt_path}; "
                                  f"continue with: {command}")

    def _row(self, epoch, loss, stats, probe_acc, masks_enc, masks_pred, dt, imgs_per_step, start_time, diag, *, last: bool) -> dict | None:
        lg = self.cfg.logging
        is_diag = bool(lg.diag_every) and (self.step % lg.diag_every == 0 or self.step == 1 or last)
        if self.step % lg.log_every and not is_diag:
            return None
        self._check_finite()  # before anything reads the step's numbers
        row = {
            "step": self.step, "epoch": epoch, "loss": float(loss), "lr": self.sched.lr_at(self.step - 1),
            "wd": self.sched.wd_at(self.step - 1), "momentum": self.sched.momentum_at(self.step - 1),
            "ctx_len": masks_enc[0].shape[1], "tgt_len": masks_pred[0].shape[1], "step_time_s": dt,
            "img_per_s": imgs_per_step / dt, "peak_mem_mb": peak_memory_mb(self.device),
            "target_std": float(stats["target_std"]), "pred_std": float(stats["pred_std"]),
            "probe_acc": float(probe_acc) if probe_acc is not None else "", "elapsed_s": time.perf_counter() - start_time,
        }
        if is_diag:
            row["rankme"] = self._rankme(diag)
            row["collapsed"] = self._check_collapse(row["target_std"])
        return row


def pretrain(
    cfg: Config, *, method: str = "ijepa", resume: bool = False, steps: int | None = None, console: Console | None = None,
) -> Path:
    """Train from `cfg` (or resume its run) and return the run directory."""
    return Trainer(cfg, method=method, resume=resume, steps=steps, console=console).fit()
