"""Learning and compute curves from `curve.score` records (`ijepa.bench.curves`): the table and the two figures.

One row per pretraining run (method, recipe, steps) with every probe as a column, test as
is and val marked; random init and raw pixels are reference lines. The compute figure
joins runs of two methods at budgets matched in measured training FLOPs: a pair more than
5% apart is an error, never a point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ijepa.results.io import RESULTS_DIR, load_records
from ijepa.results.render import cell, markdown_table, save_figure

LABELS = {"ijepa": "I-JEPA", "mae": "MAE", "random-init": "random init", "raw-pixels": "raw pixels"}
BASELINES = ("random-init", "raw-pixels")
MATCH_TOL = 0.05
FMNIST = "fashion-mnist"


def record_dataset(r: dict[str, Any]) -> str:
    """The dataset of a record (those made before datasets were named: Fashion-MNIST)."""
    return r.get("dataset") or FMNIST


def record_level(r: dict[str, Any]) -> float | None:
    """A record's level in its family (`fmnist-noise:LEVEL`; Fashion-MNIST is level 0; other data: None)."""
    if r.get("dataset_level") is not None:
        return float(r["dataset_level"])
    return 0.0 if record_dataset(r) == FMNIST else None


def record_extra(r: dict[str, Any]) -> str:
    """Extra overrides a curve run had beyond its recipe (a depth axis), as one label ('' for none)."""
    return " ".join((r.get("recipe") or {}).get("extra") or [])


def column(metric: str, split: str, sets: list[str]) -> str:
    """A table column: the metric, `(val)` when not on test, and any non-standard probe settings."""
    return metric + ("" if split == "test" else f" ({split})") + (f" [{', '.join(sets)}]" if sets else "")


def score_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long rows (run, metric, split, value) of every curve.score record, the latest per cell."""
    rows = []
    for r in records:
        if r.get("kind") != "curve.score":
            continue
        recipe = (r.get("recipe") or {}).get("variant", "-")
        for m, v in r["metrics"].items():
            rows.append({"dataset": record_dataset(r), "level": record_level(r), "extra": record_extra(r),
                         "method": r["method"], "recipe": recipe, "steps": r["steps"], "run": r.get("encoder"), "metric": m,
                         "split": r["split"], "column": column(m, r["split"], r.get("probe_sets") or []), "value": 100 * v,
                         "std": 100 * r["metrics_std"][m] if m in (r.get("metrics_std") or {}) else None,
                         "images_seen": r["images_seen"], "flops_per_image": r.get("flops_per_image"),
                         "pretrain_pflops": r["pretrain_flops"] / 1e15, "budget_pflops": r.get("budget_pflops"),
                         "budget_minutes": r.get("budget_minutes"), "wall_minutes": r["wall_minutes"],
                         "ref_img_per_s": r.get("ref_img_per_s"), "default_probe": not r.get("probe_sets"), "created": str(r["created"])})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return df.sort_values("created").drop_duplicates(["dataset", "extra", "method", "recipe", "steps", "column"], keep="last")


def dataset_frame(records: list[dict[str, Any]], dataset: str = FMNIST) -> pd.DataFrame:
    """`score_frame` of one dataset's runs, those without extra overrides where there are any
    (a depth axis is drawn by the crossover figure, not on the recipe's curve)."""
    df = score_frame(records)
    if df.empty:
        return df
    df = df[df["dataset"] == dataset]
    runs = df[~df["method"].isin(BASELINES)]
    primary = "" if runs.empty or (runs["extra"] == "").any() else runs["extra"].iloc[-1]
    return df[df["method"].isin(BASELINES) | (df["extra"] == primary)]


def metric_key(metric: str) -> tuple:
    """linear, logreg, k-NN, low-shot by fraction, fine-tuning."""
    name, _, frac = metric.partition(" ")
    order = ("linear", "logreg", "knn", "lowshot", "finetune")
    return order.index(name) if name in order else len(order), float(frac.rstrip("%") or 0), metric


def metric_order(row: pd.Series) -> tuple:
    """Test before val, custom probe settings last."""
    return (row["split"] != "test", not row["default_probe"], *metric_key(row["metric"]), row["column"])


def curve_table(records: list[dict[str, Any]], dataset: str = FMNIST) -> pd.DataFrame:
    """One row per run of `dataset`: method, recipe, budget, steps, images seen, FLOPs per image, minutes, every probe (%)."""
    df = dataset_frame(records, dataset)
    if df.empty:
        return df
    df["cell"] = [cell(v, s) for v, s in zip(df["value"], df["std"], strict=True)]
    keys = ["method", "recipe", "steps"]
    wide = df.pivot_table(index=keys, columns="column", values="cell", aggfunc="last").reset_index()
    meta = df.groupby(keys).agg(budget_pflops=("budget_pflops", "last"), pflops=("pretrain_pflops", "last"), minutes=("budget_minutes", "last"),
                                images=("images_seen", "last"), fpi=("flops_per_image", "last"), wall=("wall_minutes", "last")).reset_index()
    wide = meta.merge(wide, on=keys)
    wide["method"] = wide["method"].map(lambda m: LABELS.get(m, m))
    show = pd.DataFrame({
        "method": wide["method"], "recipe (val-chosen)": wide["recipe"],
        "budget PFLOPs": wide["budget_pflops"].map(lambda v: "" if pd.isna(v) else f"{v:.4g}"),
        "budget (I-JEPA minutes)": wide["minutes"].map(lambda v: "" if pd.isna(v) else f"{v:g}"),
        "steps": wide["steps"].astype(int), "images seen": wide["images"].astype(int),
        "GFLOPs/image": wide["fpi"].map(lambda v: "" if pd.isna(v) else f"{v / 1e9:.3f}"),
        "measured PFLOPs": wide["pflops"].map(lambda v: f"{v:.4g}"), "wall minutes": wide["wall"].map(lambda v: f"{v:.1f}"),
    })
    metrics = sorted(set(df["column"]), key=lambda c: metric_order(df.loc[df["column"] == c].iloc[0]))
    out = pd.concat([show, wide[metrics]], axis=1)
    order = out["method"].map({LABELS[m]: i for i, m in enumerate(LABELS)}).fillna(len(LABELS))
    return out.assign(_o=order).sort_values(["_o", "recipe (val-chosen)", "steps"]).drop(columns="_o").reset_index(drop=True)


def curves_markdown(records: list[dict[str, Any]]) -> str | None:
    """The README section's curve tables, a dataset each (None: no Fashion-MNIST run of ours)."""
    table = curve_table(records)
    if table.empty:
        return None
    note = ("Accuracy in % on test unless the column says `(val)`; every recipe was chosen on val by the sweeps "
            "(`ijepa bench sweep`), every head on held-out train. Budgets: `ijepa bench curve`; budget minutes are minutes of "
            "the I-JEPA recipe at the reference img/s (for MAE: the same FLOPs), wall minutes as measured here.")
    out = [note, "", f"### {FMNIST}", "", markdown_table(table)]
    df = score_frame(records)
    for dataset in sorted(set(df["dataset"]) - {FMNIST}):
        out += ["", f"### {dataset}", "", markdown_table(curve_table(records, dataset))]
    extra = df[df["extra"] != ""]
    if not extra.empty:
        out += ["", "Runs with extra overrides (a depth axis; same FLOPs as the recipe without them): see the crossover table."]
    return "\n".join(out)


def pick_recipe(df: pd.DataFrame, method: str, recipe: str | None) -> str | None:
    """The recipe drawn for a method: the one given, else the only one with records (several: an error)."""
    have = sorted(set(df.loc[df["method"] == method, "recipe"]))
    if recipe is not None:
        if recipe not in have:
            raise ValueError(f"{method} recipe {recipe!r}: no curve.score records (have: {', '.join(have) or 'none'})")
        return recipe
    if len(have) > 1:
        raise ValueError(f"{method}: records of several recipes ({', '.join(have)}); name the one to draw")
    return have[0] if have else None


def matched_pairs(records: list[dict[str, Any]], recipes: dict[str, str], dataset: str = FMNIST, extra: str | None = None) -> list[dict[str, Any]]:
    """Runs of different methods on `dataset` asked for the same FLOPs budget, with their
    measured FLOPs; a pair more than 5% apart is an error."""
    pre = [r for r in records if r.get("kind") == "curve.pretrain" and (r.get("recipe") or {}).get("variant") == recipes.get(r.get("method"))
           and record_dataset(r) == dataset and (extra is None or record_extra(r) == extra)]
    by_budget: dict[tuple[float, str], dict[str, dict]] = {}
    for r in sorted(pre, key=lambda r: str(r["created"])):
        by_budget.setdefault((round(r["budget_pflops"], 9), record_extra(r)), {})[r["method"]] = r
    pairs = []
    for (budget, _), runs in sorted(by_budget.items()):
        if len(runs) < 2:
            continue
        flops = {m: r["pretrain_flops"] for m, r in runs.items()}
        rel = max(flops.values()) / min(flops.values()) - 1
        if rel > MATCH_TOL:
            raise ValueError(f"budget {budget:g} PFLOPs: measured training FLOPs {', '.join(f'{m} {f:.4g}' for m, f in flops.items())} "
                             f"differ by {rel:.1%} (more than {MATCH_TOL:.0%})")
        pairs.append({"budget_pflops": budget, "flops": flops, "rel_diff": rel, "runs": {m: r["encoder"] for m, r in runs.items()}})
    return pairs


def _baselines(ax, df: pd.DataFrame, colors: dict[str, str], splits: tuple[str, ...]) -> None:
    for (method, metric, split), g in df[df["method"].isin(BASELINES) & df["default_probe"]].groupby(["method", "metric", "split"]):
        if metric not in colors or split not in splits:
            continue
        v = g.sort_values("created")["value"].iloc[-1]
        ax.axhline(v, color=colors[metric], ls=":" if method == "random-init" else "-.", lw=1, alpha=0.8 if split == "test" else 0.4,
                   label=f"{LABELS[method]}, {metric}{'' if split == 'test' else f' ({split})'}: {v:.1f}")


METHOD_COLORS = {"ijepa": "C0", "mae": "C1"}
BASELINE_SHADES = ("0.25", "0.5", "0.7")  # greys: the reference lines of a panel's first, second, third probe
FAMILIES = {"linear probes": ("linear", "logreg"), "k-NN": ("knn",), "low-shot (frozen logreg)": ("lowshot",), "fine-tuning": ("finetune",)}


def probe_families(metrics: list[str]) -> dict[str, list[str]]:
    """The compute figure's panels: metrics grouped by probe family (a metric of no family gets a panel of its own)."""
    out: dict[str, list[str]] = {}
    for m in metrics:
        family = next((f for f, names in FAMILIES.items() if m.split(" ")[0] in names), m)
        out.setdefault(family, []).append(m)
    return out


def _log_x(ax, values: pd.Series) -> None:
    """A log x axis labelled in plain numbers (1-2-5 ticks), padded so that one budget alone
    still gets a labelled tick."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_xlim(values.min() / 1.6, values.max() * 1.6)  # spans > 2.5x: always holds a 1-2-5 tick
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _finish(fig, axes, out: Path) -> Path:
    """One legend for the figure (the first axes' entries), then saved."""
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    fig.legend(uniq.values(), uniq.keys(), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save_figure(fig, out, dpi=120)


def plot_compute_curve(results_dir: Path | None = None, *, recipes: dict[str, str | None] | None = None, out: Path | None = None,
                       dataset: str = FMNIST) -> Path:
    """Test accuracy on `dataset` against measured pretraining PFLOPs (top row, log x) and wall minutes (bottom row): one panel
    per probe family, one line per method and probe, each probe's random-init and raw-pixel lines in its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(results_dir or RESULTS_DIR)
    records = load_records(root)[0]
    df = dataset_frame(records, dataset)
    if df.empty:
        raise ValueError(f"{root}/records: no curve.score records of {dataset} to plot")
    df = df[(df["split"] == "test") & df["default_probe"]]
    chosen = {m: pick_recipe(df, m, (recipes or {}).get(m)) for m in ("ijepa", "mae")}
    matched_pairs(records, {m: r for m, r in chosen.items() if r}, dataset)
    runs = df[df.apply(lambda r: chosen.get(r["method"]) == r["recipe"], axis=1)]
    if runs.empty:
        raise ValueError(f"{root}/records: no test scores of an I-JEPA or MAE run to plot")
    families = probe_families(sorted(set(df["metric"]), key=metric_key))
    fig, axes = plt.subplots(2, len(families), figsize=(4.3 * len(families), 8), squeeze=False)
    rows = (("pretrain_pflops", "pretraining PFLOPs (measured, log)"), ("wall_minutes", "pretraining wall minutes here (log)"))
    for r, (key, xlabel) in enumerate(rows):
        for ax, (family, metrics) in zip(axes[r], families.items(), strict=True):
            for j, metric in enumerate(metrics):
                for method, g in runs[runs["metric"] == metric].groupby("method"):
                    g = g.sort_values(key)
                    ax.plot(g[key], g["value"], marker="os^"[j % 3], ls=("-", "--", ":")[j % 3], color=METHOD_COLORS.get(method, "C2"),
                            label=f"{LABELS.get(method, method)} ({chosen[method]}), {metric}")
            _baselines(ax, df, {m: BASELINE_SHADES[j % 3] for j, m in enumerate(metrics)}, ("test",))
            _log_x(ax, runs[key])
            ax.set_title(family, fontsize=10)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        axes[r][0].set_ylabel(f"{'Fashion-MNIST' if dataset == FMNIST else dataset} test top-1 (%)")
    for top, bottom in zip(axes[0], axes[1], strict=True):  # each column's legend under it, where it hides no point
        handles, labels = top.get_legend_handles_labels()
        bottom.legend(handles, labels, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1 + (len(labels) > 6), frameon=False)
    fig.suptitle("I-JEPA vs MAE at matched pretraining compute (recipes chosen on val; dotted: random init, dash-dot: raw pixels)")
    return save_figure(fig, out or root / "compute_curve.png", dpi=110)


def plot_learning_curve(results_dir: Path | None = None, *, recipe: str | None = None, out: Path | None = None) -> Path:
    """One I-JEPA recipe's val and test accuracy (both linear probes) against images seen, minutes on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(results_dir or RESULTS_DIR)
    df = dataset_frame(load_records(root)[0])
    if df.empty:
        raise ValueError(f"{root}/records: no curve.score records to plot")
    df = df[df["default_probe"] & df["metric"].isin(["linear", "logreg"])]
    chosen = pick_recipe(df, "ijepa", recipe)
    runs = df[(df["method"] == "ijepa") & (df["recipe"] == chosen)]
    if runs.empty:
        raise ValueError(f"{root}/records: no linear or logreg scores of an I-JEPA run to plot")
    ips = float(runs["ref_img_per_s"].dropna().iloc[-1])
    colors = {"linear": "C0", "logreg": "C1"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (metric, split), g in runs.groupby(["metric", "split"]):
        g = g.sort_values("images_seen")
        ax.plot(g["images_seen"] / 1000, g["value"], marker="o", ls="-" if split == "test" else "--", color=colors[metric],
                mfc=colors[metric] if split == "test" else "none", label=f"{chosen}, {'VISSL grid' if metric == 'linear' else 'logistic regression'} ({split})")
    _baselines(ax, df, colors, ("val", "test"))
    ax.set_xlabel("pretraining images (thousands, log; each budget's schedule sized to it)")
    ax.set_ylabel("Fashion-MNIST top-1 (%)")
    _log_x(ax, runs["images_seen"] / 1000)
    top = ax.secondary_xaxis("top", functions=(lambda k: k * 1000 / ips / 60, lambda m: m * 60 * ips / 1000))
    minutes = sorted(set(runs["budget_minutes"].dropna()))
    top.set_xticks(minutes, labels=[f"{m:g}" for m in minutes])  # the budgets themselves
    top.set_xticks([], minor=True)
    top.set_xlabel(f"budget: minutes at the reference {ips:.0f} img/s")
    ax.grid(alpha=0.3)
    return _finish(fig, [ax], out or root / "learning_curve.png")
