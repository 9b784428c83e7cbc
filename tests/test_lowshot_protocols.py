"""Low-shot protocols as the papers ran them (issue 38): MSN's frozen logistic regression
(`logreg: msn`) and RandAugment in low-shot fine-tuning (`finetune.rand_augment`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures.imagefolder import write_imagefolder
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from timm.data.auto_augment import RandAugment as TimmRandAugment
from typer.testing import CliRunner

from ijepa.data import data_spec
from ijepa.evals.core.config import FIXTURE_ENCODER, FinetuneConfig
from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.core.finetune import train_views
from ijepa.evals.core.logreg import fit_msn, msn_c, msn_preprocess
from ijepa.evals.entries.lowshot import LowshotSpec, rows
from ijepa.evals.lowshot import run_lowshot
from ijepa.results.schema import validate
from ijepa.typedconfig import OptionError, load

MAE_AA = "rand-m9-mstd0.5-inc1"
RGB = EncoderSpec(random_init="vit_tiny", depth=1, img_size=32, patch_size=8, in_chans=3)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("if"))


def test_msn_preprocessing_centres_and_normalises_each_row_and_fits_no_intercept():
    """Cyanure's preprocess(centering, columns=False): each row minus its own mean, then unit
    L2 norm; a row's result does not depend on the other rows (no train statistics)."""
    x = np.array([[1.0, 2.0, 3.0], [4.0, 0.0, 2.0], [5.0, 5.0, 5.0]])
    want = np.array([[-1.0, 0.0, 1.0] / np.sqrt(2), [2.0, -2.0, 0.0] / np.sqrt(8), [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(msn_preprocess(x), want, atol=1e-12)
    np.testing.assert_allclose(msn_preprocess(x[1:2]), want[1:2], atol=1e-12)
    model = fit_msn(msn_preprocess(np.random.default_rng(0).normal(size=(12, 3))), np.arange(12) % 3, 0.01)
    assert model.coef_.shape == (3, 3) and not model.fit_intercept and np.all(model.intercept_ == 0)
    with pytest.raises(ValueError, match="3 or more classes"):  # scikit-learn would fit one binomial vector
        fit_msn(msn_preprocess(x), np.array([0, 1, 0]), 0.01)


def msn_objective(w: np.ndarray, x: np.ndarray, y: np.ndarray, lambd: float, k: int) -> tuple[float, np.ndarray]:
    """MSN's objective written out: mean multinomial cross-entropy + (lambd / N) / 2 ||W||^2, no intercept."""
    n = len(x)
    w = w.reshape(k, -1)
    logits = x @ w.T
    p = softmax(logits, axis=1)
    p[np.arange(n), y] -= 1
    loss = -log_softmax(logits, axis=1)[np.arange(n), y].mean() + 0.5 * lambd / n * np.square(w).sum()
    return loss, (p.T @ x / n + lambd / n * w).ravel()


def test_msn_c_gives_scikit_learn_the_objective_msn_minimises():
    """scikit-learn with C = msn_c(lambd, N) lands on the minimiser of MSN's objective (found
    here by scipy's L-BFGS on the objective itself), for two subset sizes."""
    rng = np.random.default_rng(0)
    for n in (30, 90):
        x = msn_preprocess(rng.normal(size=(n, 5)) + np.repeat(np.eye(3, 5), n // 3, axis=0))
        y = np.repeat(np.arange(3), n // 3)
        lambd = 0.5
        direct = minimize(msn_objective, np.zeros(15), args=(x, y, lambd, 3), jac=True, method="L-BFGS-B",
                          options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000}).x.reshape(3, 5)
        fitted = fit_msn(x, y, lambd, tol=1e-10, max_iter=10_000).coef_
        # scikit-learn's multinomial W is the minimiser itself (the penalty pins the class-shift freedom)
        np.testing.assert_allclose(fitted, direct, atol=1e-4)
        assert msn_c(lambd, n) == pytest.approx(1 / lambd)


def test_lowshot_cli_with_msns_probe_writes_a_record_that_says_so(tmp_path, tree):
    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    from ijepa.cli import app

    args = ["eval", "lowshot", *FIXTURE_ENCODER, "--data", str(tree), "--fractions", "0.25", "--seeds", "0,1",
            "--results", str(tmp_path), "--no-cache", "--json"]
    res = CliRunner().invoke(app, [*args, "--logreg", "msn", "--msn-lambd", "0.001"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    written = json.loads(open(rec.pop("record")).read())
    assert written["logreg"] == "msn" and written["msn_lambd"] == [0.001] and written["fit_intercept"] is False
    assert "row" in written["preprocess"] and written["solver"] == "sklearn-lbfgs" and written["selected_on"].startswith("none")
    seed_rows = written["fractions"]["0.25"]["seeds"]
    assert all(r["lambd"] == 0.001 and r["C"] == pytest.approx(1000) and r["n_iter"] > 0 for r in seed_rows)
    assert validate(written) is None and ("probe", "MSN's logreg, lambd 0.001") in rows(written)
    refused = CliRunner().invoke(app, [*args, "--logreg", "msn", "--protocol", "heads"])
    assert refused.exit_code == 2 and "--logreg is 'msn'" in refused.output and "Traceback" not in refused.output


def test_msn_picks_lambd_by_cv_on_the_subset_and_ours_records_are_unchanged(tmp_path, tree):
    spec = LowshotSpec(data=str(tree), fractions=(0.5,), seeds=(0,), logreg="msn", msn_lambd=(1e-4, 10.0))
    row = run_lowshot(RGB, spec, cache_dir=tmp_path)["fractions"]["0.5"]["seeds"][0]
    assert row["lambd"] in (1e-4, 10.0) and row["cv_top1"] is not None  # chosen on held-out folds of the labelled subset
    ours = run_lowshot(RGB, LowshotSpec(data=str(tree), fractions=(0.5,), seeds=(0,)), cache_dir=tmp_path)
    assert not {"logreg", "msn_lambd", "preprocess", "fit_intercept"} & set(ours) and ours["solver"] == "torch-lbfgs-precond"


@pytest.mark.parametrize("in_chans", [3, 1])
def test_finetune_views_apply_timms_randaugment_only_when_set(tree, in_chans):
    """Set: timm's RandAugment (MAE's string) after crop and flip, on RGB and on grayscale (PIL mode L)
    crops alike, and the view is still a function of (seed, epoch, index); null: none, as before."""
    spec, idx = data_spec(str(tree)), torch.arange(8)
    plain = train_views(spec, idx, FinetuneConfig(), size=32, in_chans=in_chans, seed=0)
    views = train_views(spec, idx, FinetuneConfig(rand_augment=MAE_AA), size=32, in_chans=in_chans, seed=0)
    assert plain.rand_augment is None and isinstance(views.rand_augment.op, TimmRandAugment)
    assert views.rand_augment.config == MAE_AA and views.rand_augment.op.num_layers == 2
    x = torch.stack([views[i][0] for i in range(8)])
    assert x.shape == (8, in_chans, 32, 32) and torch.equal(x[3], views[3][0])
    assert not torch.equal(x, torch.stack([plain[i][0] for i in range(8)]))  # same crops, then augmented


def test_finetune_with_randaugment_runs_and_says_so_and_a_bad_string_is_one_line(tree):
    cfg = FinetuneConfig(epochs=1, batch_size=8, warmup_epochs=0, rand_augment=MAE_AA)
    rec = run_lowshot(RGB, LowshotSpec(data=str(tree), fractions=(0.25,), seeds=(0,), protocol="finetune", finetune=cfg))
    assert rec["finetune"]["rand_augment"] == MAE_AA and 0 <= rec["top1"] <= 1
    for bad in ("rand-m9x", "randaug-m9", "rand-m9-foo1"):
        with pytest.raises(OptionError, match=r"finetune\.rand_augment is .*expected a timm RandAugment string"):
            load(LowshotSpec, values={"finetune": {"rand_augment": bad}})
    with pytest.raises(OptionError, match="finetune.rand_augment is 'rand-m9x'"):
        run_lowshot(RGB, LowshotSpec(data=str(tree), protocol="finetune", finetune=FinetuneConfig(rand_augment="rand-m9x")))


def test_msn_refuses_candidates_no_cross_validation_can_choose_among():
    """One labelled row per class and two lambds: no fold split exists, and taking the first would
    be a choice made by nothing on a record that says train-heldout."""
    from ijepa.evals.core.features import Features
    from ijepa.evals.lowshot import msn_logreg

    train = Features(torch.randn(4, 6), torch.arange(4), 6)
    with pytest.raises(ValueError, match="2 .* candidates but a class with fewer than 2"):
        msn_logreg(train, train, feature_sets=("lastPOOL",), lambds=(0.1, 0.01), seed=0)


def test_a_warm_up_with_the_step_schedule_is_refused_not_ignored():
    from ijepa.evals.core.config import GridConfig

    with pytest.raises(ValueError, match="grid.warmup_epochs is 2; expected 0 with grid.schedule 'step'"):
        GridConfig(schedule="step", warmup_epochs=2).specs()
