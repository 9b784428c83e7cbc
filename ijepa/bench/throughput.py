"""Training-step throughput: images/s, step-time spread, peak memory, FLOP/s and utilisation.

One code path for CPU and CUDA: a timer that uses CUDA events on a GPU (read after one
synchronize at the end, so timing adds no host syncs between steps) and `perf_counter` on
the CPU. Utilisation is measured against a square GEMM of the step's dtype timed in the same
process, not against a datasheet number. Each record also names the attention kernels the
timed step ran (a profiler census on the shortest and longest context, plus a step with SDPA
restricted to the flash kernel) and, on CUDA, how many synchronising calls one step makes.
The shape of the timed model (its channels, predictor or decoder) and, on a CPU shared with
other work, the load it ran under are recorded beside the numbers.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable

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


ATTENTION_OPS = ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention")


def attention_kernels(fn: Callable[[], object]) -> dict[str, int]:
    """{aten attention op: calls} of one `fn()`, e.g. `_scaled_dot_product_flash_attention`.

    Read from the profiler's op events, which compiled code (calling the same aten kernels)
    emits as eager code does. SDPA picks its backend below autograd, so the ops seen are the
    kernels that ran; the unfused math path decomposes into matmuls and shows none.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = (e.name.removeprefix("aten::") for e in prof.events() if e.name.startswith("aten::_"))
    return dict(sorted(Counter(n for n in names if any(k in n for k in ATTENTION_OPS)).items()))


def attention_by_step(h: StepHarness, ids: list[int]) -> list[dict]:
    """The kernels of the step as timed (compiled or not) on the mask sets with the shortest
    and the longest context among `ids`: I-JEPA's lengths change every batch."""
    lengths = {i: h.masks[i][0][0].size(1) for i in ids}
    picked = sorted({min(ids, key=lengths.get), max(ids, key=lengths.get)})
    out = []
    for i in picked:
        kernels = attention_kernels(lambda i=i: h.step(i))
        out.append({"mask_set": i, "context_len": lengths[i], "target_len": h.masks[i][1][0].size(1),
                    "kernels": kernels, "backend": attention_backend(kernels)})
    return out


def attention_backend(kernels: dict[str, int]) -> str:
    """One word for a census: flash, efficient, cudnn, a '+'-joined mix, or math (no fused op)."""
    kinds = sorted({k for name in kernels for k in ("flash", "efficient", "cudnn") if k in name})
    return "+".join(kinds) or "math"


def flash_only(fn: Callable[[], object]) -> str:
    """"ok" if `fn()` runs with SDPA restricted to the flash kernel, else why not (one line)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SDPA warns once per reason before raising
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                fn()
    except RuntimeError as e:
        return f"failed: {str(e).strip().splitlines()[0][:200]}"
    return "ok"


def sdpa_flags() -> dict[str, bool]:
    """Which SDPA backends torch may pick (torch.backends.cuda.*_sdp_enabled)."""
    b = torch.backends.cuda
    names = ("flash", "mem_efficient", "math", "cudnn")
    return {n: bool(getattr(b, f"{n}_sdp_enabled")()) for n in names if hasattr(b, f"{n}_sdp_enabled")}


def host_syncs(fn: Callable[[], object], device: torch.device) -> int | None:
    """Synchronising CUDA calls (`.item()`, blocking copies, ...) during one `fn()`; None off CUDA.

    Uses torch's sync debug mode, which warns at each such call.
    """
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize(device)
    return sum("synchroniz" in str(w.message) for w in caught)


def free_device_memory() -> None:
    """Return cached blocks of dead tensors (between harnesses of different sizes)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def largest_batch(
    peak_mb: Callable[[int], float], *, limit_mb: float, start: int, multiple: int = 32, cap: int = 4096,
) -> tuple[int, list[dict]]:
    """Largest batch (a multiple of `multiple`, at most `cap`) whose steps peak below `limit_mb`.

    `peak_mb(b)` runs a few steps at batch b and returns their peak memory, raising
    `torch.cuda.OutOfMemoryError` if they do not fit. Peak memory is affine in the batch
    (weights and optimizer state fixed, activations per image), so probes at `start` and
    2 x `start` predict the largest fit; the prediction is then run, and stepped down by
    `multiple` until it fits. Returns (batch, every probe as {batch, peak_mb | oom}).
    """
    tries: list[dict] = []

    def fits(b: int) -> float | None:
        try:
            mb = peak_mb(b)
        except torch.cuda.OutOfMemoryError:
            tries.append({"batch": b, "oom": True})
            free_device_memory()
            return None
        tries.append({"batch": b, "peak_mb": mb})
        return mb if mb <= limit_mb else None

    lo = start
    while (m_lo := fits(lo)) is None:
        if lo <= 1:
            raise RuntimeError(f"even batch 1 exceeds {limit_mb:.0f} MB")
        lo //= 2
    if 2 * lo > cap or (m_hi := fits(2 * lo)) is None:
        return lo, tries
    per_image = max((m_hi - m_lo) / lo, 1e-9)
    guess = int((limit_mb - (m_lo - per_image * lo)) / per_image) // multiple * multiple
    guess = min(guess, cap // multiple * multiple)
    while guess > 2 * lo:
        if fits(guess) is not None:
            return guess, tries
        guess -= multiple
    return 2 * lo, tries


def time_steps(h: StepHarness, *, steps: int, warmup: int, start: int = 0) -> list[float]:
    """Seconds per step for `steps` steps after `warmup` untimed ones (mask sets from `start`)."""
    for i in range(start, start + warmup):
        h.step(i)
    if h.device.type == "cuda":
        torch.cuda.synchronize(h.device)
        torch.cuda.reset_peak_memory_stats(h.device)
    timer = StepTimer(h.device)
    for i in range(start + warmup, start + warmup + steps):
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


def dynamo_graphs() -> int:
    """Graphs torch.compile has built in this process so far (a rise between steps = recompiles)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def mask_shapes(masks) -> tuple:
    return tuple(tuple(m.shape) for group in masks for m in group)


def warmup_sets(h: StepHarness, warmup: int, steps: int) -> list[int]:
    """Mask sets of the warm-up: the first `warmup`, then, when compiled, one set of each mask
    shape the timed steps meet that those did not, so no compile lands in the timing."""
    ids = list(range(warmup))
    if h.cfg.meta.compile:
        seen = {mask_shapes(h.masks[i]) for i in ids}
        for i in range(warmup, warmup + steps):
            if (s := mask_shapes(h.masks[i])) not in seen:
                seen.add(s)
                ids.append(i)
    return ids


def head_shape(cfg: Config, method: str) -> dict[str, int]:
    """The size of the model beside the encoder: I-JEPA's predictor, or MAE's decoder."""
    m = cfg.meta
    if method == "ijepa":
        return {"pred_depth": m.pred_depth, "pred_emb_dim": m.pred_emb_dim}
    return {"dec_depth": m.dec_depth, "dec_emb_dim": m.dec_emb_dim}


def measure_throughput(
    cfg: Config, *, method: str, steps: int = 10, warmup: int = 3, device: torch.device, compile_backend: str = "inductor",
    compile_form: str = "whole", buckets: tuple[int, int] | None = None,
) -> dict:
    """Record fields for `bench.throughput`; `img_per_s` is batch size / median step time.

    `compile_form` (with `meta.compile`) and `buckets`: see `build_harness`."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: throughput needs cpu or cuda (meta only counts FLOPs)")
    h = build_harness(cfg, method, device=device, n_masks=warmup + steps, compile_backend=compile_backend,
                      compile_form=compile_form, buckets=buckets)
    timed_ids = list(range(warmup, warmup + steps))
    warm_ids = warmup_sets(h, warmup, steps)
    graphs0, t0 = dynamo_graphs(), time.perf_counter()
    for i in warm_ids:  # compiles, if meta.compile: warmup_s holds that cost
        h.step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    warm_s, graphs_warm = time.perf_counter() - t0, dynamo_graphs()
    times = time_steps(h, steps=steps, warmup=0, start=warmup)
    peak_mem, graphs_timed = peak_memory_mb(device), dynamo_graphs() - graphs_warm
    stats = spread(times)
    syncs = host_syncs(lambda: h.step(warmup), device)  # the timed (maybe compiled) step
    by_step = attention_by_step(h, timed_ids)
    kernels = dict(sorted(sum((Counter(s["kernels"]) for s in by_step), Counter()).items()))
    flash = flash_only(lambda: h.step(warmup, eager=True))
    fused = True  # real devices run the fused attention kernels
    flops = [step_flops(method, h.model, h.masks[i], fused_attention=fused)["total"] for i in timed_ids]
    counted = count_flops(lambda: h.step(warmup, eager=True))  # checks the closed form on a real step
    mean_flops = sum(flops) / len(flops)
    achieved = mean_flops / stats["step_time_median_s"]
    dtype = torch.bfloat16 if h.bf16 else torch.float32
    peak = gemm_peak(device, dtype)
    coll = collator_rate(cfg, method)
    steps_per_s = 1 / stats["step_time_median_s"]
    lengths = [(h.masks[i][0][0].size(1), h.masks[i][1][0].size(1)) for i in timed_ids]
    return {
        "method": method, "arch": cfg.meta.model_name, "depth": h.model.encoder.depth, "img_size": cfg.data.crop_size,
        "patch_size": cfg.mask.patch_size, "in_chans": cfg.meta.in_chans, **head_shape(cfg, method), "batch_size": h.batch_size,
        "device": str(device), "device_name": device_name(device), "threads": torch.get_num_threads(),
        "load_avg_1m": os.getloadavg()[0],  # CPU contention from other processes
        "dtype": str(dtype).removeprefix("torch."),
        "compile": cfg.meta.compile, "compile_backend": compile_backend if cfg.meta.compile else None,
        "compile_form": compile_form if cfg.meta.compile else None, "mask_buckets": list(buckets) if buckets else None,
        "steps": steps, "warmup": warmup, "warmup_steps": len(warm_ids), "warmup_s": warm_s,
        "dynamo_graphs_warmup": graphs_warm - graphs0, "dynamo_graphs_timed": graphs_timed,
        "img_per_s": h.batch_size * steps_per_s, **stats, "step_times_s": times, "mask_lengths": lengths,
        "peak_mem_mb": peak_mem, "peak_mem_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
        "flops_per_step": mean_flops, "flops_per_image": mean_flops / h.batch_size,
        "flops_counted_one_step": counted, "closed_form_rel_diff": flops[0] / counted - 1,
        "achieved_flops_per_s": achieved, "gemm_peak_flops_per_s": peak, "utilisation": achieved / peak,
        "collator_batches_per_s": coll, "steps_per_s": steps_per_s, "collator_keeps_up": coll >= steps_per_s,
        "attention_kernels": kernels, "attention_backend": attention_backend(kernels), "attention_by_step": by_step,
        "sdpa_flash_only": flash, "sdpa_enabled": sdpa_flags(), "host_syncs_per_step": syncs, "torch": torch.__version__,
    }
