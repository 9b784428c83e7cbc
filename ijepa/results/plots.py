"""Compute-to-accuracy plot: linear-probe top-1 against pretraining GFLOPs and wall time.

Joins two kinds of record: `pretrain.compute` (one per pretraining run: method, FLOPs,
wall time; written by `ijepa.bench.flops.pretrain_compute`) and `eval.linear` (whose
`encoder` is "<run name>:<which>"). Random-init linear records, if any, are drawn as a
horizontal line: the floor every method has to clear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ijepa.atomic import atomic_write, unwritable
from ijepa.results.io import RESULTS_DIR, load_records

LABELS = {"ijepa": "I-JEPA", "mae": "MAE"}


def compute_points(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one point per pretrained run that has a linear record, random-init linear records).

    The latest record wins where a run was scored (or measured) more than once.
    """
    latest = lambda recs, key: {key(r): r for r in sorted(recs, key=lambda r: str(r.get("created")))}  # noqa: E731
    compute = latest([r for r in records if r.get("kind") == "pretrain.compute"], lambda r: r["run"])
    linear = [r for r in records if r.get("kind") == "eval.linear"]  # schema-valid: top1 is a fraction
    scored = latest(linear, lambda r: str(r.get("encoder", "")).split(":")[0])
    points = [
        {"run": run, "method": c["method"], "gflops": c["pretrain_flops"] / 1e9, "wall_s": c["pretrain_wall_s"],
         "top1": 100 * scored[run]["top1"]}
        for run, c in compute.items() if run in scored
    ]
    datasets = {scored[p["run"]].get("dataset") for p in points}
    randoms = [
        r for r in latest(linear, lambda r: r.get("encoder")).values()
        if str(r.get("encoder", "")).startswith("random:") and r.get("dataset") in datasets
    ]
    return points, randoms


def plot_compute(results_dir: Path | None = None, *, out: Path | None = None, records: list[dict[str, Any]] | None = None) -> Path:
    """Draw the plot from the records under `results_dir` (`records`: those already read from
    it); returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    results_dir = results_dir or RESULTS_DIR
    points, randoms = compute_points(load_records(results_dir)[0] if records is None else records)
    if not points:
        raise ValueError(f"{results_dir}/records: no pretrain.compute record with a matching eval.linear record to plot")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, xlabel in ((axes[0], "gflops", "pretraining GFLOPs"), (axes[1], "wall_s", "pretraining wall time (s)")):
        for method in sorted({p["method"] for p in points}):
            pts = sorted((p[key], p["top1"]) for p in points if p["method"] == method)
            ax.plot(*zip(*pts, strict=True), marker="o", label=LABELS.get(method, method))
        for r in randoms:
            ax.axhline(100 * r["top1"], color="grey", linestyle="--", linewidth=1, label="random init")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("linear-probe top-1 (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    axes[0].legend(uniq.values(), uniq.keys())
    fig.suptitle("Accuracy against pretraining compute (ours)")
    fig.tight_layout()
    out = out or results_dir / "compute_vs_accuracy.png"
    try:
        atomic_write(out, lambda f: fig.savefig(f, format=out.suffix.lstrip(".") or "png", dpi=120), binary=True)
    except OSError as e:  # a read-only folder, a full disk
        raise ValueError(unwritable(out, "the plot", e)) from None
    finally:
        plt.close(fig)
    return out
