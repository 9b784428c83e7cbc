"""Multinomial logistic regression on standardised frozen features, solved in torch.

The probe of the raw-pixel baseline is scikit-learn's StandardScaler + LogisticRegression(C).
This is the same objective -- sum of cross-entropies + ||W||^2 / (2C), intercept unpenalised,
on features standardised by their train mean and (ddof 0) std -- solved by full-batch L-BFGS
with a strong-Wolfe line search (torch.optim.LBFGS) on CPU or GPU, in float32 (finished in
float64 where float32 rounding stalls it): scikit-learn's lbfgs (history 10) stops at
max_iter short of its tolerance on frozen-ViT features and has no GPU path for ImageNet. By default L-BFGS runs on a
preconditioned parametrisation W = V R (R whitens the features' covariance), the same
objective in 3-4x fewer iterations. Every fit runs to its tolerance (scikit-learn's `tol`:
max |gradient| of the mean objective, in W) and reports how many iterations it took and
whether it got there. scikit-learn stays the referee in the tests.
Used by `ijepa eval linear --protocol logreg` and the low-shot eval. `fit_msn` is MSN's
low-shot probe instead (its own preprocessing and objective, see there).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ijepa.evals.core.features import Features
from ijepa.evals.core.fit import holdout_split
from ijepa.progress import progress

SOLVER = "torch-lbfgs"
TOL = 1e-5  # max |grad| of the mean objective; scikit-learn's default 1e-4 leaves up to 0.2 points of solver noise
MAX_ITER = 20_000  # a cap that only a broken problem reaches: fits stop at `tol`
# a loss change this small ends a run as stalled: float64 as scipy's ftol (64 eps); float32
# below its eps, so that stage gets to ~3e-5 before float64 finishes (2x faster than 64 eps)
CHANGE_TOL = {torch.float32: 1e-8, torch.float64: 64 * torch.finfo(torch.float64).eps}
LINE_SEARCH_EVALS = 25  # strong-Wolfe evaluations per iteration at most (torch's default)
RIDGE_FLOOR = 1e-8  # the whitening's ridge at least this (features have unit variance): a Cholesky factor as C grows unbounded


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


def solver_name(precondition: bool) -> str:
    """What the records call the solver that ran."""
    return f"{SOLVER}-precond" if precondition else SOLVER


@dataclass
class Whitening:
    """The change of variables W = V R, R = L^-1 with L L^T = Sigma + alpha k I the Cholesky
    factor of the standardised features' covariance, ridged. L-BFGS minimises over V.

    Why: the objective's curvature along a feature direction scales with its variance, and
    frozen-ViT features have correlated directions whose variances span decades, so plain
    L-BFGS needs hundreds of iterations. Why alpha k: at W = 0 with balanced classes the mean
    cross-entropy's Hessian is (I - 11^T / k) / k (x) Sigma, so (penalty included) the
    objective's Hessian in W is (Sigma + alpha k I) / k on the moves the fit makes (rows summing
    to 0), and R (Sigma + alpha k I) R^T = I: in V every such direction curves by exactly 1 / k,
    and the penalty alone bounds the directions the data does not span. Any R with R^T R =
    (Sigma + alpha k I)^-1 does this (the symmetric root is this R rotated, V -> V U, which
    L-BFGS does not see); the Cholesky one costs d^3 / 3 instead of an eigendecomposition.
    Cost: one pass over the features (z^T z: about d / 4k iterations' worth), d x d memory,
    two triangular solves per evaluation, and no copy of the features: the logits are z (V R)^T.
    """

    chol: torch.Tensor  # L [D, D], lower triangular, float64

    @classmethod
    def of(cls, z: torch.Tensor, alpha: float, k: int, *, chunk: int = 65536) -> Whitening:
        n, d = z.shape
        cov = torch.zeros(d, d, dtype=torch.float64, device=z.device)
        for i in range(0, n, chunk):
            cov += (z[i : i + chunk].T @ z[i : i + chunk]).double()
        cov.div_(n).diagonal().add_(max(alpha * k, RIDGE_FLOOR))
        return cls(torch.linalg.cholesky(cov))

    def to(self, like: torch.Tensor) -> Whitening:
        return Whitening(self.chol.to(like))

    def weight(self, v: torch.Tensor) -> torch.Tensor:
        """W = V L^-1."""
        return torch.linalg.solve_triangular(self.chol.T, v.T, upper=True).T

    def grad(self, grad_w: torch.Tensor) -> torch.Tensor:
        """grad_V = grad_W L^-T (the chain rule through W = V L^-1)."""
        return torch.linalg.solve_triangular(self.chol, grad_w.T, upper=False).T

    def start(self, w: torch.Tensor) -> torch.Tensor:
        """V = W L."""
        return w @ self.chol


def fit_lbfgs(
    x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, c: float = 1.0, *, tol: float = TOL, max_iter: int = MAX_ITER,
    device: torch.device | str = "cpu", dtype: torch.dtype | None = None, init: LogReg | None = None, history: int = 100,
    precondition: bool = True,
) -> LogReg:
    """LogisticRegression(C=c) on StandardScaler'd `x`, by L-BFGS to max |grad| <= tol.

    `dtype=None`: float32 until it converges or stalls on float32 rounding, then float64 from
    there, so the answer is float64's at ~2x less CPU time than float64 throughout. `init`
    warm-starts from another fit (a C path, a refit on more rows): the objective is convex,
    so the solution is the same, only reached in fewer iterations. `precondition`: L-BFGS runs
    on V with W = V R (see `Whitening`), the same objective and the same stopping test
    on W's gradient in fewer iterations; off, it runs on W. `n_iter` counts both stages.
    """
    device = torch.device(device)
    x = torch.as_tensor(x)
    classes, yi = torch.as_tensor(y).unique(return_inverse=True)
    yi, k = yi.to(device), len(classes)
    fit, pre, n_iter = init, None, 0
    for dt in (torch.float32, torch.float64) if dtype is None else (dtype,):
        z = x.to(device, dt, copy=True)
        mean, scale = scaler(z)
        z.sub_(mean).div_(scale)  # in place: at ImageNet scale one copy of the features is plenty
        alpha = 1.0 / (c * len(z))
        if precondition and pre is None:
            pre = Whitening.of(z, alpha, k)
        w = fit.weight.to(device, dt).clone() if fit is not None else torch.zeros(k, z.shape[1], device=device, dtype=dt)
        b = fit.bias.to(device, dt).clone() if fit is not None else torch.zeros(k, device=device, dtype=dt)
        it, grad_max, loss = _solve(z, yi, w, b, alpha, pre, tol=tol, max_iter=max_iter - n_iter, change_tol=CHANGE_TOL[dt], history=history)
        del z  # before the next stage's copy
        n_iter += it
        fit = LogReg(mean, scale, w, b, classes.numpy(), n_iter, grad_max <= tol, grad_max, loss)
        if fit.converged or n_iter >= max_iter:
            break
    if not fit.converged:
        warnings.warn(f"logistic regression (C={c:g}) stopped at max |grad| {fit.grad_max:.2e} > tol {tol:g} after {fit.n_iter} iterations", stacklevel=2)
    return fit


def _solve(
    z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, alpha: float, pre: Whitening | None,
    *, tol: float, max_iter: int, change_tol: float, history: int,
) -> tuple[int, float, float]:
    """L-BFGS (strong Wolfe) on (V, b), W = V R (`pre`; W itself without), in z's dtype; (w, b)
    are updated in place.

    torch's LBFGS is stepped one iteration at a time (its state persists) so that every
    iterate is tested on the original problem's max |grad_W|, |grad_b| <= tol, as scikit-learn
    tests; each point's loss and gradients are kept from the line search that evaluated it, so
    the test costs no evaluation. Stops there, at max_iter, or on a stall (no change above
    change_tol in the loss or the parameters). Returns (iterations, max |grad|, loss).
    """
    pre = pre.to(z) if pre is not None else None
    v = pre.start(w) if pre is not None else w  # without R, L-BFGS moves w itself
    chunk = max(1, 2**26 // len(b))
    opt = torch.optim.LBFGS([v, b], lr=1, max_iter=1, max_eval=1 + LINE_SEARCH_EVALS, tolerance_grad=0,
                            tolerance_change=change_tol, history_size=history, line_search_fn="strong_wolfe")
    pending, seen = [], []

    def evaluate() -> tuple[float, torch.Tensor, torch.Tensor]:
        return loss_grad(z, y, pre.weight(v) if pre is not None else v, b, alpha, chunk=chunk)

    def closure() -> float:
        point = pending.pop() if pending else evaluate()  # a step opens on the point already evaluated
        seen.append((v.clone(), b.clone(), point))
        v.grad, b.grad = (pre.grad(point[1]) if pre is not None else point[1]), point[2]
        return point[0]

    def grad_max(point) -> float:
        return max(float(point[1].abs().max()), float(point[2].abs().max()))

    n_iter, point = 0, evaluate()
    while grad_max(point) > tol and n_iter < max_iter:
        v0, b0, loss0 = v.clone(), b.clone(), point[0]
        pending[:], seen[:] = [point], []
        opt.step(closure)
        n_iter = opt.state[v]["n_iter"]
        point = next((pt for vv, bb, pt in seen if torch.equal(vv, v) and torch.equal(bb, b)), None) or evaluate()
        moved = max(float((v - v0).abs().max()), float((b - b0).abs().max()))
        if moved <= change_tol or abs(point[0] - loss0) < change_tol:
            break
    if pre is not None:
        w.copy_(pre.weight(v))  # the weight in the standardised features' space, as every caller reads it
    v.grad = b.grad = None
    return n_iter, grad_max(point), point[0]


MSN_MAX_ITER = 300  # logistic_eval.py's max_epochs (Cyanure epochs; here scikit-learn L-BFGS iterations)
MSN_OBJECTIVE = "mean cross-entropy + (lambd / N) / 2 ||W||^2, no intercept (scikit-learn C = 1 / lambd)"
MSN_PREPROCESS = "per row: minus the row's own mean, then L2-normalised (Cyanure preprocess, centering, columns=False)"


def msn_preprocess(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Each feature vector minus its own mean over its dimensions, then scaled to unit L2 norm:
    what Cyanure's `preprocess(X, centering=True, normalize=True, columns=False)` does to the
    rows of X in MSN's `logistic_eval.py` (train and test alike, no train statistics). Why per
    row: Cyanure centres the columns of the D x N transpose it is handed. A row of norm 0 stays 0
    (Cyanure would draw a random unit vector)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 1e-10, norm, 1.0)


def msn_c(lambd: float, n: int) -> float:
    """scikit-learn's C for MSN's penalty. MSN divides `lambd` by the number of rows N and Cyanure
    minimises (1/N) sum_i loss_i + (lambd / N) / 2 ||W||^2; scikit-learn minimises
    C sum_i loss_i + ||W||^2 / 2, the same argmin when C = 1 / (N * lambd / N) = 1 / lambd."""
    return 1.0 / (n * (lambd / n))


def fit_msn(x: np.ndarray, y: np.ndarray, lambd: float, *, max_iter: int = MSN_MAX_ITER, tol: float = 1e-4) -> LogisticRegression:
    """MSN's multinomial L2 logistic regression (no intercept) on `msn_preprocess`ed rows `x`,
    by scikit-learn's lbfgs (Cyanure is not a dependency). Stopping at `max_iter` is MSN's
    protocol, not a failure: `n_iter_ < max_iter` says whether it reached `tol`."""
    if len(np.unique(y)) < 3:  # scikit-learn fits two classes as one binomial vector: another objective
        raise ValueError(f"MSN's multinomial probe needs 3 or more classes; the labelled rows hold {len(np.unique(y))}")
    model = LogisticRegression(C=msn_c(lambd, len(x)), fit_intercept=False, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def topk(model: Pipeline | LogReg | LogisticRegression, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """(top-1, top-5) of a fitted model (ours or scikit-learn's), as fractions."""
    scores = torch.as_tensor(model.decision_function(x))
    top = torch.as_tensor(model.classes_)[scores.topk(min(5, scores.shape[1]), dim=1).indices]
    hit = top == torch.as_tensor(np.asarray(y)).view(-1, 1)
    return float(hit[:, 0].float().mean()), float(hit.any(1).float().mean())


def fit_logreg(
    train: Features, evals: dict[str, Features], *, feature_sets: tuple[str, ...], cs: tuple[float, ...] = (1.0,),
    heldout: float = 0.1, seed: int = 0, tol: float = TOL, max_iter: int = MAX_ITER, device: torch.device | str = "cpu",
    precondition: bool = True, console: Console | None = None,
) -> dict:
    """Pick (feature set, C) on a held-out part of `train`, refit the pick on all of `train`
    (warm-started from its held-out fit: same C, nearly the same rows, the same convex
    objective), and score it on each split in `evals` (reported, never used to choose)."""
    y = train.labels
    candidates = [(f, c) for f in feature_sets for c in cs]
    rows, best = [], None
    fit_idx, held_idx = holdout_split(train.labels, heldout, seed=seed)
    kw = dict(tol=tol, max_iter=max_iter, device=device, precondition=precondition)
    with progress(console, "logreg fits") as bar:
        task = bar.add_task("", total=len(candidates) + 1 if len(candidates) > 1 else 1, rate="")
        for f, c in candidates if len(candidates) > 1 else []:  # one candidate: nothing to choose
            x = train.get(f)
            m = fit_lbfgs(x[fit_idx], y[fit_idx], c, **kw)
            held = topk(m, x[held_idx], y[held_idx])[0]
            rows.append({"features": f, "C": c, "heldout_top1": held, "n_iter": m.n_iter, "converged": m.converged})
            if best is None or held > best[0]:
                best = (held, f, c, m)
            bar.update(task, advance=1, rate=f"{f} C={c:g}: held-out {100 * held:.2f}% ({m.n_iter} it)")
        held, f, c, start = best or (None, *candidates[0], None)
        model = fit_lbfgs(train.get(f), y, c, init=start, **kw)
        bar.update(task, advance=1, rate=f"refit {f} C={c:g} ({model.n_iter} it)")
    out = {"features": f, "C": c, "heldout_top1": held, "candidates": rows, "solver": solver_name(precondition), "tol": tol,
           "n_iter": model.n_iter, "converged": model.converged, "grad_max": model.grad_max,
           "refit_init": "heldout fit" if start is not None else "zeros"}
    for name, data in evals.items():
        out[f"{name}_top1"], out[f"{name}_top5"] = topk(model, data.get(f), data.labels)
    return out
