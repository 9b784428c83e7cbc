"""The progress bars of pretraining, the decoder and the evals: rich's on a terminal. Where the
output is a file or a pipe (`... > log 2>&1`) rich draws nothing until the end, so there the
evals' bar prints plain lines and the trainer its own (`training.logging.progress_line`)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOG_EVERY_S = 30.0  # outside a terminal: one progress line at most this often


class LineProgress(Progress):
    """Rich's bar on a terminal; written to a file or pipe (`ijepa eval ... > log 2>&1`), where
    rich draws nothing until the end, one plain line per task at most every `every` seconds
    (what, done/total, the `rate` field, ETA), so a long eval is never silent in a log."""

    def __init__(self, what: str, *columns, every: float = LOG_EVERY_S, **kwargs) -> None:
        super().__init__(*columns, **kwargs)
        self.what, self.every, self.lines = what, every, not self.console.is_terminal and not kwargs.get("disable")
        self.last: dict = {}

    def update(self, task_id, **kwargs) -> None:
        super().update(task_id, **kwargs)
        if self.lines:
            self.log_line(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.lines:
            self.log_line(task_id)

    def log_line(self, task_id) -> None:
        now, task = time.monotonic(), self._tasks[task_id]
        if now - self.last.setdefault(task_id, now) < self.every and not task.finished:
            return
        self.last[task_id] = now
        eta = task.time_remaining
        eta = f"  ETA {int(eta) // 60}m{int(eta) % 60:02d}s" if eta is not None and not task.finished else ""
        total = f"/{task.total:.0f}" if task.total is not None else ""
        self.console.print(f"{self.what}: {task.completed:.0f}{total}  {task.fields.get('rate', '')}{eta}".rstrip(),
                           markup=False, highlight=False, soft_wrap=True)


def progress(console: Console | None, what: str, *, enabled: bool = True, every: float = LOG_EVERY_S) -> Progress:
    """The evals' one rich bar (rate or loss in the `rate` field, ETA), on stderr so `--json`
    stdout stays clean; plain lines every `every` seconds where stderr is not a terminal."""
    return LineProgress(
        what, TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
        console=console or Console(stderr=True), transient=False, disable=not enabled, every=every,
    )


def progress_bar(console: Console, enabled: bool) -> Progress:
    """Pretraining's and the decoder's bar (what it shows in the `info` field); nothing when not
    `enabled` (off a terminal the trainer prints its own lines, `training.logging.progress_line`)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not enabled, transient=False,
    )
