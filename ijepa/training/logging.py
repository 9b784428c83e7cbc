"""Run logs a person can load with pandas (`pd.read_csv(run / "log.csv")`) and a progress bar."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

COLUMNS = (
    "step", "epoch", "loss", "lr", "wd", "momentum", "ctx_len", "tgt_len", "step_time_s", "img_per_s",
    "peak_mem_mb", "target_std", "pred_std", "rankme", "probe_acc", "elapsed_s",
)


class CSVLog:
    """Append-only CSV; on resume, rows past the checkpoint's step are dropped first (its own row stays)."""

    def __init__(self, path: Path, *, resume_step: int | None = None) -> None:
        self.path = path
        rows = []
        if resume_step is not None and path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.file = path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()

    def write(self, row: dict) -> None:
        self.writer.writerow({k: row.get(k, "") for k in COLUMNS})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def progress_bar(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not enabled, transient=False,
    )
