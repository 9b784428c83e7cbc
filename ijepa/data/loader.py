"""Iterating a DataLoader so that a user error raised in a worker reads as one line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def worker_errors(loader: Iterable) -> Iterator:
    """Iterate `loader`; a user error raised in a worker (an unreadable image names its file)
    comes out as its own one-line message, not inside the worker's traceback."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (ValueError, KeyError, FileNotFoundError) as e:
            msg = str(e.args[0]) if e.args else ""
            if "in DataLoader worker process" not in msg:
                raise
            raise type(e)(msg.rstrip().splitlines()[-1].removeprefix(f"{type(e).__name__}: ")) from None
        yield batch
