"""The one atomic-write primitive behind checkpoints, result records and tables."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


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


def unwritable(path: str | Path, what: str, e: OSError) -> str:
    """The one line for a write that a full disk or a read-only folder refused: the file, what
    it was to hold, and why (the temp file the error names is no concern of the reader)."""
    return f"{path}: cannot write {what} ({e.strerror or e})"
