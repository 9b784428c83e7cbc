"""`ijepa eval counting`: the counting run's options (`CountRun`), what it prints, its registry entry.

Torch-free, so the command's help and a wrong option or recipe key answer before torch is
imported; `run` names the code that runs it (`ijepa.evals.counting`), imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass

from ijepa.evals.core.config import DENSE_FIXTURE_ENCODER, DenseRun
from ijepa.evals.registry import Eval, Fixture, Record, register
from ijepa.typedconfig import COUNT, NON_NEGATIVE, POSITIVE, checked


@dataclass(frozen=True)
class CountRun(DenseRun):
    img_size: int = checked(384, COUNT)  # short side (FSC-147 images are 384 high); train crops are square
    head: str = "exemplar"  # or "plain": no exemplar conditioning
    taps: tuple[int, ...] | None = (-1,)
    exemplar_size: int = checked(64, COUNT)  # exemplars are resized to this square before encoding
    channels: int = checked(128, COUNT)
    up_steps: int = checked(2, NON_NEGATIVE)  # density grid = patch grid x 2**up_steps
    density_scale: float = checked(100.0, POSITIVE)  # the head regresses per-pixel density x this (CounTR: 60)
    scale_range: tuple[float, float] = checked((1.0, 1.0), POSITIVE)


def rows(rec: Record) -> list[tuple[str, str]]:
    return [("test MAE / RMSE", f"{rec['mae']:.2f} / {rec['rmse']:.2f}"), ("val MAE / RMSE", f"{rec['val_mae']:.2f} / {rec['val_rmse']:.2f}"),
            ("mean-count baseline (test MAE / RMSE)", f"{rec['baseline_test_mae']:.2f} / {rec['baseline_test_rmse']:.2f}"),
            ("head / backbone", f"{rec['head']} / {rec['mode']}"), ("train / val / test images", f"{rec['n_train']} / {rec['n_val']} / {rec['n_test']}")]


register(Eval(
    name="counting", spec=CountRun, run="ijepa.evals.counting:run", rows=rows, headline="mae", unit="value", higher_is_better=False,
    summary="Train a density head on frozen features; count MAE / RMSE on val and test.",
    example="ijepa eval counting --encoder RUN --data /data/FSC147 -c counting_fsc147",
    fixture=Fixture("fsc147.make_fsc147", (*DENSE_FIXTURE_ENCODER, "-c", "counting_fixture", "--max-iters", "2", "--set", "eval_every=0")),
    help={"data": "FSC-147 root (images_384_VarV2/, gt_density_map_adaptive_384_VarV2/, the two JSON files) or a COCO-style one",
          "head": "exemplar (conditioned on the 3 boxes) or plain", "mode": "frozen or finetune (layer-wise lr decay)",
          "img_size": "Short side (and the random-init size); train crops are square"},
))
