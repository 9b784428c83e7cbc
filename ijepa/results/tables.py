"""Our runs' tables and the paper's: the long summary rows of every record (`summary.csv`),
and the sections `results/README.md` puts under each kind (`ijepa.results.readme`).

Our runs are grouped by dataset (a heading each); under them, under a heading of their own,
stand the paper's reference numbers (ImageNet-1k and transfer datasets), every row labelled
with the table it comes from. A section keeps the latest run per setting (kind, dataset,
protocol, train and eval limits, encoder, checkpoint, splits), so different settings never
share a cell; a number measured on part of a split (`--train-limit`, `--eval-limit`) is a
metric of its own ("top1 (subset)"), never a plain "top1". The summary keeps every run. Each
record's headline and unit come from its schema (`ijepa.results.schema`), never a guess.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ijepa.evals import registry
from ijepa.evals.registry import Cell
from ijepa.results.render import cell, markdown_table
from ijepa.results.schema import headline

PAPER = "I-JEPA paper (arXiv 2301.08243)"  # every eval's `paper` rows come from it
KEYS = ["dataset", "protocol", "train_limit", "eval_limit", "encoder", "checkpoint", "selected_on", "reported_on"]
FMNIST = "fashion-mnist"  # what every record measured before records named their dataset


def checkpoint_of(rec: dict[str, Any]) -> str | None:
    """Which weights: the checkpoint's step when recorded, else its content digest (so two
    checkpoints of one run never share a table cell)."""
    if rec.get("step") is not None:
        return f"step {rec['step']}"
    key = str(rec.get("encoder_key") or "")
    digest = key.split("-")[0]
    return digest[:8] if len(digest) == 16 and all(c in "0123456789abcdef" for c in digest) else None


def eval_subset_of(rec: dict[str, Any]) -> Any:
    cfg = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    return rec.get("val_limit") or cfg.get("max_eval_images") or cfg.get("max_val_images") or None


def dataset_of(rec: dict[str, Any]) -> str:
    """The data a number was measured on, as tables and plots group by it: Fashion-MNIST for
    evals older than the `dataset` key; a family's `dataset_level` is part of it."""
    name = rec.get("dataset") or (FMNIST if str(rec.get("kind", "")).startswith("eval.") else "dataset not recorded")
    level = rec.get("dataset_level")
    return str(name) if level is None else f"{name} (level {level:g})"


def limited(rec: dict[str, Any]) -> bool:
    """Whether the eval saw only part of its train or evaluation split (`--train-limit`, `--eval-limit`)."""
    return rec.get("train_limit") is not None or eval_subset_of(rec) is not None


def detail_of(rec: dict[str, Any]) -> str | None:
    if rec.get("best_head"):
        return rec["best_head"]
    if "best_k" in rec:
        return f"{rec.get('best_features')}, k={rec.get('best_k')}"
    if str(rec.get("kind", "")).startswith("bench."):
        return f"{rec.get('device', '?')}, batch {rec.get('batch_size', '?')}"
    return None


def cells_of(rec: dict[str, Any]) -> list[Cell]:
    """The table cells of one (schema-valid) record: its eval's own (`Eval.cells`), else the
    headline with what was chosen, and the best head of each feature set where recorded."""
    entry = registry.of_kind(rec["kind"])
    if entry is not None and entry.cells is not None:
        return entry.cells(rec)
    head = headline(rec)
    if head is None:
        return []
    refit = " before refit" if rec.get("refit_rows") else ""  # the search's head, fit on train less held-out
    return [Cell(head.key, head.shown, detail_of(rec)),
            *[Cell(f"top1[{f}{refit}]", 100 * b["top1"], b["head"]) for f, b in (rec.get("best_by_features") or {}).items()]]


def rows_of(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows of one (schema-valid) record: one per table cell."""
    base = {"source": "ours", "kind": rec["kind"], "encoder": rec.get("encoder"), "checkpoint": checkpoint_of(rec),
            "dataset": dataset_of(rec), "protocol": rec.get("protocol"), "train_limit": rec.get("train_limit"),
            "eval_limit": eval_subset_of(rec), "selected_on": rec.get("selected_on"), "reported_on": rec.get("reported_on"),
            "created": rec.get("created"), "git_commit": rec.get("git_commit"), "record": rec.get("_path")}
    mark = " (subset)" if limited(rec) else ""
    return [{**base, **_row(c, mark)} for c in cells_of(rec)]


def _row(c: Cell, mark: str) -> dict[str, Any]:
    spread = {} if c.std is None else {"std": c.std, "n_seeds": c.n_seeds}
    return {"metric": c.metric + mark, "value": c.value, **spread, "detail": c.detail}


def reference_frame() -> pd.DataFrame:
    """Every eval's `paper` rows, table by table."""
    cols = ["kind", "table", "method", "arch", "pretrain_epochs", "dataset", "metric", "value"]
    rows = [(e.kind, *row) for e in registry.evals() for row in e.paper]
    df = pd.DataFrame(sorted(rows, key=lambda r: r[1]), columns=cols)
    df["source"] = PAPER + ", " + df["table"]
    return df


def summary_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Every run's metrics plus the paper's reference rows, in one long table."""
    ours = pd.DataFrame([r for rec in records for r in rows_of(rec)])
    ref = reference_frame().rename(columns={"arch": "encoder"})
    ref["encoder"] = ref["method"] + " " + ref["encoder"]
    return pd.concat([ours, ref.drop(columns=["table"])], ignore_index=True)


def _key_cell(value: Any) -> str:
    """A setting as its table cell: "-" when absent, a subset of 2000 images as 2000 (a column
    holding None beside ints is float in pandas), a fraction as it is."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def ours_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per setting (encoder, checkpoint, dataset, protocol, train and eval subsets,
    splits): the latest run of it, metrics as columns in the order the records give them."""
    rows = rows.copy()
    rows["cell"] = [cell(v, s) for v, s in zip(rows["value"], rows.get("std", pd.Series([None] * len(rows), index=rows.index)), strict=True)]
    keys = KEYS
    for k in keys:
        rows[k] = rows[k].map(_key_cell)
    latest = rows.sort_values("created").groupby(keys, sort=False)["record"].transform("last").reindex(rows.index)
    rows = rows[rows["record"] == latest]
    metrics = list(dict.fromkeys(rows["metric"]))
    wide = rows.pivot_table(index=keys, columns="metric", values="cell", aggfunc="last")[metrics].reset_index()
    meta = rows.groupby(keys).agg(detail=("detail", "first"), date=("created", "last"), commit=("git_commit", "last")).reset_index()
    wide = wide.merge(meta, on=keys)
    wide["date"] = wide["date"].astype(str).str[:10]
    return wide.sort_values(keys).reset_index(drop=True)


def ours_sections(mine: pd.DataFrame) -> list[str]:
    """Our rows of one kind, a heading and a table per dataset (one dataset's rows never
    sit in another's table, nor beside the paper's); none without rows."""
    out = []
    for dataset, rows in mine.groupby("dataset", sort=True):
        table = ours_table(rows).drop(columns="dataset")
        out += [f"### Ours: {dataset}", "", markdown_table(table), ""]
    return out


def reference_section(theirs: pd.DataFrame) -> list[str]:
    """The paper's rows of one kind under a heading of their own (none without rows)."""
    if theirs.empty:
        return []
    show = theirs[["encoder", "pretrain_epochs", "dataset", "metric", "value", "source"]].copy()
    show["pretrain_epochs"] = show["pretrain_epochs"].map(lambda e: "" if pd.isna(e) else int(e))
    return ["### Paper reference (ImageNet-1k and transfer datasets: not comparable with the rows above)", "", markdown_table(show), ""]
