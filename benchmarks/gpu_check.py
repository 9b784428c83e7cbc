"""The Python steps of `benchmarks/gpu_check.sh` (read that file first: it runs these in order).

    python benchmarks/gpu_check.py throughput --device cuda --phase eager --state S.json
    python benchmarks/gpu_check.py throughput --device cuda --phase compiled --state S.json --deadline T
    python benchmarks/gpu_check.py pretrain --log runs/TAG/log.csv [--cpu-log L] --device cuda
    python benchmarks/gpu_check.py summary --since STAMP --steps steps.tsv --pytest junit.xml

`throughput` times the Trainer's step (`ijepa.bench.throughput.measure_throughput`, the
function behind `ijepa bench throughput`) for I-JEPA and MAE at ViT-B/16 (batch 128) and
ViT-H/14 (the largest batch that fits, found by `largest_batch`), bf16, eager first, then
torch.compile while the deadline allows. `--tiny` swaps in small models for a CPU dry run.
Targets are reported against, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch
import yaml

from ijepa.bench.harness import build_harness
from ijepa.bench.throughput import free_device_memory, largest_batch, measure_throughput
from ijepa.results.io import write_record
from ijepa.results.schema import NO_SPLIT
from ijepa.training.config import Config, from_dict

# Overrides of the official in1k_vith14_ep300 defaults (ViT-H/14, 224, predictor 12 x 384, bf16).
ARCHS: dict[str, dict[str, dict[str, Any]]] = {
    "vit_base16": {"meta": {"model_name": "vit_base", "pred_depth": 6}, "mask": {"patch_size": 16}},  # paper: B/16 predictor depth 6
    "vit_huge14": {},
}
# Dry-run stand-ins (CPU, fp32: bf16 autocast is ~3x slower on CPUs without AMX).
_SMALL = {"depth": 2, "pred_depth": 1, "pred_emb_dim": 96, "dec_depth": 1, "dec_emb_dim": 64}
_GRID = {"mask": {"patch_size": 8, "min_keep": 2}, "data": {"crop_size": 32}}
TINY_ARCHS: dict[str, dict[str, dict[str, Any]]] = {
    "vit_base16": {"meta": {"model_name": "vit_tiny", **_SMALL}, **_GRID},
    "vit_huge14": {"meta": {"model_name": "vit_small", **_SMALL}, **_GRID},
}
BASE_BATCH, TINY_BATCH = 128, 8
METHODS = ("ijepa", "mae")
# Compiled runs in priority order: the MFU target is I-JEPA at ViT-H/14.
COMPILED = [("ijepa", "vit_huge14"), ("ijepa", "vit_base16"), ("mae", "vit_base16"), ("mae", "vit_huge14")]
TARGET_MFU, TARGET_SPEEDUP = 0.40, 1.5


def arch_config(arch: str, *, batch: int, compile_: bool, tiny: bool) -> Config:
    raw = json.loads(json.dumps((TINY_ARCHS if tiny else ARCHS)[arch]))
    raw.setdefault("data", {})["batch_size"] = batch
    raw.setdefault("meta", {}).update(use_bfloat16=True, compile=compile_)
    return from_dict(raw)


def peak_probe(arch: str, method: str, device: torch.device, *, steps: int = 2):
    """peak_mb(batch) for `largest_batch`: build the harness, run `steps` steps, read the peak."""

    def peak_mb(batch: int) -> float:
        free_device_memory()
        torch.cuda.reset_peak_memory_stats(device)
        h = build_harness(arch_config(arch, batch=batch, compile_=False, tiny=False), method, device=device, n_masks=steps)
        for i in range(steps):
            h.step(i)
        torch.cuda.synchronize(device)
        del h
        return torch.cuda.max_memory_allocated(device) / 2**20

    return peak_mb


def find_batch(arch: str, method: str, device: torch.device, *, tiny: bool) -> tuple[int, dict | None]:
    """(batch, search record); ViT-B/16 has the issue's fixed 128, tiny CPU runs a fixed 8."""
    if tiny or device.type != "cuda":
        return TINY_BATCH if tiny else BASE_BATCH, None
    if arch == "vit_base16":
        return BASE_BATCH, None
    total = torch.cuda.get_device_properties(device).total_memory / 2**20
    limit = 0.85 * total  # headroom for the allocator's fragmentation and the largest masks
    t0 = time.perf_counter()
    batch, tries = largest_batch(peak_probe(arch, method, device), limit_mb=limit, start=64, multiple=32, cap=1024)
    free_device_memory()
    return batch, {"limit_mb": limit, "total_mb": total, "tries": tries, "search_s": time.perf_counter() - t0}


def measure(arch: str, method: str, *, batch: int, compile_: bool, device: torch.device, tiny: bool,
            steps: int, warmup: int) -> dict:
    """measure_throughput, retried 10% smaller if a mask set larger than the search's OOMs."""
    for attempt in range(3):
        cfg = arch_config(arch, batch=batch, compile_=compile_, tiny=tiny)
        try:
            rec = measure_throughput(cfg, method=method, steps=steps, warmup=warmup, device=device,
                                     compile_backend="eager" if tiny and device.type == "cpu" else "inductor")
        except torch.cuda.OutOfMemoryError:
            rec = None
        free_device_memory()
        if rec is not None:
            return {**rec, "oom_retries": attempt}
        batch = max(32, int(batch * 0.9) // 32 * 32)
    raise RuntimeError(f"{method} {arch}: out of memory even at batch {batch}")


def throughput(args) -> None:
    device = torch.device(args.device)
    state_path = Path(args.state)
    state = json.loads(state_path.read_text()) if state_path.exists() else {"batches": {}, "skipped": []}
    if args.phase == "eager":
        plan = [(m, a, False) for a in ("vit_base16", "vit_huge14") for m in METHODS]
    else:
        plan = [(m, a, True) for m, a in COMPILED]
    for method, arch, compile_ in plan:
        name = f"{method}-{arch}{'-compiled' if compile_ else ''}"
        if args.deadline and time.time() > args.deadline:
            state["skipped"].append({"run": name, "why": "time budget of the check spent"})
            print(f"{name}: skipped (time budget)", flush=True)
            continue
        search = None
        if name.replace("-compiled", "") in state["batches"]:
            batch = state["batches"][name.replace("-compiled", "")]
        else:
            batch, search = find_batch(arch, method, device, tiny=args.tiny)
        steps = args.steps if arch == "vit_base16" else args.huge_steps
        steps, warmup = (3, 1) if args.tiny else (steps, args.warmup)
        try:
            rec = measure(arch, method, batch=batch, compile_=compile_, device=device, tiny=args.tiny, steps=steps, warmup=warmup)
        except Exception as e:  # one model's compiler failure must not cost the other models' figures
            if not compile_:
                raise
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            state.setdefault("failed", []).append({"run": name, "why": why})
            print(f"{name}: FAILED ({why})", flush=True)
            free_device_memory()
            state_path.write_text(json.dumps(state))
            continue
        state["batches"].setdefault(f"{method}-{arch}", rec["batch_size"])
        rec = {"kind": "bench.throughput", "encoder": f"{method}-{rec['arch']}-{rec['img_size']}{'-compiled' if compile_ else ''}",
               "dataset": "synthetic", "preset": arch, "tiny": args.tiny, "batch_search": search, **NO_SPLIT, **rec}
        path = write_record(rec, results_dir=Path(args.results))
        print(f"{name}: batch {rec['batch_size']} {rec['dtype']} {rec['img_per_s']:.1f} img/s, step {rec['step_time_median_s'] * 1e3:.1f} ms "
              f"(IQR {rec['step_time_p25_s'] * 1e3:.1f}-{rec['step_time_p75_s'] * 1e3:.1f}), MFU {rec['utilisation']:.1%} of "
              f"{rec['gemm_peak_flops_per_s'] / 1e12:.0f} TFLOP/s GEMM, peak {rec['peak_mem_mb'] / 1024:.1f} GiB, attention "
              f"{rec['attention_backend']} (flash-only: {rec['sdpa_flash_only']}), host syncs {rec['host_syncs_per_step']}, "
              f"warm-up {rec['warmup_s']:.1f} s\n  record: {path}", flush=True)
        state_path.write_text(json.dumps(state))
    state_path.write_text(json.dumps(state))
    if state.get("failed"):
        raise SystemExit(f"{len(state['failed'])} compiled run(s) failed: " + ", ".join(f["run"] for f in state["failed"]))


def read_log(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if k in ("step", "loss", "img_per_s", "elapsed_s", "step_time_s") and v}
                for row in csv.DictReader(f)]


# Keys that may differ between the two runs without changing the curve: where they run and log.
RUN_ONLY = ("meta.device", "optimization.max_steps", "data.root_path", "data.pin_mem", "logging.")


def config_differences(cpu: dict, gpu: dict) -> list[str]:
    """'key: cpu -> gpu' for every recipe key the two runs' config.yaml files disagree on."""
    flat = lambda c: {f"{s}.{k}": v for s, sec in c.items() for k, v in sec.items()}  # noqa: E731
    a, b = flat(cpu), flat(gpu)
    keys = sorted(k for k in a.keys() | b.keys() if not k.startswith(RUN_ONLY) and a.get(k) != b.get(k))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys]


def pretrain(args) -> None:
    """A `bench.gpu_pretrain` record: the run's loss curve and step img/s, beside a CPU log's."""
    gpu = read_log(Path(args.log))
    cfg = yaml.safe_load((Path(args.log).parent / "config.yaml").read_text())
    rates = [r["img_per_s"] for r in gpu[1:]] or [r["img_per_s"] for r in gpu]
    bf16 = cfg["meta"]["use_bfloat16"] if args.device.startswith("cuda") else cfg["meta"]["cpu_bfloat16"]
    rec: dict[str, Any] = {
        "kind": "bench.gpu_pretrain", "encoder": cfg["logging"]["write_tag"], "dataset": cfg["data"]["dataset"], **NO_SPLIT,
        "device": args.device, "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "dtype": "bfloat16" if bf16 else "float32", "seed": cfg["meta"]["seed"],
        "steps": int(gpu[-1]["step"]), "batch_size": cfg["data"]["batch_size"], "final_loss": gpu[-1]["loss"],
        "img_per_s": statistics.median(rates), "elapsed_s": gpu[-1]["elapsed_s"],
        "loss_curve": [[int(r["step"]), r["loss"]] for r in gpu], "cpu_log": None,
    }
    if args.cpu_log and Path(args.cpu_log).exists():
        cpu_cfg = Path(args.cpu_log).parent / "config.yaml"
        rec["config_differences"] = config_differences(yaml.safe_load(cpu_cfg.read_text()), cfg) if cpu_cfg.exists() else None
        cpu = {int(r["step"]): r for r in read_log(Path(args.cpu_log))}
        common = [(int(r["step"]), r["loss"], cpu[int(r["step"])]["loss"]) for r in gpu if int(r["step"]) in cpu]
        rel = [abs(g / c - 1) for _, g, c in common if c]
        rec.update(
            cpu_log=str(args.cpu_log), cpu_loss_curve=[[s, c] for s, _, c in common], common_steps=len(common),
            cpu_final_loss=common[-1][2] if common else None, loss_rel_diff_mean=statistics.mean(rel) if rel else None,
            loss_rel_diff_max=max(rel) if rel else None, cpu_img_per_s=statistics.median(r["img_per_s"] for r in cpu.values()),
        )
    path = write_record(rec, results_dir=Path(args.results))
    cmp = (f"; CPU log at the same steps: final {rec['cpu_final_loss']:.4f}, mean |rel diff| {rec['loss_rel_diff_mean']:.2%}"
           if rec.get("loss_rel_diff_mean") is not None else "; no CPU reference log")
    print(f"pretrain on {args.device}: {rec['steps']} steps, final loss {rec['final_loss']:.4f}, {rec['img_per_s']:.0f} img/s{cmp}\n  record: {path}")


def _fmt(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def pytest_counts(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"ran": False}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = [{"name": c.get("name"), "outcome": next((ch.tag for ch in c if ch.tag in ("failure", "error", "skipped")), "passed")}
             for c in suite.iter("testcase")]
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failure", "error", "skipped")}
    return {"ran": True, **counts, "cases": cases}


def summary_lines(recs: list[dict], tests: dict, steps: list[dict], device: str) -> list[str]:
    out = [f"# GPU check ({device})", "", "| step | exit | seconds |", "|---|---|---|"]

    def verdict(ok: bool) -> str:  # the targets are the GPU's: a CPU dry run is not judged by them
        return ("met" if ok else "NOT met") if device.startswith("cuda") else f"not judged: a dry run on {device}"

    out += [f"| {s['step']} | {s['rc']} | {float(s['seconds']):.0f} |" for s in steps]
    if tests.get("ran"):
        out += ["", f"pytest -m cuda: {tests['passed']} passed, {tests['failure'] + tests['error']} failed, {tests['skipped']} skipped"]
    tp = [r for r in recs if r.get("kind") == "bench.throughput"]
    if tp:
        out += ["", "| method | arch | batch | compile | img/s | step ms (IQR) | peak GiB | MFU | attention | flash-only | host syncs |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in tp:
            out.append(f"| {r['method']} | {r['preset']} | {r['batch_size']} | {r['compile']} | {r['img_per_s']:.1f} | "
                       f"{r['step_time_median_s'] * 1e3:.1f} ({r['step_time_p25_s'] * 1e3:.1f}-{r['step_time_p75_s'] * 1e3:.1f}) | "
                       f"{r['peak_mem_mb'] / 1024:.1f} | {r['utilisation']:.1%} | {r['attention_backend']} | {r['sdpa_flash_only']} | "
                       f"{_fmt(r['host_syncs_per_step'], 'd')} |")
        huge = [r["utilisation"] for r in tp if r["method"] == "ijepa" and r["preset"] == "vit_huge14"]
        if huge:
            dtypes = "/".join(sorted({r["dtype"] for r in tp}))
            out.append(f"\nTarget: I-JEPA ViT-H/14 bf16 MFU >= {TARGET_MFU:.0%} (these runs: {dtypes}): best {max(huge):.1%} -> "
                       f"{verdict(max(huge) >= TARGET_MFU)}")
    for r in (r for r in recs if r.get("kind") == "bench.official_step"):
        out.append(f"\nOfficial-style step, {r['preset']} {r['dtype']} batch {r['batch_size']}: ours {r['img_per_s']:.1f} img/s, official "
                   f"{r['official_img_per_s']:.1f} img/s, speedup {r['speedup']:.2f}x (target >= {TARGET_SPEEDUP}x: "
                   f"{verdict(r['speedup'] >= TARGET_SPEEDUP)}); host syncs/step ours {r['host_syncs_per_step_ours']}, "
                   f"official {r['host_syncs_per_step_official']}")
    for r in (r for r in recs if r.get("kind") == "bench.eval_speed"):
        out.append(f"\nFrozen features, {r['encoder']}: {r['img_per_s']:.0f} img/s fp32 (as the eval runs), {r['img_per_s_bf16']:.0f} "
                   f"img/s bf16; head grid ({r['grid_heads']} heads, {r['grid_rows']} x {r['feature_dim']}): {r['grid_epoch_s']:.1f} s/epoch "
                   f"-> {r['projected_grid_fit_s'] / 60:.1f} min for {r['grid_epochs']} epochs; whole eval without JPEG decoding: "
                   f"{r['projected_linear_eval_cold_s'] / 60:.1f} min cold, {r['projected_linear_eval_cached_s'] / 60:.1f} min cached")
    for r in (r for r in recs if r.get("kind") == "bench.gpu_pretrain"):
        cpu = (f", CPU log: final {r['cpu_final_loss']:.4f}, mean |rel diff| {r['loss_rel_diff_mean']:.2%} over "
               f"{r['common_steps']} logged steps; recipe differences: {r.get('config_differences') or 'none'}"
               if r.get("loss_rel_diff_mean") is not None else ", no CPU reference log")
        out.append(f"\nDefault recipe, {r['steps']} steps on {r['device']} ({r['dtype']}): final loss {r['final_loss']:.4f}, "
                   f"{r['img_per_s']:.0f} img/s{cpu}")
    return out


def summary(args) -> None:
    """`results/gpu_check.md` and a `bench.gpu_check` record naming every record of this check."""
    results = Path(args.results)
    since = Path(args.since).stat().st_mtime
    paths = sorted(p for p in (results / "records").rglob("*.json") if p.stat().st_mtime >= since)
    recs = [json.loads(p.read_text()) for p in paths]
    tests = pytest_counts(Path(args.pytest))
    with Path(args.steps).open() as f:
        steps = list(csv.DictReader(f, delimiter="\t"))
    state = json.loads(Path(args.state).read_text()) if args.state and Path(args.state).is_file() else {}
    lines = summary_lines(recs, tests, steps, args.device)
    if state.get("skipped"):
        lines += ["", "Skipped: " + ", ".join(f"{s['run']} ({s['why']})" for s in state["skipped"])]
    if state.get("failed"):
        lines += ["", "Failed: " + "; ".join(f"{f['run']} ({f['why']})" for f in state["failed"])]
    if any(s["step"] == "throughput_compiled" and s["rc"] == "124" for s in steps):
        lines += ["", "The compiled run in flight at the deadline was stopped (no record)."]
    md = results / "gpu_check.md"
    md.write_text("\n".join(lines) + "\n")
    rec = {"kind": "bench.gpu_check", "encoder": "gpu_check", "device": args.device, "tiny": args.tiny, **NO_SPLIT,
           "records": [str(p.relative_to(results)) for p in paths], "pytest": tests, "steps": steps,
           "skipped": state.get("skipped", []), "failed": state.get("failed", []), "summary_md": str(md)}
    print("\n".join(lines))
    print(f"summary: {md}\nrecord: {write_record(rec, results_dir=results)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--phase", choices=["eager", "compiled"], required=True)
    t.add_argument("--state", required=True, help="JSON carrying the batch sizes from eager to compiled")
    t.add_argument("--deadline", type=float, default=0, help="Unix time after which no new run starts (0: none)")
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--huge-steps", type=int, default=6)
    t.add_argument("--warmup", type=int, default=3)
    p = sub.add_parser("pretrain")
    p.add_argument("--log", required=True)
    p.add_argument("--cpu-log", default="")
    s = sub.add_parser("summary")
    s.add_argument("--since", required=True, help="a file written when the check began")
    s.add_argument("--steps", required=True, help="TSV: step, rc, seconds")
    s.add_argument("--pytest", required=True, help="pytest's --junitxml file")
    s.add_argument("--state", default="")
    for q in (t, p, s):
        q.add_argument("--device", default="cuda")
        q.add_argument("--tiny", action="store_true")
        q.add_argument("--results", default="results")
    args = ap.parse_args()
    {"throughput": throughput, "pretrain": pretrain, "summary": summary}[args.cmd](args)


if __name__ == "__main__":
    main()
