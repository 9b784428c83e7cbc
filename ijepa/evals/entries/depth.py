"""`ijepa eval depth`: the depth run's options (`DepthRun`), what it prints, its registry entry.

Torch-free, so the command's help and a wrong option or recipe key answer before torch is
imported; `run` names the code that runs it (`ijepa.evals.depth`), imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass

from ijepa.evals.core.config import DENSE_FIXTURE_ENCODER, DenseRun
from ijepa.evals.registry import Eval, Fixture, Record, pct, register
from ijepa.typedconfig import COUNT, POSITIVE, OptionError, checked


@dataclass(frozen=True)
class DepthRun(DenseRun):
    head: str = "lin1"
    min_depth: float = checked(1e-3, POSITIVE)
    max_depth: float = checked(10.0, POSITIVE)
    bins: int = checked(256, COUNT)
    eigen_crop: bool = True
    depth_scale: float = checked(1000.0, POSITIVE)  # PNG units per metre
    channels: int = checked(256, COUNT)  # DPT fusion width

    def validate(self) -> None:
        """Across fields, once the recipe, options and `--set` are all in."""
        if self.max_depth <= self.min_depth:
            raise OptionError("max_depth", self.max_depth, f"a depth above min_depth {self.min_depth:g}")


def rows(rec: Record) -> list[tuple[str, str]]:
    out = [(f"{k} (test)", f"{rec[k]:.4f}") for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10")]
    out += [(f"delta<1.25^{i} (test)", pct(rec[f"d{i}"])) for i in (1, 2, 3)]
    return out + [("head / backbone", f"{rec['head']} / {rec['mode']}"), ("train / test images", f"{rec['n_train']} / {rec['n_test']}")]


register(Eval(
    name="depth", spec=DepthRun, run="ijepa.evals.depth:run", rows=rows, headline="abs_rel", unit="value", higher_is_better=False,
    summary="Train a depth head; AbsRel, RMSE, delta<1.25^k ... on the Eigen crop of the test split.",
    example="ijepa eval depth --encoder RUN --data /data/nyu -c depth_nyu",
    fixture=Fixture("nyu.make_nyu_list", (*DENSE_FIXTURE_ENCODER, "-c", "depth_fixture", "--max-iters", "2")),
    help={"data": "NYU root with nyu_{train,test}.txt file lists, or nyu_depth_v2_labeled.mat (splits.mat beside it)",
          "head": "lin1, lin4 (DINOv2 linear, 256 bins) or dpt", "max_depth": "Depth cap in metres (NYU: 10)",
          "mode": "frozen or finetune (layer-wise lr decay)", "img_size": "Train crop / eval short side (and the random-init size)"},
))
