"""`ijepa eval knn`: the weighted k-NN's options (`KnnSpec`), what it prints, its registry entry.

Torch-free, so the command's help and a wrong option or recipe key answer before torch is
imported; `run` names the code that runs it (`ijepa.evals.knn`), imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass

from ijepa.evals.core.config import FEATURE_SETS, FIXTURE_ENCODER, SMALL_RANDOM_INIT, FrozenSpec
from ijepa.evals.registry import Eval, Fixture, Record, pct, register
from ijepa.typedconfig import COUNT, FRACTION, POSITIVE, checked

KS = (10, 20, 100, 200)


@dataclass(frozen=True)
class KnnSpec(FrozenSpec):
    """`ijepa eval knn` options and recipe keys."""

    ks: tuple[int, ...] = checked(KS, COUNT)
    temperature: float = checked(0.07, POSITIVE)
    feature_sets: tuple[str, ...] = FEATURE_SETS
    heldout: float = checked(0.1, FRACTION)


def rows(rec: Record) -> list[tuple[str, str]]:
    split = rec["reported_on"]
    out = [(f"top-1 ({split})", pct(rec["top1"])), (f"top-5 ({split})", pct(rec["top5"])),
           ("held-out train top-1", pct(rec["heldout_top1"])), ("chosen", f"{rec['best_features']}, k={rec['best_k']}")]
    out += [(f"{r['features']} k={r['k']} ({split})", pct(r[f"{split}_top1"])) for r in rec["scores"]]
    return out + [(f"train / {split} images", f"{rec['n_train']} / {rec[f'n_{split}']}")]


register(Eval(
    name="knn", spec=KnnSpec, run="ijepa.evals.knn:run", rows=rows, headline="top1", unit="fraction", cached=True,
    summary="Weighted k-NN (DINO) on L2-normalised frozen features; (features, k) picked on held-out train.",
    example="ijepa eval knn --encoder runs/fmnist_vit_tiny --ks 10,20",
    fixture=Fixture("imagefolder.write_imagefolder", (*FIXTURE_ENCODER, "--ks", "1,3")),
    help={"ks": "Neighbour counts, comma-separated", "temperature": "Softmax temperature of the votes",
          "heldout": "Fraction of train that picks (features, k)"},
    random_init=SMALL_RANDOM_INIT,
    title="k-NN", order=3,
))
