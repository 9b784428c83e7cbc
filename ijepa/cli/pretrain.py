"""`ijepa pretrain`."""

from __future__ import annotations

from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, app, console, fail


@app.command()
def pretrain(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (ours or an official I-JEPA file); default: the Fashion-MNIST recipe"),
    set_: list[str] = typer.Option([], "--set", help="Override one key, e.g. --set optimization.lr=1e-3 (repeatable)"),
    method: str = typer.Option("ijepa", help="Pretraining method"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in logging.folder/write_tag exactly (start it if absent; a finished run is left as is); only logging.*, optimization.epochs/max_steps, meta.device, data.num_workers/pin_mem may differ from its config.yaml"),
) -> None:
    """Pretrain an encoder (single process, or DDP under `torchrun --no-python ijepa pretrain`)."""
    from ijepa.training.checkpointing import RunError
    from ijepa.training.config import ConfigError, load_config
    from ijepa.training.loop import pretrain as run

    try:
        cfg = load_config(config, set_)
        run_dir = run(cfg, method=method, resume=resume, console=console)
    except (ConfigError, RunError, OSError, *USER_ERRORS) as e:  # OSError: names its file (disk full, permissions)
        fail(e)
    print(run_dir)
