"""The one atomic-write primitive behind checkpoints, result records and tables, and the
clean-up of the temp files a killed writer leaves."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO], None], *, binary: bool = False) -> None:
    """Call `write(f)` on a temp file beside `path`, fsync, then rename it over `path`.

    A crash mid-write leaves the previous file intact, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through `atomic_write`: a crash never corrupts the previous checkpoint."""
    import torch  # here: records and tables are written without importing torch

    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def remove_stale_temps(folder: str | Path, older_than_s: float = 0.0) -> list[Path]:
    """Delete the temp files `atomic_write` left in `folder` when a killed process was writing.

    In a folder one process writes at a time (a run directory, under its lock) every temp is
    dead: `older_than_s` 0, and a temp that cannot be deleted is an error. Where several write
    at once (the feature cache), only temps untouched for `older_than_s` are taken as dead (a
    live write keeps moving its file's mtime), and one that cannot be deleted is left alone.
    """
    now, stale = time.time(), []
    for p in sorted(Path(folder).glob(".*.tmp")):
        with contextlib.suppress(OSError if older_than_s else FileNotFoundError):
            if not older_than_s or now - p.stat().st_mtime > older_than_s:
                p.unlink()
                stale.append(p)
    return stale


def atomic_write_text(path: str | Path, text: str) -> None:
    """`text` written whole or not at all (records, tables, split files)."""
    atomic_write(path, lambda f: f.write(text))


def unwritable(path: str | Path, what: str, e: OSError) -> str:
    """The one line for a write that a full disk or a read-only folder refused: the file, what
    it was to hold, and why (the temp file the error names is no concern of the reader)."""
    return f"{path}: cannot write {what} ({e.strerror or e})"
