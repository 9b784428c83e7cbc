"""Compute-to-accuracy plot: linear-probe top-1 against pretraining GFLOPs and wall time.

Joins two kinds of record: `pretrain.compute` (one per pretraining run: method, FLOPs,
wall time; written by `ijepa.bench.flops.pretrain_compute`) and `eval.linear` (whose
`encoder` is "<run name>:<which>"). Numbers measured differently never share a line: one
row of panels per dataset, probe, subset and reported split (`Panel`), each with its own
random-init floor (the random-init linear records of exactly that panel).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ijepa.atomic import atomic_write, unwritable
from ijepa.results.io import RESULTS_DIR, load_records
from ijepa.results.tables import dataset_of, eval_subset_of

LABELS = {"ijepa": "I-JEPA", "mae": "MAE"}
PROBES = {"linear-grid": "linear head grid", "sklearn-logreg": "logistic regression"}
STEPS = (1.0, 2.0, 5.0)  # tick values per decade


@dataclass(frozen=True)
class Setting:
    """What makes two linear-probe numbers comparable: the data, the probe, the part of each
    split it saw, and the split it reports."""

    dataset: str
    probe: str
    subset: str
    split: str

    @property
    def title(self) -> str:
        probe = PROBES.get(self.probe, self.probe)
        part = "" if self.subset == "all images" else f", on a subset ({self.subset})"
        return f"{self.dataset}: linear probe by {probe}, {self.split} top-1{part}"


@dataclass
class Panel:
    points: list[dict[str, Any]] = field(default_factory=list)  # one per pretrained run
    floors: list[float] = field(default_factory=list)  # random-init top-1 (%)


def setting_of(rec: dict[str, Any]) -> Setting:
    limits = [f"{name} {n:g}" for name, n in (("train", rec.get("train_limit")), ("eval", eval_subset_of(rec))) if n is not None]
    return Setting(dataset_of(rec), str(rec.get("protocol") or "linear-grid"), ", ".join(limits) or "all images",
                   str(rec.get("reported_on") or "test"))


def _latest(recs: list[dict[str, Any]], key) -> dict[Any, dict[str, Any]]:
    """The latest record per `key(record)` (a run scored, or measured, more than once)."""
    return {key(r): r for r in sorted(recs, key=lambda r: str(r.get("created")))}


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def compute_panels(records: list[dict[str, Any]]) -> dict[Setting, Panel]:
    """Per setting, a point per pretrained run that has a linear record of it, and the floors."""
    compute = _latest([r for r in records if r.get("kind") == "pretrain.compute"], lambda r: r["run"])
    linear = [r for r in records if r.get("kind") == "eval.linear"]  # schema-valid: top1 is a fraction
    panels: dict[Setting, Panel] = defaultdict(Panel)
    for (setting, run), rec in _latest(linear, lambda r: (setting_of(r), str(r.get("encoder", "")).split(":")[0])).items():
        if run in compute:
            c = compute[run]
            if not (_positive(c.get("pretrain_flops")) and _positive(c.get("pretrain_wall_s"))):
                raise ValueError(f"{c.get('_path', run)}: pretrain_flops and pretrain_wall_s must be numbers > 0 to plot on log axes")
            panels[setting].points.append({"run": run, "method": c["method"], "gflops": c["pretrain_flops"] / 1e9,
                                           "wall_min": c["pretrain_wall_s"] / 60, "top1": 100 * rec["top1"]})
    for (setting, encoder), rec in _latest(linear, lambda r: (setting_of(r), r.get("encoder"))).items():
        if setting in panels and str(encoder).startswith("random:"):
            panels[setting].floors.append(100 * rec["top1"])
    return dict(sorted(panels.items(), key=lambda kv: kv[0].title))


def readable_log_axis(ax: Any, values: list[float]) -> None:
    """Log x axis whose limits are 1-2-5 values around the data, each labelled: at least two
    labelled ticks however narrow the data (a log axis within one decade shows none)."""
    import math

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ladder = [s * 10.0**e for e in range(math.floor(math.log10(min(values))) - 1, math.ceil(math.log10(max(values))) + 2) for s in STEPS]
    lo, hi = max(v for v in ladder if v <= min(values) / 1.05), min(v for v in ladder if v >= max(values) * 1.05)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator([v for v in ladder if lo <= v <= hi]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def draw_compute(panels: dict[Setting, Panel]) -> Any:
    """The figure: a row per setting, GFLOPs and wall time side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.6 * len(panels) + 0.6), squeeze=False)
    for row, (setting, panel) in zip(axes, panels.items(), strict=True):
        for ax, key, xlabel in ((row[0], "gflops", "pretraining GFLOPs"), (row[1], "wall_min", "pretraining wall time (min)")):
            for method in sorted({p["method"] for p in panel.points}):
                pts = sorted((p[key], p["top1"]) for p in panel.points if p["method"] == method)
                ax.plot(*zip(*pts, strict=True), marker="o", label=LABELS.get(method, method))
            for i, floor in enumerate(panel.floors):
                ax.axhline(floor, color="grey", linestyle="--", linewidth=1, label="random init" if i == 0 else None)
            readable_log_axis(ax, [p[key] for p in panel.points])
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"top-1 on {setting.split} (%)")
        row[0].set_title(setting.title, loc="left", fontsize=10)
        row[0].legend(title=PROBES.get(setting.probe, setting.probe), fontsize=8, title_fontsize=8)
    fig.suptitle("Linear-probe accuracy against pretraining compute (ours)")
    fig.tight_layout()
    return fig


def plot_compute(results_dir: Path | None = None, *, out: Path | None = None, records: list[dict[str, Any]] | None = None) -> Path:
    """Draw the plot from the records under `results_dir` (`records`: those already read from
    it); returns the PNG's path."""
    results_dir = results_dir or RESULTS_DIR
    panels = compute_panels(load_records(results_dir)[0] if records is None else records)
    if not panels:
        raise ValueError(f"{results_dir}/records: no pretrain.compute record with a matching eval.linear record to plot")
    fig = draw_compute(panels)
    import matplotlib.pyplot as plt

    out = out or results_dir / "compute_vs_accuracy.png"
    try:
        atomic_write(out, lambda f: fig.savefig(f, format=out.suffix.lstrip(".") or "png", dpi=120), binary=True)
    except OSError as e:  # a read-only folder, a full disk
        raise ValueError(unwritable(out, "the plot", e)) from None
    finally:
        plt.close(fig)
    return out
