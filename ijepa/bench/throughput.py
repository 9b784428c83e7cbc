"""Training-step throughput: images/s, step-time spread, peak memory, FLOP/s and utilisation.

One code path for CPU and CUDA: a timer that uses CUDA events on a GPU (read after one
synchronize at the end, so timing adds no host syncs between steps) and `perf_counter` on
the CPU. Utilisation is measured against a square GEMM of the step's dtype timed in the same
process, not against a datasheet number.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch

from ijepa.bench.flops import count_flops, step_flops
from ijepa.bench.harness import StepHarness, build_harness
from ijepa.training.config import Config
from ijepa.training.loop import peak_memory_mb


class StepTimer:
    """Wall time of each `with timer:` block; CUDA events on a GPU, perf_counter elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.spans: list = []

    def __enter__(self) -> StepTimer:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.spans.append((self._start, end))
        else:
            self.spans.append(time.perf_counter() - self._start)

    def seconds(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [s.elapsed_time(e) / 1e3 for s, e in self.spans]
        return list(self.spans)


def gemm_peak(device: torch.device, dtype: torch.dtype, *, size: int | None = None, reps: int = 5) -> float:
    """Best FLOP/s of a square matmul of `dtype` on `device` (the achievable peak)."""
    n = size or (8192 if device.type == "cuda" else 1024)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    timer = StepTimer(device)
    for _ in range(reps + 2):
        with timer:
            torch.mm(a, b)
    return 2 * n**3 / min(timer.seconds()[2:])


def collator_rate(cfg: Config, method: str, *, batches: int = 10) -> float:
    """Batches/s of the mask collator alone (one process, images stacked as a loader does)."""
    from ijepa.training.data import build_collator

    coll = build_collator(cfg, method)
    s = cfg.data.crop_size
    items = [(torch.zeros(cfg.meta.in_chans, s, s), 0)] * cfg.data.batch_size
    coll(items)
    t0 = time.perf_counter()
    for _ in range(batches):
        coll(items)
    return batches / (time.perf_counter() - t0)


def time_steps(h: StepHarness, *, steps: int, warmup: int) -> list[float]:
    """Seconds per step for `steps` steps after `warmup` untimed ones."""
    for i in range(warmup):
        h.step(i)
    if h.device.type == "cuda":
        torch.cuda.synchronize(h.device)
        torch.cuda.reset_peak_memory_stats(h.device)
    timer = StepTimer(h.device)
    for i in range(warmup, warmup + steps):
        with timer:
            h.step(i)
    return timer.seconds()


def spread(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {
        "step_time_median_s": statistics.median(times), "step_time_p25_s": q[0], "step_time_p75_s": q[2],
        "step_time_min_s": min(times), "step_time_max_s": max(times),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def measure_throughput(cfg: Config, *, method: str, steps: int = 10, warmup: int = 3, device: torch.device) -> dict:
    """Record fields for `bench.throughput`; `img_per_s` is batch size / median step time."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: throughput needs cpu or cuda (meta only counts FLOPs)")
    h = build_harness(cfg, method, device=device, n_masks=warmup + steps)
    times = time_steps(h, steps=steps, warmup=warmup)
    stats = spread(times)
    fused = True  # real devices run the fused attention kernels
    flops = [step_flops(method, h.model, h.masks[i], fused_attention=fused)["total"] for i in range(warmup, warmup + steps)]
    counted = count_flops(lambda: h.step(warmup))  # checks the closed form on a real step
    mean_flops = sum(flops) / len(flops)
    achieved = mean_flops / stats["step_time_median_s"]
    dtype = torch.bfloat16 if h.bf16 else torch.float32
    peak = gemm_peak(device, dtype)
    coll = collator_rate(cfg, method)
    steps_per_s = 1 / stats["step_time_median_s"]
    return {
        "method": method, "arch": cfg.meta.model_name, "depth": h.model.encoder.depth, "img_size": cfg.data.crop_size,
        "patch_size": cfg.mask.patch_size, "batch_size": h.batch_size, "device": str(device),
        "device_name": device_name(device), "threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch."),
        "compile": cfg.meta.compile, "steps": steps, "warmup": warmup,
        "img_per_s": h.batch_size * steps_per_s, **stats, "step_times_s": times,
        "peak_mem_mb": peak_memory_mb(device), "peak_mem_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
        "flops_per_step": mean_flops, "flops_per_image": mean_flops / h.batch_size,
        "flops_counted_one_step": counted, "closed_form_rel_diff": flops[0] / counted - 1,
        "achieved_flops_per_s": achieved, "gemm_peak_flops_per_s": peak, "utilisation": achieved / peak,
        "collator_batches_per_s": coll, "steps_per_s": steps_per_s, "collator_keeps_up": coll >= steps_per_s,
    }
