"""Atomic JSON result records: one file per eval/bench run under results/records/.

A record is a JSON object with at least `kind` (e.g. "eval.linear"), `encoder` (an id),
`dataset`, the headline metric(s) at the top level (`ijepa.results.schema`), and what
reproduces it: `created`, the command line, package versions and the code version (the git
commit of the package's checkout, else the installed package's version). Records are strict
JSON (a non-finite number is written as null); writes go to a temp file renamed into place,
so a crash never leaves a half-written record.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from ijepa.atomic import atomic_write_text
from ijepa.results.schema import validate

RESULTS_DIR = Path("results")
PACKAGES = ("torch", "timm", "torchvision", "numpy", "scikit-learn")


class RecordWriteError(ValueError):
    """The record could not be written; it went to stdout instead (a user-fixable error, so
    the CLI reports it in one line)."""


def git_commit() -> str | None:
    """The commit of the checkout this package ran from when the process started (None when
    installed from a wheel)."""
    from ijepa import COMMIT_AT_START

    return COMMIT_AT_START


def versions() -> dict[str, str | None]:
    from ijepa import __version__

    out: dict[str, str | None] = {"python": sys.version.split()[0], "ijepa": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def strict(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def provenance() -> dict[str, Any]:
    from ijepa import __version__

    commit = git_commit()
    return {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "git_commit": commit,
            "code_version": f"git:{commit}" if commit else f"ijepa=={__version__}", "command": sys.argv[:], "versions": versions()}


def write_record(record: dict[str, Any], *, results_dir: Path | None = None) -> Path:
    """Stamp what reproduces it, write `records/<kind>/<timestamp>-<slug>.json`, return it."""
    record = strict({**provenance(), **record})
    kind = str(record.get("kind", "misc")).replace("/", "_")
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(record.get("encoder", "run")))[-60:]
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S%f")
    path = (results_dir or RESULTS_DIR) / "records" / kind / f"{stamp}-{slug}.json"
    try:
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False, default=str, allow_nan=False) + "\n")
    except OSError as e:  # disk full, read-only folder: the computed result must not be lost
        print(json.dumps(record, default=str), flush=True)
        raise RecordWriteError(f"{e.filename or path}: cannot write the record ({e.strerror or e}); "
                               "the result is printed on stdout as one JSON line") from None
    return path


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_records(results_dir: Path | None = None) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(records that follow the schema, each with `_path` relative to `results_dir`; and
    (path, reason) for each file skipped: not strict JSON, or not a valid record)."""
    root = Path(results_dir or RESULTS_DIR)
    out, skipped = [], []
    for p in sorted((root / "records").rglob("*.json")):
        rel = p.relative_to(root).as_posix()
        try:
            rec = json.loads(p.read_text(), parse_constant=_reject_constant)
        except json.JSONDecodeError as e:
            skipped.append((rel, f"not valid JSON ({e.msg} at line {e.lineno})"))
            continue
        except (ValueError, UnicodeDecodeError) as e:
            skipped.append((rel, f"not valid JSON ({e})"))
            continue
        problem = validate(rec)
        if problem is not None:
            skipped.append((rel, problem))
            continue
        out.append({**rec, "_path": rel})
    return out, skipped


def read_records(results_dir: Path | None = None) -> list[dict[str, Any]]:
    """The valid records (see `load_records`); each skipped file is a warning naming it."""
    records, skipped = load_records(results_dir)
    for path, why in skipped:
        warnings.warn(f"skipped {path}: {why}", stacklevel=2)
    return records
