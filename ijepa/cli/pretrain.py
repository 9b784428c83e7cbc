"""`ijepa pretrain`."""

from __future__ import annotations

from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, app, console, fail


@app.command()
def pretrain(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config: a path, or a shipped config by name (fmnist_vit_tiny, in1k_vith14_ep300, in1k_vitb16_ep600, in1k_vits16_ep600; ijepa/configs/); official I-JEPA files load as they are. Default: fmnist_vit_tiny"),
    set_: list[str] = typer.Option([], "--set", help="Override one key, e.g. --set optimization.lr=1e-3 (repeatable)"),
    method: str = typer.Option("ijepa", help="Pretraining method: ijepa or mae"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in logging.folder/write_tag exactly, as its stored config.yaml says (start it if absent; a finished run is left as is). Only the keys given now (-c file, --set) are checked: logging.*, optimization.epochs/max_steps, meta.device, meta.load_checkpoint/read_checkpoint, data.num_workers/pin_mem may change"),
    results: Path = typer.Option(Path("results"), "--results", help="Results folder: a run that trained writes its pretrain.compute record (FLOPs, wall time; what `ijepa results plot` reads) under records/"),
) -> None:
    """Pretrain an encoder (single process, or DDP under `torchrun --no-python ijepa pretrain`).

    Example: ijepa pretrain --set optimization.max_steps=100 --set logging.write_tag=short
    """
    from ijepa.bench.flops import pretrain_compute
    from ijepa.results.io import write_record
    from ijepa.training.checkpointing import RunError
    from ijepa.training.config import ConfigError, load_config
    from ijepa.training.loop import Trainer, run_dir_of
    from ijepa.training.resume import given_keys, resume_config

    try:
        cfg = load_config(config, set_)
        if resume:
            cfg = resume_config(cfg, given_keys(config, set_), run_dir_of(cfg))
        trainer = Trainer(cfg, method=method, resume=resume, console=console)
        run_dir = trainer.fit()
        if trainer.info.is_main and trainer.step > trainer.start_step:
            record = write_record(pretrain_compute(run_dir, wall_s=trainer.wall_s), results_dir=results)
            console.print(f"record: {record}", highlight=False, soft_wrap=True, markup=False)
    except (ConfigError, RunError, OSError, *USER_ERRORS) as e:  # OSError: names its file (disk full, permissions)
        fail(e)
    print(run_dir)
