"""Run logs a person can load with pandas (`pd.read_csv(run / "log.csv")`), and plain progress
lines where the output is a file or a pipe (the bar on a terminal is `ijepa.progress`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ijepa.atomic import atomic_write

COLUMNS = (
    "step", "epoch", "loss", "lr", "wd", "momentum", "ctx_len", "tgt_len", "step_time_s", "img_per_s",
    "peak_mem_mb", "target_std", "pred_std", "rankme", "probe_acc", "elapsed_s",
)


class CSVLog:
    """Append-only CSV. On resume the rows up to the checkpoint's step are kept (read and
    checked first: a bad row is one error naming the line) and the file is rewritten
    atomically, so a crash there never loses the rows already logged."""

    def __init__(self, path: Path, *, resume_step: int = 0) -> None:
        self.path = path
        rows = read_rows(path, resume_step) if path.exists() else []

        def write(f) -> None:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)

        atomic_write(path, write)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS)

    def write(self, row: dict) -> None:
        self.writer.writerow({k: row.get(k, "") for k in COLUMNS})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _number(v: str | None) -> bool:
    """A field a row may hold: a number or empty (a column not measured at that step)."""
    if v is None or v == "":  # None: the row is shorter than the header
        return v == ""
    try:
        float(v)
    except ValueError:
        return False
    return True


def read_rows(path: Path, up_to_step: int) -> list[dict[str, str]]:
    """The rows of an existing log with step <= up_to_step, each checked to be numbers."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{path} line {line}: not UTF-8 text (byte {data[e.start]:#04x}); fix or delete that line") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        if "step" not in (reader.fieldnames or ()):
            raise ValueError(f"{path} line 1: expected a header with a step column, got {reader.fieldnames}")
        rows = []
        for r in reader:
            bad = [k for k, v in r.items() if k is None or not _number(v)]
            if bad or not r["step"].isdigit():
                raise ValueError(f"{path} line {reader.line_num}: not a log row of numbers "
                                 f"(column {bad[0] if bad else 'step'!r}); fix or delete that line")
            if int(r["step"]) <= up_to_step:
                rows.append({k: r.get(k, "") for k in COLUMNS})
        return rows


def duration(seconds: float) -> str:
    """`1h02m`, `4m05s`, `12s`: short enough for a log line."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(row: dict, stop: int, eta_s: float) -> str:
    """One log row as a line for `ijepa pretrain > log 2>&1`: step, loss, lr, img/s, ETA."""
    line = (f"step {row['step']}/{stop}  epoch {row['epoch']}  loss {row['loss']:.4f}  lr {row['lr']:.2e}  "
            f"{row['img_per_s']:.0f} img/s  elapsed {duration(row['elapsed_s'])}  ETA {duration(eta_s)}")
    if row.get("rankme") is not None:
        line += f"  rankme {row['rankme']:.1f}"
    return line
