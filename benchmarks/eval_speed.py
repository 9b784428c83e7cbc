"""Speed of `ijepa eval linear` on Fashion-MNIST: feature extraction img/s and head-grid time.

Measures, at the default recipe's encoder (vit_tiny width, depth 6, 32x32, patch 4):
- frozen feature extraction through the batched Fashion-MNIST path (what the eval uses) and
  through the per-image torchvision v2 pipeline + DataLoader (what it replaced);
- the whole head grid of `evals/linear_fmnist.yaml` on features of the real shape (54k x
  4 * 192; the fit's cost does not depend on the values, so random features are used);
and projects the full eval's time without and with cached features. Appends one record
under results/records/bench.eval_speed/.

    OMP_NUM_THREADS=2 python benchmarks/eval_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, Subset

from ijepa.data import build_dataset, data_spec, eval_transform
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.features import Features, extract_features, pooled
from ijepa.evals.core.fit import train_grid
from ijepa.evals.linear import grid_config
from ijepa.results.io import write_record

RECIPE = Path(__file__).resolve().parents[1] / "evals" / "linear_fmnist.yaml"


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds): on a shared machine the CPU time is the stable one."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


@torch.inference_mode()
def per_image(enc, n: int, batch_size: int) -> None:
    spec = data_spec("fashion-mnist")
    ds = build_dataset(spec, "train", eval_transform(enc.img_size, in_chans=enc.in_chans, mean=spec.mean, std=spec.std))
    for x, _ in DataLoader(Subset(ds, range(n)), batch_size=batch_size):
        pooled(enc, x)


def batched(enc, key: str, n: int, batch_size: int) -> None:
    extract_features(enc, key, data_spec("fashion-mnist"), "train", indices=torch.arange(n), device=torch.device("cpu"),
                     batch_size=batch_size, cache_dir=None)


def grid_fit(n: int, dim: int, layers: int, cfg) -> None:
    g = torch.Generator().manual_seed(0)
    feats = Features(torch.randn(n, layers * dim, generator=g), torch.randint(0, 10, (n,), generator=g), dim)
    train_grid(cfg, feats, num_classes=10, device=torch.device("cpu"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--n-batched", type=int, default=4000, help="Images timed through the batched path")
    ap.add_argument("--n-per-image", type=int, default=1000, help="Images timed through the v2 per-image path")
    ap.add_argument("--n-fit", type=int, default=54000, help="Training rows of the head grid (90% of 60k)")
    ap.add_argument("--epochs", type=int, default=None, help="Override the recipe's head epochs")
    ap.add_argument("--results", type=Path, default=Path("results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    enc, name, key = build_encoder(EncoderSpec(random_init="vit_tiny", depth=args.depth, img_size=32, patch_size=4, in_chans=1))
    bs = 256
    batched(enc, key, bs, bs)  # warm-up
    fast = timed(lambda: batched(enc, key, args.n_batched, bs))
    slow = timed(lambda: per_image(enc, args.n_per_image, bs))
    grid_kw = (yaml.safe_load(RECIPE.read_text()) or {}).get("grid", {})
    if args.epochs:
        grid_kw["epochs"] = args.epochs
    cfg = grid_config(**grid_kw)
    fit = timed(lambda: grid_fit(args.n_fit, enc.embed_dim, min(4, enc.depth), cfg))
    rec = {
        "kind": "bench.eval_speed", "encoder": name, "dataset": "fashion-mnist", "threads": args.threads,
        "img_per_s": args.n_batched / fast[0], "img_per_cpu_s": args.n_batched / fast[1],
        "per_image_pipeline_img_per_s": args.n_per_image / slow[0], "per_image_pipeline_img_per_cpu_s": args.n_per_image / slow[1],
        "grid_heads": len(cfg.specs()), "grid_epochs": cfg.epochs, "grid_rows": args.n_fit,
        "grid_fit_s": fit[0], "grid_fit_cpu_s": fit[1],
        # full eval = 70k images through the encoder + the grid; CPU seconds / threads = wall on idle cores
        "projected_linear_eval_cold_s": 70000 / args.n_batched * fast[1] / args.threads + fit[1] / args.threads,
        "projected_linear_eval_cached_s": fit[1] / args.threads,
        "load_avg_1min": os.getloadavg()[0], "device_name": "cpu", "torch": torch.__version__,
    }
    path = write_record(rec, results_dir=args.results)
    print(json.dumps({**rec, "record": str(path)}))


if __name__ == "__main__":
    main()
