"""Pretraining step cost of the default recipe and of ViT-S/16 at 224 (issue 2), fp32.

Times the Trainer's own step (`ijepa.bench.harness`: model, AdamW, EMA, masks from the real
collator drawn before timing) on synthetic images, a few steps per recipe, and prints img/s,
the step-time median and spread, and peak memory (CUDA: max allocated; CPU: the process's
max RSS so far, so run order matters: the default recipe first). One record per recipe under
results/records/bench.pretrain_step/.

    OMP_NUM_THREADS=2 python benchmarks/pretrain_step.py --steps 5
"""

from __future__ import annotations

import argparse
import os

import torch

from ijepa.bench.harness import build_harness
from ijepa.bench.throughput import device_name, spread, time_steps
from ijepa.results.io import write_record
from ijepa.results.schema import NO_SPLIT
from ijepa.training.config import Config, load_config
from ijepa.training.loop import peak_memory_mb

FP32 = ["meta.use_bfloat16=false", "meta.cpu_bfloat16=false", "meta.compile=false"]
VIT_S16_224 = [
    "meta.model_name=vit_small", "meta.depth=0", "meta.in_chans=3", "data.crop_size=224", "mask.patch_size=16",
    "mask.min_keep=10", "meta.pred_depth=6", "meta.pred_emb_dim=384",
]


def recipes(vits_batch: int) -> dict[str, Config]:
    return {
        "default": load_config(None, FP32),
        "vit_small_16_224": load_config(None, [*FP32, *VIT_S16_224, f"data.batch_size={vits_batch}"]),
    }


def bench(name: str, cfg: Config, *, device: torch.device, steps: int, warmup: int) -> dict:
    h = build_harness(cfg, "ijepa", device=device, n_masks=steps + warmup)
    times = time_steps(h, steps=steps, warmup=warmup)
    stats = spread(times)
    return {
        "kind": "bench.pretrain_step", "encoder": name, "dataset": "synthetic", **NO_SPLIT, "arch": cfg.meta.model_name,
        "depth": h.model.encoder.depth, "img_size": cfg.data.crop_size, "patch_size": cfg.mask.patch_size,
        "in_chans": cfg.meta.in_chans, "pred_depth": cfg.meta.pred_depth, "pred_emb_dim": cfg.meta.pred_emb_dim,
        "batch_size": h.batch_size, "dtype": "float32", "device": str(device), "device_name": device_name(device),
        "threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0],  # CPU contention from other processes
        "torch": torch.__version__, "steps": steps, "warmup": warmup,
        "img_per_s": h.batch_size / stats["step_time_median_s"], **stats, "step_times_s": times,
        "peak_mem_mb": peak_memory_mb(device),
        "peak_mem_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per recipe")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--vits-batch", type=int, default=16, help="ViT-S/16 batch size (the default recipe keeps its own)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--only", choices=["default", "vit_small_16_224"], help="run one recipe")
    ap.add_argument("--no-record", action="store_true", help="print only; write nothing under results/")
    args = ap.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    for name, cfg in recipes(args.vits_batch).items():
        if args.only and name != args.only:
            continue
        rec = bench(name, cfg, device=device, steps=args.steps, warmup=args.warmup)
        print(
            f"{name:>17}: batch {rec['batch_size']:>3} {rec['img_size']}px on {rec['device_name']}: "
            f"{rec['img_per_s']:8.1f} img/s | step median {rec['step_time_median_s'] * 1e3:8.1f} ms "
            f"(min {rec['step_time_min_s'] * 1e3:.1f}, IQR {rec['step_time_p25_s'] * 1e3:.1f}-{rec['step_time_p75_s'] * 1e3:.1f}, "
            f"max {rec['step_time_max_s'] * 1e3:.1f}) | peak mem {rec['peak_mem_mb']:.0f} MB ({rec['peak_mem_kind']}) | load {rec['load_avg_1m']:.1f}",
            flush=True,
        )
        if not args.no_record:
            print(f"{'':>17}  record: {write_record(rec)}")


if __name__ == "__main__":
    main()
