"""`ijepa pretrain`."""

from __future__ import annotations

from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, app, console, fail


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True, markup=False)


@app.command()
def pretrain(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config: a path, or a shipped config by name (fmnist_vit_tiny, in1k_vith14_ep300, in1k_vitb16_ep600, in1k_vits16_ep600; ijepa/configs/); official I-JEPA files load as they are. Default: fmnist_vit_tiny"),
    set_: list[str] = typer.Option([], "--set", help="Override one key, e.g. --set optimization.lr=1e-3 (repeatable)"),
    data: str = typer.Option("", "--data", help="Train on fashion-mnist, fmnist-clutter:LEVEL, fmnist-noise:LEVEL or an ImageFolder root (DIR/train/<class>/<image>): sets data.dataset, data.root_path, data.image_folder and meta.in_chans (from the images: 3 if any is colour, else 1), before any --set"),
    steps: int | None = typer.Option(None, "--steps", min=1, help="A whole run of N optimizer steps: the config's schedule (warm-up fraction, cosine lr, EMA and weight-decay ramps) scaled to end at step N. optimization.max_steps alone cuts the schedule short (the run says so)"),
    method: str = typer.Option("ijepa", help="Pretraining method: ijepa or mae"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in logging.folder/write_tag exactly, as its stored config.yaml says (start it if absent; a finished run is left as is). Only the keys given now (-c file, --data, --set) are checked: logging.*, optimization.epochs/max_steps, meta.device, meta.load_checkpoint/read_checkpoint, data.num_workers/pin_mem may change"),
    results: Path = typer.Option(Path("results"), "--results", help="Results folder: a run that trained writes its pretrain.compute record (FLOPs, wall time; what `ijepa results plot` reads) under records/"),
) -> None:
    """Pretrain an encoder (single process, or DDP under `torchrun --no-python ijepa pretrain`).

    Ctrl-C or SIGTERM saves the step reached and prints the command that resumes it (exit 130 / 143).

    Example: ijepa pretrain --data fashion-mnist --steps 100 --set logging.write_tag=short
    """
    from ijepa.bench.flops import pretrain_compute
    from ijepa.results.io import write_record
    from ijepa.rundir import RunError
    from ijepa.training.config import from_dict, given_values, load_config
    from ijepa.training.data import data_overrides
    from ijepa.training.interrupt import Interrupted
    from ijepa.training.loop import Trainer, run_dir_of
    from ijepa.training.resume import resume_config
    from ijepa.typedconfig import ConfigError

    trainer = None
    try:
        given = given_values(config, [*data_overrides(data), *set_] if data else set_)  # -c and every --set, read once
        cfg = from_dict(given, None if config else load_config())  # over the packaged recipe when no -c is given
        if resume:
            cfg = resume_config(cfg, given, run_dir_of(cfg))
        trainer = Trainer(cfg, method=method, resume=resume, steps=steps, console=console)
        run_dir = trainer.fit()
        if trainer.info.is_main and trainer.step > trainer.start_step:
            channels = {"data_channels": trainer.data.channels, "in_chans": trainer.cfg.meta.in_chans}  # 1 -> 3: replicated
            record = write_record({**pretrain_compute(run_dir, wall_s=trainer.wall_s), **channels}, results_dir=results)
            _say(f"record: {record}")
    except (ConfigError, RunError, OSError, *USER_ERRORS) as e:  # OSError: names its file (disk full, permissions)
        fail(e)
    except Interrupted as e:
        if trainer.info.is_main:
            _say(f"interrupted: {e.message}")
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:  # before training began, or a second Ctrl-C: nothing saved now
        _say(f"interrupted: nothing saved{'' if trainer is None else f'; {trainer.last_good_text()}'}")
        raise typer.Exit(130) from None
    print(run_dir)
