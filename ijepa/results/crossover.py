"""The crossover experiment's table and figure: MAE minus I-JEPA at matched compute, against a family's level.

From `curve.score` records on the Fashion-MNIST families (`ijepa.families`: clutter, noise;
Fashion-MNIST is the level 0 of each, its records shared by every family shown): for every
family, level, budget (minutes of the I-JEPA recipe, the same training FLOPs for MAE) and extra
overrides (a depth axis), each probe's test top-1 of both methods, their gap (MAE - I-JEPA:
negative where I-JEPA wins) and the random-init and raw-pixel reference lines of the level.
Only test numbers of val-chosen recipes are read; the gap's spread is the low-shot probe's
seed spread where it has seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ijepa.families import FAMILIES, family
from ijepa.results.curves import LABELS, score_frame
from ijepa.results.io import RESULTS_DIR, load_records
from ijepa.results.render import markdown_table, save_figure

PROBES = {"linear": "VISSL grid", "logreg": "logistic regression", "knn": "k-NN", "lowshot 1%": "low-shot 1%"}
MOONSHOT = 2.0  # points by which I-JEPA must beat MAE on both linear probes


def crossover_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (family, level, budget, extra, probe): I-JEPA, MAE, gap = MAE - I-JEPA
    (points), its spread, and the level's reference lines; only cells both methods have."""
    df = score_frame(records)
    if df.empty:
        return pd.DataFrame()
    df = df[(df["split"] == "test") & df["default_probe"] & df["level"].notna() & df["metric"].isin(list(PROBES))]
    df = _by_family(df)
    refs = df[df["method"].isin(["random-init", "raw-pixels"])].pivot_table(index=["family", "level", "metric"], columns="method",
                                                                           values="value", aggfunc="last")
    runs = df[df["method"].isin(["ijepa", "mae"])].dropna(subset=["budget_minutes"])
    rows = []
    for (fam, level, minutes, extra, metric), g in runs.groupby(["family", "level", "budget_minutes", "extra", "metric"]):
        if (pair := _matched(g)) is None:
            continue
        ij, ma = pair
        spread = [s for s in (ij["std"], ma["std"]) if s is not None and pd.notna(s)]
        ref = refs.loc[(fam, level, metric)] if (fam, level, metric) in refs.index else pd.Series(dtype=float)
        rows.append({"family": fam, "level": level, "budget_minutes": minutes, "extra": extra, "probe": metric, "ijepa": ij["value"], "mae": ma["value"],
                     "gap": ma["value"] - ij["value"], "gap_sd": (sum(s * s for s in spread)) ** 0.5 if spread else None,
                     "ijepa_recipe": ij["recipe"], "mae_recipe": ma["recipe"], "random_init": ref.get("random-init"),
                     "raw_pixels": ref.get("raw-pixels"), "pflops": ij["pretrain_pflops"]})
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows).assign(_p=lambda d: d["probe"].map(list(PROBES).index))
    return out.sort_values(["family", "extra", "budget_minutes", "level", "_p"]).drop(columns="_p").reset_index(drop=True)


def _by_family(df: pd.DataFrame) -> pd.DataFrame:
    """Each score under its family (column `family`); Fashion-MNIST's, level 0 of every family,
    under each family that has records (the first family while none has)."""
    fam = df["dataset"].map(lambda d: (family(d) or (None,))[0])
    shown = [f for f in FAMILIES if (fam == f).any()] or [next(iter(FAMILIES))]
    shared = df[fam.isna()]
    return pd.concat([df[fam.notna()].assign(family=fam[fam.notna()]), *(shared.assign(family=f) for f in shown)], ignore_index=True)


def _matched(g: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    """The latest I-JEPA score of a cell and the latest MAE score at the same FLOPs budget. A
    level keeps the runs of every recipe it ever had (Fashion-MNIST: the headline curve's
    r8_combo beside the crossover rule's choice), so a pair is made by budget, never by age
    alone: an MAE run sized for another I-JEPA recipe's minutes is not its match."""
    g = g.sort_values("created")
    ij = g[g["method"] == "ijepa"]
    if ij.empty:
        return None
    ij = ij.iloc[-1]
    ma = g[(g["method"] == "mae") & ((g["budget_pflops"] / ij["budget_pflops"] - 1).abs() < 1e-6)]
    return None if ma.empty else (ij, ma.iloc[-1])


def moonshot(frame: pd.DataFrame) -> pd.DataFrame:
    """The settings where I-JEPA beats MAE by >= 2 points on test by BOTH linear probes."""
    if frame.empty:
        return frame
    lin = frame[frame["probe"].isin(["linear", "logreg"])].pivot_table(index=["family", "level", "budget_minutes", "extra"],
                                                                      columns="probe", values="gap")
    if not {"linear", "logreg"} <= set(lin.columns):
        return lin.iloc[0:0]
    return lin[(lin["linear"] <= -MOONSHOT) & (lin["logreg"] <= -MOONSHOT)].reset_index()


def crossover_markdown(records: list[dict[str, Any]]) -> str:
    """The crossover table: every cell measured, with the recipes each level chose on val (a
    `family` column once more than one family has records)."""
    f = crossover_frame(records)
    if f.empty:
        return "_No level has both methods' test scores yet._"
    show = pd.DataFrame({**({"family": f["family"]} if f["family"].nunique() > 1 else {}),
        "level": f["level"].map(lambda v: f"{v:g}"), "budget (I-JEPA min)": f["budget_minutes"].map(lambda v: f"{v:g}"),
        "extra": f["extra"], "probe (test)": f["probe"].map(PROBES), "I-JEPA": f["ijepa"].map(lambda v: f"{v:.2f}"),
        "MAE": f["mae"].map(lambda v: f"{v:.2f}"), "MAE - I-JEPA": [
            f"{g:+.2f}" + ("" if s is None or pd.isna(s) else f" ± {s:.2f}") for g, s in zip(f["gap"], f["gap_sd"], strict=True)],
        "random init": f["random_init"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.2f}"),
        "raw pixels": f["raw_pixels"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.2f}"),
        "recipes (val-chosen)": f["ijepa_recipe"] + " / " + f["mae_recipe"],
    })
    return markdown_table(show)


def plot_crossover(results_dir: Path | None = None, *, out: Path | None = None) -> Path:
    """`results/crossover.png`: MAE - I-JEPA (test, points) against level, one row of panels per
    family and one panel per probe, one line per budget (the depth axis as hollow markers),
    seed spread as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(results_dir or RESULTS_DIR)
    f = crossover_frame(load_records(root)[0])
    if f.empty:
        raise ValueError(f"{root}/records: no level of any data family has test scores of both I-JEPA and MAE")
    fams = list(dict.fromkeys(f["family"]))
    fig, axes = plt.subplots(len(fams), len(PROBES), figsize=(3.6 * len(PROBES), 3.8 * len(fams)), sharey=True, squeeze=False)
    for row, fam in zip(axes, fams, strict=True):
        for ax, (probe, title) in zip(row, PROBES.items(), strict=True):
            _panel(ax, f[f["family"] == fam], probe, f"{title} (test)", f"{FAMILIES[fam]} level (0 = Fashion-MNIST)")
        row[0].set_ylabel(f"{LABELS['mae']} - {LABELS['ijepa']} top-1 (points)")
    handles, labels = _legend(axes)
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8, bbox_to_anchor=(0.5, -0.06), frameon=False)
    fig.suptitle(f"MAE minus I-JEPA at matched training FLOPs on {' and '.join(fams)} (below 0: I-JEPA ahead; shaded: I-JEPA by >= 2 "
                 "points)", fontsize=10)
    return save_figure(fig, out or root / "crossover.png", dpi=110)


def _legend(axes: Any) -> tuple[list[Any], list[str]]:
    """The lines of each row's first panel, each label once."""
    handles, labels = [], []
    for row in axes:
        for h, label in zip(*row[0].get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    return handles, labels


def _panel(ax: Any, f: pd.DataFrame, probe: str, title: str, xlabel: str) -> None:
    """One family's gaps by one probe: a line per (extra, budget), the moonshot band shaded."""
    g = f[f["probe"] == probe]
    for i, ((extra, minutes), line) in enumerate(g.groupby(["extra", "budget_minutes"])):
        line = line.sort_values("level")
        label = f"{minutes:g} I-JEPA min" + (f", {extra}" if extra else "")
        ax.errorbar(line["level"], line["gap"], yerr=line["gap_sd"].astype(float).fillna(0), marker="os^D"[i % 4], capsize=3,
                    ls="--" if extra else "-", mfc="none" if extra else None, label=label)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axhspan(ax.get_ylim()[0] if ax.get_ylim()[0] < -MOONSHOT else -MOONSHOT - 1, -MOONSHOT, color="C2", alpha=0.08)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xticks(sorted(set(f["level"]) | {0.0, 1.0}))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def family_gallery(name: str, out: Path, *, levels: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0), n: int = 10) -> Path:
    """One row of the same `val` images per level of family `name` (README galleries:
    `results/clutter_gallery.png`, `results/noise_gallery.png`)."""
    import numpy as np
    from PIL import Image

    from ijepa.data import GENERATORS
    from ijepa.data.fashion_mnist import DEFAULT_ROOT
    from ijepa.data.generated import generated

    rows = [np.concatenate(list(generated(GENERATORS[name], str(DEFAULT_ROOT), "val", lv)[:n]), axis=1) for lv in levels]
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(out)
    return out


def gallery_path(results_dir: Path, name: str) -> Path:
    """Where family `name`'s gallery is drawn: `results/<tag>_gallery.png`."""
    return results_dir / f"{FAMILIES[name]}_gallery.png"
