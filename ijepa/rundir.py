"""A run directory one process writes at a time, and the error that stops a run.

Pretraining and the decoder both write a run directory (checkpoints, logs) that two
processes must never share; both stop with a `RunError` a person can act on.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RunError(RuntimeError):
    """A run cannot go on; the message is one line naming the file and what to do."""


class RunLock:
    """An exclusive flock on `run_dir/.lock`, which holds the owner's PID.

    Two runs writing one directory would interleave checkpoints and logs. The kernel drops
    a flock when its holder exits, however it exits, so a crashed run leaves no stale lock.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.fd = run_dir, None

    def acquire(self) -> RunLock:
        path = self.run_dir / ".lock"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunError(f"{self.run_dir}: run directory is not writable ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunError(f"{self.run_dir}: another ijepa pretrain (PID {holder}) is running in this directory; "
                           "wait for it or set logging.write_tag") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
