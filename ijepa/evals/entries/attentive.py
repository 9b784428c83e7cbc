"""`ijepa eval attentive`: the attentive probe's options (`AttentiveSpec`), what it prints, its registry entry.

Torch-free, so the command's help and a wrong option or recipe key answer before torch is
imported; `run` names the code that runs it (`ijepa.evals.attentive`), imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass

from ijepa.evals.core.config import FIXTURE_ENCODER, SMALL_RANDOM_INIT, FrozenSpec
from ijepa.evals.registry import Eval, Fixture, Record, pct, register
from ijepa.typedconfig import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, checked


@dataclass(frozen=True)
class AttentiveSpec(FrozenSpec):
    """`ijepa eval attentive` options and recipe keys (`evals/attentive_fmnist.yaml`)."""

    lrs: tuple[float, ...] = checked((1e-3, 3e-3), POSITIVE)
    wds: tuple[float, ...] = checked((0.01, 0.1), NON_NEGATIVE)
    epochs: int = checked(20, COUNT)
    warmup_epochs: int = checked(1, NON_NEGATIVE)
    batch_size: int = checked(256, COUNT)
    heldout: float = checked(0.1, FRACTION)  # fraction of train that picks (lr, wd)
    probe_heads: int = checked(0, NON_NEGATIVE)  # the probe's attention heads; 0 = width / 64 (at least 1)


def rows(rec: Record) -> list[tuple[str, str]]:
    split = rec["reported_on"]
    return [(f"top-1 ({split})", pct(rec["top1"])), (f"top-5 ({split})", pct(rec["top5"])),
            ("held-out train top-1", pct(rec["heldout_top1"])), ("chosen probe", rec["best_head"]),
            (f"train / {split} images", f"{rec['n_train']} / {rec[f'n_{split}']}"), ("wall time", f"{rec['wall_s']:.1f} s")]


register(Eval(
    name="attentive", spec=AttentiveSpec, run="ijepa.evals.attentive:run", rows=rows, headline="top1", unit="fraction", cached=True,
    summary="Attentive probe (V-JEPA): a query token cross-attends to cached patch tokens; (lr, wd) picked on held-out train.",
    example="ijepa eval attentive -c attentive_fmnist --encoder runs/fmnist_vit_tiny",
    fixture=Fixture("imagefolder.write_imagefolder", (*FIXTURE_ENCODER, "--epochs", "2", "--batch-size", "8", "--lrs", "1e-3,1e-2", "--wds", "0.01")),
    help={"lrs": "Probe learning rates (AdamW), comma-separated", "wds": "Probe weight decays, comma-separated",
          "epochs": "Probe-training epochs", "batch_size": "Probe-training batch size", "heldout": "Fraction of train that picks (lr, wd)"},
    random_init=SMALL_RANDOM_INIT,
))
