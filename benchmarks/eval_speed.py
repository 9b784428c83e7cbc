"""Speed of `ijepa eval linear` on Fashion-MNIST: feature extraction img/s and head-grid time.

Measures, at the default recipe's encoder (vit_tiny width, depth 6, 32x32, patch 4):
- frozen feature extraction through the batched Fashion-MNIST path (what the eval uses) and
  through the per-image torchvision v2 pipeline + DataLoader (what it replaced);
- the whole head grid of `evals/linear_fmnist.yaml` on features of the real shape (45k x
  4 * 192: the 90% of the 50k train split it fits on; the fit's cost does not depend on
  the values, so random features are used);
and projects the full eval's time without and with cached features. Appends one record
under results/records/bench.eval_speed/.

`--scale in1k` asks what `ijepa eval linear -c evals/linear_in1k.yaml` costs on ImageNet on
one device instead: frozen-feature extraction img/s of a random-init encoder (default
ViT-H/14 at 224) on synthetic batches, exactly `pooled()` + the copy back to the host that
`extract_features` runs per batch (fp32, as the eval runs; bf16 autocast measured beside it),
and the time of whole epochs of that recipe's head grid on synthetic features of the real
shape (1.27M fit rows x 4 x 1280), projected to the recipe's epochs. JPEG decoding is not
included: it is the loader's, and runs on the host's cores.

    OMP_NUM_THREADS=2 python benchmarks/eval_speed.py --threads 2
    python benchmarks/eval_speed.py --scale in1k --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from ijepa import typedconfig
from ijepa.data import build_dataset, data_spec, eval_transform
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.features import Features, extract_features, pooled
from ijepa.evals.core.fit import train_grid
from ijepa.evals.entries.linear import LinearSpec
from ijepa.results.io import write_record
from ijepa.results.schema import NO_SPLIT

RECIPE = Path(__file__).resolve().parents[1] / "evals" / "linear_fmnist.yaml"
RECIPE_IN1K = RECIPE.with_name("linear_in1k.yaml")
IN1K_TRAIN, IN1K_VAL = 1_281_167, 50_000


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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def extraction_rate(enc, x: torch.Tensor, batches: int, *, bf16: bool) -> float:
    """Images/s of `pooled(enc, x)` + the fp16 copy to the host, per batch as `extract_features`."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        pooled(enc, x).to("cpu", torch.float16)  # warm-up
        sync(x.device)
        t0 = time.perf_counter()
        for _ in range(batches):
            pooled(enc, x).to("cpu", torch.float16)
        sync(x.device)
    return batches * len(x) / (time.perf_counter() - t0)


def grid_epoch_s(n: int, dim: int, layers: int, cfg, device: torch.device, epochs: int) -> float:
    """Seconds per epoch of the head grid on n synthetic rows (features made on `device`)."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, layers * dim, generator=g, device=device)
    y = torch.randint(0, 1000, (n,), generator=g, device=device)
    timing = replace(cfg, epochs=epochs, min_steps=0)
    train_grid(replace(timing, epochs=1), Features(x[: 20 * cfg.batch_size], y[: 20 * cfg.batch_size], dim), num_classes=1000, device=device)
    sync(device)
    t0 = time.perf_counter()
    train_grid(timing, Features(x, y, dim), num_classes=1000, device=device)
    sync(device)
    return (time.perf_counter() - t0) / epochs


def in1k_record(args) -> dict:
    """`bench.eval_speed` at ImageNet scale: extraction img/s and head-grid time, projected."""
    device = torch.device(args.device)
    spec = EncoderSpec(random_init=args.arch, depth=args.depth, img_size=args.img_size, patch_size=args.patch_size, in_chans=3)
    enc, name, _ = build_encoder(spec)
    enc = enc.to(device)
    x = torch.randn(args.extract_batch, 3, args.img_size, args.img_size, device=device)
    fp32 = extraction_rate(enc, x, args.extract_batches, bf16=False)
    bf16 = extraction_rate(enc, x, args.extract_batches, bf16=True)
    cfg = typedconfig.load(LinearSpec, RECIPE_IN1K).grid
    layers, width = min(4, enc.depth), enc.embed_dim
    rows = round(args.n_train * (1 - cfg.heldout))
    del x
    n_images = args.n_train + IN1K_VAL * args.n_train // IN1K_TRAIN
    rec = {
        "kind": "bench.eval_speed", "encoder": name, "dataset": "synthetic-imagenet-shape", **NO_SPLIT, "recipe": RECIPE_IN1K.name,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": args.threads, "torch": torch.__version__, "extract_batch": args.extract_batch,
        "img_per_s": fp32, "img_per_s_bf16": bf16, "feature_dim": layers * width,
        "extract_images": n_images, "projected_extract_s": n_images / fp32, "projected_extract_s_bf16": n_images / bf16,
    }
    if not args.fit_epochs:  # extraction only
        return rec
    epoch_s = grid_epoch_s(rows, width, layers, cfg, device, args.fit_epochs)
    return {
        **rec, "grid_heads": len(cfg.specs()), "grid_rows": rows, "grid_batch": cfg.batch_size, "grid_epochs_timed": args.fit_epochs,
        "grid_epoch_s": epoch_s, "grid_epochs": cfg.epochs, "projected_grid_fit_s": epoch_s * cfg.epochs,
        # encoder + grid only: decoding ImageNet JPEGs (the loader's workers) is not in these
        "projected_linear_eval_cold_s": n_images / fp32 + epoch_s * cfg.epochs,
        "projected_linear_eval_cached_s": epoch_s * cfg.epochs,
    }


def fmnist_record(args) -> dict:
    enc, name, key = build_encoder(EncoderSpec(random_init="vit_tiny", depth=args.depth, img_size=32, patch_size=4, in_chans=1))
    bs = 256
    batched(enc, key, bs, bs)  # warm-up
    fast = timed(lambda: batched(enc, key, args.n_batched, bs))
    slow = timed(lambda: per_image(enc, args.n_per_image, bs))
    cfg = typedconfig.load(LinearSpec, RECIPE).grid
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs)
    fit = timed(lambda: grid_fit(args.n_fit, enc.embed_dim, min(4, enc.depth), cfg))
    return {
        "kind": "bench.eval_speed", "encoder": name, "dataset": "fashion-mnist", **NO_SPLIT, "threads": args.threads,
        "img_per_s": args.n_batched / fast[0], "img_per_cpu_s": args.n_batched / fast[1],
        "per_image_pipeline_img_per_s": args.n_per_image / slow[0], "per_image_pipeline_img_per_cpu_s": args.n_per_image / slow[1],
        "grid_heads": len(cfg.specs()), "grid_epochs": cfg.epochs, "grid_rows": args.n_fit,
        "grid_fit_s": fit[0], "grid_fit_cpu_s": fit[1],
        # full eval = 60k images (50k train + 10k test) through the encoder + the grid; CPU seconds / threads = wall on idle cores
        "projected_linear_eval_cold_s": 60000 / args.n_batched * fast[1] / args.threads + fit[1] / args.threads,
        "projected_linear_eval_cached_s": fit[1] / args.threads,
        "load_avg_1min": os.getloadavg()[0], "device_name": "cpu", "torch": torch.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=["fmnist", "in1k"], default="fmnist", help="which eval to cost (see above)")
    ap.add_argument("--depth", type=int, default=None, help="encoder depth (default: 6 for fmnist, the arch's for in1k)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--n-batched", type=int, default=4000, help="Images timed through the batched path")
    ap.add_argument("--n-per-image", type=int, default=1000, help="Images timed through the v2 per-image path")
    ap.add_argument("--n-fit", type=int, default=45000, help="Training rows of the head grid (90%% of the 50k train split)")
    ap.add_argument("--epochs", type=int, default=None, help="Override the recipe's head epochs")
    in1k = ap.add_argument_group("--scale in1k")
    in1k.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    in1k.add_argument("--arch", default="vit_huge")
    in1k.add_argument("--img-size", type=int, default=224)
    in1k.add_argument("--patch-size", type=int, default=14)
    in1k.add_argument("--extract-batch", type=int, default=256, help="evals/linear_in1k.yaml's feature_batch_size")
    in1k.add_argument("--extract-batches", type=int, default=4, help="timed batches per dtype")
    in1k.add_argument("--n-train", type=int, default=IN1K_TRAIN, help="train images (the grid fits on 1 - heldout of them)")
    in1k.add_argument("--fit-epochs", type=int, default=1, help="grid epochs timed (projected to the recipe's); 0: extraction only")
    ap.add_argument("--results", type=Path, default=Path("results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.depth is None:
        args.depth = 0 if args.scale == "in1k" else 6
    rec = in1k_record(args) if args.scale == "in1k" else fmnist_record(args)
    path = write_record(rec, results_dir=args.results)
    print(json.dumps({**rec, "record": str(path)}))


if __name__ == "__main__":
    main()
