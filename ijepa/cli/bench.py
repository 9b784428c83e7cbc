"""`ijepa bench throughput` and `ijepa bench flops`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, bench_app, console, fail
from ijepa.results.schema import NO_SPLIT

CONFIG = typer.Option(None, "--config", "-c", help="YAML config (ours or an official I-JEPA file); default: the Fashion-MNIST recipe")
SET = typer.Option([], "--set", help="Override one key, e.g. --set data.batch_size=16 (repeatable)")
METHOD = typer.Option("ijepa", help="ijepa or mae")
DEVICE = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps")
JSON = typer.Option(False, "--json", help="Print the record as one JSON line")
RESULTS = typer.Option(Path("results"), help="Results folder the record is written under")


def _setup(config: Path | None, set_: list[str], method: str, device: str):
    from ijepa.devices import resolve_device
    from ijepa.training.config import load_config
    from ijepa.training.loop import METHODS

    if method not in METHODS:
        raise ValueError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    cfg = load_config(config, set_)
    return cfg, resolve_device(device)


def _finish(record: dict, as_json: bool, results: Path, summary: str) -> None:
    from ijepa.results.io import RecordWriteError, write_record

    try:
        path = write_record(record, results_dir=results)
    except RecordWriteError as e:  # a read-only or full results folder: the record went to stdout
        fail(e)
    if as_json:
        print(json.dumps({**record, "record": str(path)}, default=str))
    else:
        console.print(f"{summary}\nrecord: {path}", highlight=False)


@bench_app.command()
def throughput(
    config: Path | None = CONFIG, set_: list[str] = SET, method: str = METHOD, device: str = DEVICE,
    steps: int = typer.Option(10, help="Timed steps"), warmup: int = typer.Option(3, help="Untimed steps first"),
    as_json: bool = JSON, results: Path = RESULTS,
) -> None:
    """Time full training steps (forward, backward, AdamW, EMA) on synthetic images.

    On a CPU, peak memory is the process's max RSS and the record notes the load average
    (other processes slow the steps). For fp32 on any device: --set meta.cpu_bfloat16=false --set meta.use_bfloat16=false

    Example: ijepa bench throughput --method ijepa --steps 10 --json
    """
    from ijepa.bench.throughput import measure_throughput
    from ijepa.typedconfig import ConfigError

    try:
        cfg, dev = _setup(config, set_, method, device)
        rec = measure_throughput(cfg, method=method, steps=steps, warmup=warmup, device=dev)
    except (ConfigError, *USER_ERRORS) as e:
        fail(e)
    rec = {"kind": "bench.throughput", "encoder": f"{method}-{rec['arch']}-{rec['img_size']}", "dataset": "synthetic", **NO_SPLIT, **rec}
    summary = (
        f"{method} {rec['arch']} {rec['img_size']}px on {rec['device_name']} ({rec['dtype']}): {rec['img_per_s']:.2f} img/s, "
        f"step {rec['step_time_median_s'] * 1e3:.1f} ms (IQR {rec['step_time_p25_s'] * 1e3:.1f}-{rec['step_time_p75_s'] * 1e3:.1f}), "
        f"{rec['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s = {rec['utilisation']:.0%} of GEMM peak, "
        f"peak mem {rec['peak_mem_mb']:.0f} MB ({rec['peak_mem_kind']}); collator {rec['collator_batches_per_s']:.1f} batches/s"
        + (f"; load {rec['load_avg_1m']:.1f}" if dev.type == "cpu" else "")
    )
    _finish(rec, as_json, results, summary)


@bench_app.command()
def flops(
    config: Path | None = CONFIG, set_: list[str] = SET, method: str = METHOD,
    device: str = typer.Option("cpu", help="cpu, cuda, or meta (counts models too big to run here)"),
    as_json: bool = JSON, results: Path = RESULTS,
) -> None:
    """FLOPs per training step and per image (counted and closed-form) and per inference.

    Example: ijepa bench flops --method mae
    """
    from ijepa.bench.flops import measure_flops
    from ijepa.typedconfig import ConfigError

    try:
        cfg, dev = _setup(config, set_, method, device)
        rec = measure_flops(cfg, method=method, device=dev)
    except (ConfigError, *USER_ERRORS) as e:
        fail(e)
    rec = {
        "kind": "bench.flops", "encoder": f"{method}-{cfg.meta.model_name}-{cfg.data.crop_size}", "method": method, **NO_SPLIT,
        "arch": cfg.meta.model_name, "img_size": cfg.data.crop_size, "patch_size": cfg.mask.patch_size,
        "batch_size": cfg.data.batch_size, "device": str(dev), **rec,
    }
    summary = (
        f"{method} {rec['arch']} {rec['img_size']}px: {rec['gflops_per_image']:.2f} GFLOPs/image/step "
        f"(closed form {rec['closed_form_rel_diff']:+.2%}), inference {rec['inference_flops_per_image'] / 1e9:.2f} GFLOPs/image"
    )
    _finish(rec, as_json, results, summary)
