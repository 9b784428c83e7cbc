"""Ctrl-C and SIGTERM during pretraining: finish the step, save it, say how to resume.

The signal only sets a flag; the loop reads it between steps, where the state is the one a
periodic checkpoint holds, so a checkpoint saved there resumes exactly. Outside the main
thread (where Python delivers no signals) nothing is installed, and a signal the process was
started ignoring (`nohup`, a shell's background job) stays ignored, as Python itself leaves it.
"""

from __future__ import annotations

import json
import shlex
import signal
import threading

import yaml

from ijepa.training.config import Config

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal; `message` says what was saved and how to resume."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum, self.message = signum, message

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by the signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


class StopRequest:
    """While entered, SIGINT and SIGTERM ask the run to stop after its current step.

    A second signal acts as it would have without this (Ctrl-C raises KeyboardInterrupt,
    SIGTERM ends the process), unless `repeat_ignored`: under torchrun the launcher passes
    on the signal each rank already received from the terminal.
    """

    def __init__(self, *, repeat_ignored: bool = False) -> None:
        self.signum: int | None = None
        self.repeat_ignored = repeat_ignored
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        if not self.repeat_ignored:
            for s, handler in self.previous.items():
                signal.signal(s, handler)


def _set_item(key: str, value: str) -> str:
    """`--set key=value`, the value quoted as JSON where YAML would read it as something else."""
    try:
        plain = yaml.safe_load(value) == value
    except yaml.YAMLError:
        plain = False
    return shlex.quote(f"{key}={value if plain else json.dumps(value)}")


def resume_command(cfg: Config, method: str, *, distributed: bool) -> str:
    """The command line that continues this run (from the same directory if logging.folder is relative)."""
    lg = cfg.logging
    words = ["ijepa pretrain --resume", *(["--method", method] if method != "ijepa" else []),
             "--set", _set_item("logging.folder", lg.folder), "--set", _set_item("logging.write_tag", lg.write_tag)]
    return " ".join(words) + (" (under torchrun, as the run was started)" if distributed else "")
