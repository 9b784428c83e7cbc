"""bf16 vs fp32 frozen features: does extracting in bf16 move a linear probe's accuracy? (issue 40)

`ijepa eval` extracts features in fp32 by default; on a GPU bf16 autocast extracts ViT-H/14
features 7x faster (results/gpu_check.md). This scores one checkpoint both ways, each through
the linear eval itself (`run_linear`) with the eval's own `dtype` (`--dtype float32|bfloat16`:
the encoder's forward under bf16 autocast, cached under its own key, so one cache folder
serves both; the heads train in fp32 either way). Protocols:
`evals/linear_fmnist_logreg.yaml` (logistic regression) and `evals/linear_fmnist.yaml` (the
VISSL head grid). One `bench.feature_dtype` record per protocol: top-1 on test each way and
bf16 minus fp32 in points. Target (reported, never asserted): within 0.1 point.

    python benchmarks/feature_dtype.py --encoder runs/fmnist_vit_tiny --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from ijepa import typedconfig
from ijepa.bench.throughput import device_name
from ijepa.evals.core.setup import EncoderLike, frozen_splits, resolve_encoder
from ijepa.evals.entries.linear import LinearSpec
from ijepa.evals.linear import run_linear
from ijepa.models.vit import VisionTransformer
from ijepa.results.io import write_record

EVALS = Path(__file__).resolve().parents[1] / "evals"
RECIPES = {"logreg": EVALS / "linear_fmnist_logreg.yaml", "grid": EVALS / "linear_fmnist.yaml"}
DTYPES = ("float32", "bfloat16")
TARGET_POINTS = 0.1
# --tiny (CPU dry runs): a few thousand rows and a short grid; the numbers mean nothing.
TINY = {"train_limit": 2000, "val_limit": 1000}
TINY_GRID = {"epochs": 2, "min_steps": 0, "lrs": (0.1,), "wds": (0.0,), "extend_lrs": 0}


def recipe(protocol: str, *, tiny: bool, data: str | None = None) -> LinearSpec:
    """The protocol's recipe file as run_linear's spec (shortened by --tiny; `data` replaces
    its data, e.g. fashion-mnist:FOLDER)."""
    spec = typedconfig.load(LinearSpec, RECIPES[protocol])
    spec = replace(spec, data=data or spec.data)
    return replace(spec, grid=replace(spec.grid, **TINY_GRID), **TINY) if tiny else spec


def extract(encoder: VisionTransformer, cache: Path, device: torch.device, spec: LinearSpec) -> tuple[torch.Tensor, float]:
    """Fill `cache` with the train and test features in `spec.dtype`: (train features, seconds)."""
    t0 = time.perf_counter()
    train, _, _ = frozen_splits(encoder, spec.data, device=device, train_limit=spec.train_limit, val_limit=spec.val_limit,
                                seed=spec.seed, batch_size=spec.feature_batch_size, cache_dir=cache, forward_dtype=spec.dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return train.concat, time.perf_counter() - t0


def score(encoder: VisionTransformer, protocol: str, cache: Path, device: torch.device, *, tiny: bool,
          data: str | None, name: str, extract_s: dict[str, float], feature_rel_diff: float) -> dict:
    """The `bench.feature_dtype` record of one protocol: run_linear on each dtype's features."""
    spec = recipe(protocol, tiny=tiny, data=data)
    runs = {d: run_linear(encoder, replace(spec, dtype=d), device=device, cache_dir=cache) for d in DTYPES}
    fp32, bf16 = (runs[d]["top1"] for d in DTYPES)
    delta = 100 * (bf16 - fp32)
    split = runs["float32"]["reported_on"]
    return {
        "kind": "bench.feature_dtype", "encoder": name, "dataset": runs["float32"]["dataset"],
        "headline": "delta_points", "unit": "value", "selected_on": "train-heldout", "reported_on": split,
        "protocol": runs["float32"]["protocol"], "recipe": RECIPES[protocol].name, "tiny": tiny,
        "top1_float32": fp32, "top1_bfloat16": bf16, "delta_points": delta, "target_points": TARGET_POINTS,
        "within_target": abs(delta) <= TARGET_POINTS, "feature_rel_diff": feature_rel_diff,
        "best_head": {d: runs[d]["best_head"] for d in DTYPES}, "heldout_top1": {d: runs[d]["heldout_top1"] for d in DTYPES},
        "fit_s": {d: runs[d]["fit_s"] for d in DTYPES}, "extract_s": extract_s,
        "n_train": runs["float32"]["n_train"], f"n_{split}": runs["float32"][f"n_{split}"],
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
    }


def compare(encoder: EncoderLike, device: torch.device, *, protocols: list[str], tiny: bool, data: str | None, results: Path) -> list[Path]:
    """Extract both ways, score each protocol on both, write one record per protocol (so a run
    stopped during the grid keeps logistic regression's)."""
    enc, name, _ = resolve_encoder(encoder)
    enc, paths = enc.to(device), []
    with tempfile.TemporaryDirectory(prefix="feature_dtype.") as tmp:
        cache, spec = Path(tmp), recipe("grid", tiny=tiny, data=data)
        feats, secs = zip(*(extract(enc, cache, device, replace(spec, dtype=d)) for d in DTYPES), strict=True)
        rel = float((feats[1] - feats[0]).norm() / feats[0].norm())
        print(f"features extracted: fp32 {secs[0]:.1f} s, bf16 {secs[1]:.1f} s; relative difference {rel:.2e}", flush=True)
        for protocol in protocols:
            rec = score(enc, protocol, cache, device, tiny=tiny, data=data, name=name, extract_s=dict(zip(DTYPES, secs, strict=True)),
                        feature_rel_diff=rel)
            paths.append(write_record(rec, results_dir=results))
            print(f"{rec['protocol']}: top-1 fp32 {100 * rec['top1_float32']:.2f}, bf16 {100 * rec['top1_bfloat16']:.2f}, "
                  f"delta {rec['delta_points']:+.2f} points (target within {TARGET_POINTS}: {rec['within_target']})\n  record: {paths[-1]}",
                  flush=True)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", required=True, help="run folder or checkpoint (any `ijepa eval --encoder`)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", default=None, help="instead of the recipes' fashion-mnist, e.g. fashion-mnist:FOLDER")
    ap.add_argument("--protocols", nargs="+", choices=sorted(RECIPES), default=list(RECIPES), help="in this order (logreg is the quick one)")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: 2000 train / 1000 test rows, a 2-epoch single-lr grid")
    ap.add_argument("--results", type=Path, default=Path("results"))
    a = ap.parse_args()
    compare(a.encoder, torch.device(a.device), protocols=a.protocols, tiny=a.tiny, data=a.data, results=a.results)


if __name__ == "__main__":
    main()
