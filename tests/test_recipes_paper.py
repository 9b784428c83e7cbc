"""The recipes that carry the I-JEPA paper's protocols hold the paper's values (issue 38)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ijepa.evals.entries.linear import LinearSpec
from ijepa.evals.entries.lowshot import LowshotSpec
from ijepa.evals.registry import RECIPES
from ijepa.typedconfig import load

ROOT = Path(__file__).resolve().parents[1]


def test_lowshot_in1k_finetune_is_the_papers_table_2_recipe():
    """1%, fine-tuning, 50 epochs, batch 512, lr 3e-5, wd 0.4 (ViT-H/14), layer decay 0.75, smoothing 0.1,
    RandAugment as MAE's --aa."""
    spec = load(LowshotSpec, RECIPES / "lowshot_in1k_finetune.yaml")
    ft = spec.finetune
    assert spec.protocol == "finetune" and spec.fractions == (0.01,) and spec.subset_dir is not None
    assert (ft.epochs, ft.batch_size, ft.lr, ft.weight_decay, ft.layer_decay, ft.label_smoothing) == (50, 512, 3e-5, 0.4, 0.75, 0.1)
    assert ft.rand_augment == "rand-m9-mstd0.5-inc1"


def test_lowshot_in1k_simclr_reads_the_subset_files_with_msns_frozen_probe():
    """MSN's logistic_eval.py: its probe, one fixed lambd (its README's), the last layer's representation."""
    spec = load(LowshotSpec, RECIPES / "lowshot_in1k_simclr.yaml")
    assert spec.protocol == "logreg" and spec.fractions == (0.01, 0.1) and spec.subset_dir is not None
    assert spec.logreg == "msn" and spec.msn_lambd == (0.0025,) and spec.feature_sets == ("lastPOOL",)


def test_linear_transfer_is_the_papers_table_3_head_set():
    """{last-layer pooled, last-4 concatenated} x {plain linear on raw features, BatchNorm + linear}."""
    grid = load(LinearSpec, RECIPES / "linear_transfer.yaml").grid
    assert grid.feature_sets == ("lastPOOL", "concatPOOL4") and grid.norms == ("linear", "bn")
    assert not grid.standardize and grid.whiten == 0


def test_linear_in1k_mae_is_maes_augmented_probe_for_the_papers_50_epochs():
    """MAE's main_linprobe: augmented views, BN(affine=False) + linear on the pooled last layer, LARS, blr 0.1 x
    batch / 256, wd 0, cosine after 10 warm-up epochs; I-JEPA's appendix: batch 16384, 50 epochs (MAE: 90)."""
    spec = load(LinearSpec, RECIPES / "linear_in1k_mae.yaml")
    grid = spec.grid
    assert spec.augment and spec.protocol == "grid"
    assert (grid.feature_sets, grid.norms, grid.lrs, grid.wds) == (("lastPOOL",), ("bn",), (0.1,), (0.0,))
    assert (grid.optimizer, grid.momentum, grid.schedule, grid.warmup_epochs) == ("lars", 0.9, "cosine", 10)
    assert (grid.epochs, grid.min_steps, grid.batch_size, grid.lr_base_batch) == (50, 0, 16384, 256)
    assert grid.lrs[0] * grid.lr_scale == pytest.approx(6.4)


@pytest.mark.parametrize("name", ["lowshot_in1k_finetune", "lowshot_in1k_simclr", "linear_transfer", "linear_in1k_mae"])
def test_the_new_recipes_are_linked_from_evals(name):
    link = ROOT / "evals" / f"{name}.yaml"
    assert link.is_symlink() and link.resolve() == (RECIPES / f"{name}.yaml").resolve()
