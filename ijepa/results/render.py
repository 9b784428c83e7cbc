"""How every results view is written out: markdown tables, table cells, figure files.

The bottom of `ijepa.results`: the tables, curves, sweep and crossover views import it and
nothing here imports them, so each view renders alike and none imports another to do so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub markdown, without pandas' optional `tabulate` dependency."""
    cells = df.astype(object).where(df.notna(), "").astype(str)
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(row) + " |" for row in cells.to_numpy().tolist()]
    return "\n".join([head, rule, *body])


def cell(value: float, std: float | None) -> str:
    """A number as a table shows it: two decimals, `± std` where there is a spread over seeds."""
    return f"{value:.2f}" if std is None or pd.isna(std) else f"{value:.2f} ± {std:.2f}"


def save_figure(fig: Any, out: Path, *, dpi: int) -> Path:
    """Lay out, write and close a matplotlib figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out
