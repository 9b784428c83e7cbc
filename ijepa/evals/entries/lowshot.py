"""`ijepa eval lowshot`: the low-shot eval's options (`LowshotSpec`), what it prints and tables, its registry entry.

Torch-free, so the command's help and a wrong option or recipe key answer before torch is
imported; `run` names the code that runs it (`ijepa.evals.lowshot`), imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ijepa.evals.core.config import (
    FEATURE_SETS,
    FIXTURE_ENCODER,
    ROWS,
    SMALL_RANDOM_INIT,
    FinetuneConfig,
    FrozenData,
    GridConfig,
)
from ijepa.evals.registry import Cell, Eval, Fixture, Record, number, pct, register
from ijepa.typedconfig import POSITIVE, Range, checked

FRACTIONS = (0.01, 0.05, 0.1)
# The I-JEPA paper's Table 2: ImageNet-1k linear probe on 1% of the labels
PAPER = tuple(("Table 2", m, a, None, "imagenet-1k (1% labels)", "top1", v) for m, a, v in [
    ("I-JEPA", "ViT-L/16", 69.4), ("I-JEPA", "ViT-H/14", 73.3), ("I-JEPA", "ViT-H/16-448", 77.3),
    ("MAE", "ViT-L/16", 67.1), ("MAE", "ViT-H/14", 71.5), ("data2vec", "ViT-L/16", 73.3),
    ("iBOT", "ViT-B/16", 69.7), ("DINO", "ViT-B/8", 70.0), ("MSN", "ViT-B/4", 75.7)])


@dataclass(frozen=True)
class LowshotSpec(FrozenData):
    """`ijepa eval lowshot` options and recipe keys (`evals/lowshot_fmnist.yaml`)."""

    train_limit: int | float | None = checked(None, ROWS)  # the stratified subset of train the splits are drawn from
    fractions: tuple[float, ...] = checked(FRACTIONS, Range(gt=0, le=1))
    seeds: tuple[int, ...] = (0, 1, 2)
    protocol: Literal["logreg", "heads", "finetune"] = "logreg"
    logreg: Literal["ours", "msn"] = "ours"  # protocol logreg: our probe, or MSN's (logistic_eval.py)
    msn_lambd: tuple[float, ...] = checked((0.00025,), POSITIVE)  # logreg msn: MSN's lambd (its default); several: picked by CV on the subset
    feature_sets: tuple[str, ...] = FEATURE_SETS
    subset_dir: Path | None = None
    write_splits: Path | None = None
    grid: GridConfig = field(default_factory=GridConfig)  # protocol heads
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # protocol finetune


def _pool(rec: Record) -> str:
    return "train" if rec.get("train_limit") is None else f"the {rec['n_train_pool']}-image train subset"


def rows(rec: Record) -> list[tuple[str, str]]:
    out = [(f"{float(f):.0%} labels ({r['seeds'][0]['n_labelled']} img, {r.get('labelled_fraction', float(f)):.1%} of {_pool(rec)})",
            f"{pct(r['top1'])} ± {100 * r['top1_std']:.2f}") for f, r in rec["fractions"].items()]
    probe = [("probe", "MSN's logreg, lambd " + ", ".join(f"{v:g}" for v in rec["msn_lambd"]))] if rec.get("logreg") == "msn" else []
    return out + probe + [("reported on", rec["reported_on"]), ("protocol", rec["protocol"]), ("seeds", ",".join(map(str, rec["seeds"]))),
                  ("wall time", f"{rec['wall_s']:.1f} s")]


def check(rec: Record) -> None:
    """Every label fraction of a record: its mean, spread and seeds (what its table cells read)."""
    fractions = rec.get("fractions")
    if not isinstance(fractions, dict) or not fractions:
        raise ValueError("fractions: expected a mapping of label fraction -> scores")
    for f, r in fractions.items():
        if not isinstance(r, dict) or not number(r.get("top1")) or not number(r.get("top1_std")) or not isinstance(r.get("seeds"), list) or not r["seeds"]:
            raise ValueError(f"fractions[{f}]: expected top1, top1_std (numbers) and a non-empty seeds list")
        if not 0 < float(f) <= 1:
            raise ValueError(f"fractions[{f}]: expected a label fraction in (0, 1]")


def cells(rec: Record) -> list[Cell]:
    """A cell per label fraction, smallest first: mean ± std over seeds (the headline is only the smallest's)."""
    ordered = sorted(rec["fractions"].items(), key=lambda fr: float(fr[0]))
    return [Cell(f"top1@{float(f):.0%}", 100 * r["top1"], f"{r['seeds'][0]['n_labelled']} labelled", std=100 * r["top1_std"],
                 n_seeds=len(r["seeds"])) for f, r in ordered]


register(Eval(
    name="lowshot", spec=LowshotSpec, run="ijepa.evals.lowshot:run", rows=rows, headline="top1", unit="fraction", cached=True,
    summary="Low-shot: 1/5/10% of the labels, class-balanced seeded splits, mean ± std over seeds.",
    example="ijepa eval lowshot -c lowshot_fmnist --encoder runs/fmnist_vit_tiny",
    fixture=Fixture("imagefolder.write_imagefolder", (*FIXTURE_ENCODER, "--fractions", "0.25", "--seeds", "0,1")),
    help={"fractions": "Label fractions, comma-separated", "seeds": "Split seeds; mean ± std over them",
          "protocol": "logreg (logistic regression, C by CV), heads (the linear grid) or finetune",
          "logreg": "Protocol logreg: ours (standardised, intercept, C by CV) or msn (MSN's: row-centred, L2-normalised, no intercept, lambd fixed)",
          "msn_lambd": "MSN's lambd (divided by N, as logistic_eval.py); several: picked by CV on the labelled subset",
          "subset_dir": "Folder of subset files (1percent.txt, 10percent-seed0.txt, ...) to use instead of drawing",
          "write_splits": "Write the splits used to this folder",
          "train_limit": "Seeded stratified subset of train the 1/5/10% splits are drawn from: N images, or a fraction if < 1"},
    random_init=SMALL_RANDOM_INIT,
    check=check, cells=cells, title="Low-shot", order=2, paper=PAPER,
))
