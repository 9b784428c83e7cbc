"""`ijepa eval linear`: the linear probe's options (`LinearSpec`), what it prints, its registry entry.

Torch-free, so the command's help and a wrong option or recipe key answer before torch is
imported; `run` names the code that runs it (`ijepa.evals.linear`), imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ijepa.evals.core.config import FIXTURE_ENCODER, SMALL_RANDOM_INIT, FrozenSpec, GridConfig
from ijepa.evals.registry import Eval, Fixture, Record, pct, register
from ijepa.typedconfig import POSITIVE, checked

# The I-JEPA paper's numbers: ImageNet-1k linear probe (Table 1) and transfer (Table 3)
PAPER = (
    *[("Table 1", m, a, e, "imagenet-1k", "top1", v) for m, a, e, v in [
        ("I-JEPA", "ViT-B/16", 600, 72.9), ("I-JEPA", "ViT-L/16", 600, 77.5), ("I-JEPA", "ViT-H/14", 300, 79.3),
        ("I-JEPA", "ViT-H/16-448", 300, 81.1), ("MAE", "ViT-B/16", None, 68.0), ("MAE", "ViT-L/16", None, 76.0),
        ("MAE", "ViT-H/14", None, 77.2), ("CAE", "ViT-B/16", None, 70.4), ("CAE", "ViT-L/16", None, 78.1),
        ("data2vec", "ViT-L/16", None, 77.3), ("DINO", "ViT-B/8", None, 80.1), ("iBOT", "ViT-L/16", None, 81.0)]],
    *[("Table 3", m, a, None, d, "top1", v) for m, a, vals in [
        ("I-JEPA", "ViT-H/14", (87.5, 58.4, 47.6)), ("MAE", "ViT-H/14", (77.3, 55.0, 32.9)),
        ("DINO", "ViT-B/8", (84.9, 57.9, 55.9)), ("iBOT", "ViT-L/16", (88.3, 60.4, 57.3))]
      for d, v in zip(("cifar100", "places205", "inat18"), vals, strict=True)],
)


@dataclass(frozen=True)
class LinearSpec(FrozenSpec):
    """`ijepa eval linear` options and recipe keys (`evals/linear_*.yaml`)."""

    protocol: Literal["grid", "logreg"] = "grid"
    cs: tuple[float, ...] = checked((1.0,), POSITIVE)
    eval_split: str | None = None  # None: the dataset's report split (test for Fashion-MNIST)
    augment: bool = False  # MAE's probe: heads train on the frozen encoder's features of fresh crops every epoch (no train cache)
    grid: GridConfig = field(default_factory=GridConfig)


def rows(rec: Record) -> list[tuple[str, str]]:
    """What the command prints, each number naming its split; with a refit, which head each is
    (the chosen one retrained on all of train, or the search's, fit on train less held-out)."""
    split, refit = rec["reported_on"], rec.get("refit_rows")
    chosen = f", chosen head refit on all {refit} train" if refit else ""
    out = [("protocol", rec["protocol"]), (f"top-1 ({split}{chosen})", pct(rec["top1"])), (f"top-5 ({split}{chosen})", pct(rec["top5"]))]
    if rec["heldout_top1"] is not None:  # None: one head, nothing chosen
        out.append(("held-out train top-1 (picked the head)", pct(rec["heldout_top1"])))
    out.append(("chosen head", rec["best_head"]))
    before = ", before refit" if refit else ""
    out += [(f"best {f} head: top-1 ({split}{before})", pct(b["top1"])) for f, b in rec.get("best_by_features", {}).items()]
    return out + [(f"train / {split} images", f"{rec['n_train']} / {rec[f'n_{split}']}"), ("wall time", f"{rec['wall_s']:.1f} s")]


register(Eval(
    name="linear", spec=LinearSpec, run="ijepa.evals.linear:run", rows=rows, headline="top1", unit="fraction", cached=True,
    summary="Linear probe on cached frozen features: a grid of linear heads (or logistic regression), picked on held-out train.",
    example="ijepa eval linear -c linear_fmnist --encoder runs/fmnist_vit_tiny",
    fixture=Fixture("imagefolder.write_imagefolder", (*FIXTURE_ENCODER, "--epochs", "2", "--batch-size", "16", "--lrs", "0.1")),
    flags={"epochs": "grid.epochs", "batch-size": "grid.batch_size", "lrs": "grid.lrs",
           "wds": "grid.wds", "feature-sets": "grid.feature_sets"},
    help={"protocol": "grid (SGD/LARS linear heads) or logreg (logistic regression, torch L-BFGS)",
          "augment": "grid: train the heads on the frozen encoder's features of RandomResizedCrop + flip views, new each epoch "
                     "(MAE's linear probe; the encoder runs every epoch) instead of cached centre crops",
          "cs": "logreg: candidate C values, comma-separated",
          "eval_split": "Split to score (default: the dataset's report split, test for Fashion-MNIST; val to choose recipes)", "grid.epochs": "Head-training epochs",
          "grid.batch_size": "Head-training batch size", "grid.lrs": "Head learning rates, comma-separated",
          "grid.wds": "Head weight decays, comma-separated"},
    random_init=SMALL_RANDOM_INIT,
    title="Linear probe", order=1, paper=PAPER,
))
