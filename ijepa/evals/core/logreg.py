"""Multinomial logistic regression on standardised frozen features (scikit-learn).

The classifier of the raw-pixel baseline (StandardScaler + LogisticRegression), so an encoder
and raw pixels can be read against each other through the very same probe. Used by
`ijepa eval linear --protocol logreg`, the low-shot eval and the raw-pixel baseline.
"""

from __future__ import annotations

import numpy as np
import torch
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ijepa.evals.core.features import Features, progress
from ijepa.evals.core.fit import holdout_split


def logreg_model(c: float = 1.0, *, max_iter: int = 1000, tol: float = 1e-4) -> Pipeline:
    """StandardScaler + L2 multinomial logistic regression (lbfgs); C=1 is scikit-learn's default."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, tol=tol))


def topk(model: Pipeline, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(top-1, top-5) of a fitted model, as fractions."""
    scores = torch.from_numpy(model.decision_function(x))
    top = torch.from_numpy(model.classes_)[scores.topk(min(5, scores.shape[1]), dim=1).indices]
    hit = top == torch.from_numpy(np.asarray(y)).view(-1, 1)
    return float(hit[:, 0].float().mean()), float(hit.any(1).float().mean())


def fit_logreg(
    train: Features, evals: dict[str, Features], *, feature_sets: tuple[str, ...], cs: tuple[float, ...] = (1.0,),
    heldout: float = 0.1, seed: int = 0, max_iter: int = 1000, console: Console | None = None,
) -> dict:
    """Pick (feature set, C) on a held-out part of `train`, refit the pick on all of `train`,
    and score it on each split in `evals` (reported, never used to choose)."""
    y = train.labels.numpy()
    candidates = [(f, c) for f in feature_sets for c in cs]
    rows, best = [], None
    fit_idx, held_idx = holdout_split(train.labels, heldout, seed=seed)
    fit_idx, held_idx = fit_idx.numpy(), held_idx.numpy()
    with progress(console, "logreg fits") as bar:
        task = bar.add_task("", total=len(candidates) + 1 if len(candidates) > 1 else 1, rate="")
        for f, c in candidates if len(candidates) > 1 else []:  # one candidate: nothing to choose
            x = train.get(f).numpy()
            m = logreg_model(c, max_iter=max_iter).fit(x[fit_idx], y[fit_idx])
            held = topk(m, x[held_idx], y[held_idx])[0]
            rows.append({"features": f, "C": c, "heldout_top1": held})
            if best is None or held > best[0]:
                best = (held, f, c)
            bar.update(task, advance=1, rate=f"{f} C={c:g}: held-out {100 * held:.2f}%")
        held, f, c = best or (None, *candidates[0])
        model = logreg_model(c, max_iter=max_iter).fit(train.get(f).numpy(), y)
        bar.update(task, advance=1, rate=f"refit {f} C={c:g}")
    out = {"features": f, "C": c, "heldout_top1": held, "candidates": rows, "n_iter": int(model[-1].n_iter_.max())}
    for name, data in evals.items():
        out[f"{name}_top1"], out[f"{name}_top5"] = topk(model, data.get(f).numpy(), data.labels.numpy())
    return out
