"""Multinomial logistic regression on standardised frozen features, solved in torch.

The probe of the raw-pixel baseline is scikit-learn's StandardScaler + LogisticRegression(C).
This is the same objective -- sum of cross-entropies + ||W||^2 / (2C), intercept unpenalised,
on features standardised by their train mean and (ddof 0) std -- solved by full-batch L-BFGS
with a strong-Wolfe line search (torch.optim.LBFGS) on CPU or GPU, in float32 and finished
in float64: scikit-learn's lbfgs (history 10) stops at max_iter short of its tolerance on
frozen-ViT features and has no GPU path for ImageNet. Every fit runs to its tolerance
(scikit-learn's `tol`: max |gradient| of the mean objective) and reports how many
iterations it took and whether it got there. scikit-learn stays the referee in the tests.
Used by `ijepa eval linear --protocol logreg` and the low-shot eval.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ijepa.evals.core.features import Features, progress
from ijepa.evals.core.fit import holdout_split

SOLVER = "torch-lbfgs"
TOL = 1e-5  # max |grad| of the mean objective; scikit-learn's default 1e-4 leaves up to 0.2 points of solver noise
MAX_ITER = 20_000  # a cap that only a broken problem reaches: fits stop at `tol`
# a loss change this small ends a run as stalled: float64 as scipy's ftol (64 eps); float32
# below its eps, so that stage gets to ~3e-5 before float64 finishes (2x faster than 64 eps)
CHANGE_TOL = {torch.float32: 1e-8, torch.float64: 64 * torch.finfo(torch.float64).eps}


def logreg_model(c: float = 1.0, *, max_iter: int = 1000, tol: float = 1e-4) -> Pipeline:
    """scikit-learn's StandardScaler + L2 multinomial LogisticRegression (lbfgs): the referee."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, tol=tol))


@dataclass
class LogReg:
    """A fitted probe, with scikit-learn's `decision_function` / `classes_` contract."""

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor  # [K, D] (as scikit-learn's coef_), on standardised features
    bias: torch.Tensor  # [K]
    classes_: np.ndarray
    n_iter: int
    converged: bool
    grad_max: float  # max |gradient| of the mean objective at the solution
    loss: float

    @torch.no_grad()
    def decision_function(self, x: np.ndarray | torch.Tensor, *, chunk: int = 65536) -> torch.Tensor:
        """Class scores [N, K] on the CPU."""
        x = torch.as_tensor(x)
        out = [torch.addmm(self.bias, self.standardise(x[i : i + chunk]), self.weight.T).cpu() for i in range(0, len(x), chunk)]
        return torch.cat(out) if out else torch.zeros(0, len(self.classes_), dtype=self.weight.dtype)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.weight) - self.mean) / self.scale

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.classes_[self.decision_function(x).argmax(1).numpy()]


def scaler(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """StandardScaler's mean and scale: ddof-0 std, constant features scaled by 1."""
    mean = x.mean(0)
    std = (x - mean).square_().mean(0).sqrt_()
    return mean, torch.where(std < 10 * torch.finfo(x.dtype).eps, torch.ones_like(std), std)


def loss_grad(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, alpha: float, *, chunk: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy + alpha/2 ||W||^2 and its gradient, written out (softmax - onehot),
    in row chunks so the [N, K] logits never exist at once (ImageNet: 1.28M x 1000). W is
    [K, D]: `p.T @ z` is 2-6x faster on CPU than `z.T @ p`."""
    n = len(z)
    gw, gb = w * alpha, torch.zeros_like(b)
    total = 0.0
    for i in range(0, n, chunk):
        zi, yi = z[i : i + chunk], y[i : i + chunk]
        logits = torch.addmm(b, zi, w.T)
        lse = logits.logsumexp(1, keepdim=True)
        total += float((lse.squeeze(1) - logits.gather(1, yi[:, None]).squeeze(1)).sum())
        p = logits.sub_(lse).exp_()
        p[torch.arange(len(yi), device=p.device), yi] -= 1
        gw.addmm_(p.T, zi, alpha=1 / n)
        gb += p.sum(0) / n
    return total / n + 0.5 * alpha * float(w.square().sum()), gw, gb


def fit_lbfgs(
    x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, c: float = 1.0, *, tol: float = TOL, max_iter: int = MAX_ITER,
    device: torch.device | str = "cpu", dtype: torch.dtype | None = None, init: LogReg | None = None, history: int = 100,
) -> LogReg:
    """LogisticRegression(C=c) on StandardScaler'd `x`, by L-BFGS to max |grad| <= tol.

    `dtype=None`: float32 until it converges or stalls on float32 rounding, then float64 from
    there, so the answer is float64's at ~2x less CPU time than float64 throughout. `init`
    warm-starts from another fit on the same rows (a C path): the objective is convex, so the
    solution is the same, only reached in fewer iterations. `n_iter` counts both stages.
    """
    if dtype is None:
        fit = _solve(x, y, c, tol=tol, max_iter=max_iter, device=device, dtype=torch.float32, init=init, history=history)
        if not fit.converged and fit.n_iter < max_iter:
            rough = fit.n_iter
            fit = _solve(x, y, c, tol=tol, max_iter=max_iter - rough, device=device, dtype=torch.float64, init=fit, history=history)
            fit.n_iter += rough
    else:
        fit = _solve(x, y, c, tol=tol, max_iter=max_iter, device=device, dtype=dtype, init=init, history=history)
    if not fit.converged:
        warnings.warn(f"logistic regression (C={c:g}) stopped at max |grad| {fit.grad_max:.2e} > tol {tol:g} after {fit.n_iter} iterations", stacklevel=2)
    return fit


def _solve(x, y, c: float, *, tol: float, max_iter: int, device: torch.device | str, dtype: torch.dtype, init: LogReg | None, history: int) -> LogReg:
    """One L-BFGS run in one dtype: stops at tol, at max_iter, or when the loss stops changing."""
    device = torch.device(device)
    x = torch.as_tensor(x).to(device, dtype, copy=True)
    classes, yi = torch.as_tensor(y).unique(return_inverse=True)
    yi = yi.to(device)
    mean, scale = scaler(x)
    z = x.sub_(mean).div_(scale)  # in place: at ImageNet scale one copy of the features is plenty
    n, d, k = len(z), z.shape[1], len(classes)
    w = init.weight.to(device, dtype).clone() if init is not None else torch.zeros(k, d, device=device, dtype=dtype)
    b = init.bias.to(device, dtype).clone() if init is not None else torch.zeros(k, device=device, dtype=dtype)
    alpha, chunk = 1.0 / (c * n), max(1, 2**26 // max(k, 1))
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=tol,
                            tolerance_change=CHANGE_TOL[dtype], history_size=history, line_search_fn="strong_wolfe")

    def closure() -> float:
        loss, w.grad, b.grad = loss_grad(z, yi, w, b, alpha, chunk=chunk)
        return loss

    opt.step(closure)
    loss, gw, gb = loss_grad(z, yi, w, b, alpha, chunk=chunk)  # the line search may end off its last evaluation
    grad_max = max(float(gw.abs().max()), float(gb.abs().max()))
    w.grad = b.grad = None
    return LogReg(mean, scale, w, b, classes.numpy(), int(opt.state[w].get("n_iter", 0)), grad_max <= tol, grad_max, loss)


def topk(model: Pipeline | LogReg, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(top-1, top-5) of a fitted model (ours or scikit-learn's), as fractions."""
    scores = torch.as_tensor(model.decision_function(x))
    top = torch.as_tensor(model.classes_)[scores.topk(min(5, scores.shape[1]), dim=1).indices]
    hit = top == torch.as_tensor(np.asarray(y)).view(-1, 1)
    return float(hit[:, 0].float().mean()), float(hit.any(1).float().mean())


def fit_logreg(
    train: Features, evals: dict[str, Features], *, feature_sets: tuple[str, ...], cs: tuple[float, ...] = (1.0,),
    heldout: float = 0.1, seed: int = 0, tol: float = TOL, max_iter: int = MAX_ITER, device: torch.device | str = "cpu",
    console: Console | None = None,
) -> dict:
    """Pick (feature set, C) on a held-out part of `train`, refit the pick on all of `train`,
    and score it on each split in `evals` (reported, never used to choose)."""
    y = train.labels
    candidates = [(f, c) for f in feature_sets for c in cs]
    rows, best = [], None
    fit_idx, held_idx = holdout_split(train.labels, heldout, seed=seed)
    kw = dict(tol=tol, max_iter=max_iter, device=device)
    with progress(console, "logreg fits") as bar:
        task = bar.add_task("", total=len(candidates) + 1 if len(candidates) > 1 else 1, rate="")
        for f, c in candidates if len(candidates) > 1 else []:  # one candidate: nothing to choose
            x = train.get(f)
            m = fit_lbfgs(x[fit_idx], y[fit_idx], c, **kw)
            held = topk(m, x[held_idx], y[held_idx])[0]
            rows.append({"features": f, "C": c, "heldout_top1": held, "n_iter": m.n_iter, "converged": m.converged})
            if best is None or held > best[0]:
                best = (held, f, c)
            bar.update(task, advance=1, rate=f"{f} C={c:g}: held-out {100 * held:.2f}% ({m.n_iter} it)")
        held, f, c = best or (None, *candidates[0])
        model = fit_lbfgs(train.get(f), y, c, **kw)
        bar.update(task, advance=1, rate=f"refit {f} C={c:g} ({model.n_iter} it)")
    out = {"features": f, "C": c, "heldout_top1": held, "candidates": rows, "solver": SOLVER, "tol": tol,
           "n_iter": model.n_iter, "converged": model.converged, "grad_max": model.grad_max}
    for name, data in evals.items():
        out[f"{name}_top1"], out[f"{name}_top5"] = topk(model, data.get(f), data.labels)
    return out
