"""Atomic JSON result records: one file per eval/bench run under results/records/.

A record is a flat-ish dict with at least `kind` (e.g. "eval.linear"), `encoder` (an id),
`dataset`, the headline metric(s) at the top level, `created` and `git_commit`. Writes go
to a temp file and are renamed into place, so a crash never leaves a half-written record.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

from ijepa.atomic import atomic_write

RESULTS_DIR = Path("results")


class RecordWriteError(ValueError):
    """The record could not be written; it went to stdout instead (a user-fixable error, so
    the CLI reports it in one line)."""


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def write_record(record: dict[str, Any], *, results_dir: Path | None = None) -> Path:
    """Stamp `created`/`git_commit`, write `records/<kind>/<timestamp>-<slug>.json`, return it."""
    record = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "git_commit": git_commit(), **record}
    kind = str(record.get("kind", "misc")).replace("/", "_")
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(record.get("encoder", "run")))[-60:]
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S%f")
    path = (results_dir or RESULTS_DIR) / "records" / kind / f"{stamp}-{slug}.json"
    try:
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False, default=str) + "\n")
    except OSError as e:  # disk full, read-only folder: the computed result must not be lost
        print(json.dumps(record, default=str), flush=True)
        raise RecordWriteError(f"{e.filename or path}: cannot write the record ({e.strerror or e}); "
                               "the result is printed on stdout as one JSON line") from None
    return path


def read_records(results_dir: Path | None = None) -> list[dict[str, Any]]:
    """All records, each with `_path` relative to `results_dir` (so tables regenerated from a
    copy of the records are byte-identical); a corrupt file is an error naming it."""
    root = Path(results_dir or RESULTS_DIR)
    out = []
    for p in sorted((root / "records").rglob("*.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{p}: not a UTF-8 text file (byte {e.object[e.start]:#04x} at offset {e.start})") from None
        out.append({**rec, "_path": p.relative_to(root).as_posix()})
    return out
