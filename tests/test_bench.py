"""Benchmarks: FLOP counter vs closed form, throughput record fields, the --json contract."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from ijepa.bench.flops import count_flops, inference_flops, measure_flops, step_flops
from ijepa.bench.harness import build_harness
from ijepa.bench.throughput import attention_backend, largest_batch, measure_throughput
from ijepa.data.fashion_mnist import DEFAULT_ROOT as FMNIST_ROOT
from ijepa.training.config import from_dict

OFFICIAL_YAML = Path(__file__).parent / "fixtures" / "in1k_vith14_ep300.yaml"


def tiny_cfg(**data):
    return from_dict({
        "data": {"crop_size": 32, "batch_size": 4, **data},
        "mask": {"patch_size": 8, "min_keep": 2},
        "meta": {"model_name": "vit_tiny", "depth": 2, "in_chans": 1, "pred_depth": 2, "pred_emb_dim": 96,
                 "dec_depth": 2, "dec_emb_dim": 64},
    })


@pytest.mark.parametrize("method", ["ijepa", "mae"])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_closed_form_matches_the_flop_counter(method, device):
    """Fused attention on CPU (5 backward matmuls), math attention on meta (4)."""
    rec = measure_flops(tiny_cfg(), method=method, device=torch.device(device))
    assert abs(rec["closed_form_rel_diff"]) < 0.02
    assert rec["inference_flops_per_image"] == rec["inference_flops_closed_form"]
    assert rec["flops_per_image"] == rec["flops_per_step"] / 4
    parts = rec["closed_form_parts"]
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")


def test_closed_form_follows_the_masks():
    """Every mask set gives a different count, and the closed form tracks each one."""
    h = build_harness(tiny_cfg(crop_size=64), "ijepa", device=torch.device("cpu"), n_masks=3)
    for i in range(3):
        counted = count_flops(lambda i=i: h.step(i))
        closed = step_flops("ijepa", h.model, h.masks[i], fused_attention=True)["total"]
        assert abs(closed / counted - 1) < 0.02
    # A step costs more than 3 forwards of the context encoder but less than 3 full forwards x 3 nets.
    assert counted > 3 * inference_flops(h.model.encoder) * 0.5


def test_throughput_record_fields():
    rec = measure_throughput(tiny_cfg(), method="mae", steps=3, warmup=1, device=torch.device("cpu"))
    assert len(rec["step_times_s"]) == 3
    assert rec["img_per_s"] == pytest.approx(4 / rec["step_time_median_s"])
    assert rec["step_time_min_s"] <= rec["step_time_p25_s"] <= rec["step_time_median_s"] <= rec["step_time_p75_s"] <= rec["step_time_max_s"]
    assert rec["achieved_flops_per_s"] == pytest.approx(rec["flops_per_step"] / rec["step_time_median_s"])
    assert 0 < rec["utilisation"] == pytest.approx(rec["achieved_flops_per_s"] / rec["gemm_peak_flops_per_s"])
    assert abs(rec["closed_form_rel_diff"]) < 0.02
    assert rec["peak_mem_mb"] > 0 and rec["collator_batches_per_s"] > 0
    assert rec["collator_keeps_up"] == (rec["collator_batches_per_s"] >= rec["steps_per_s"])
    assert rec["dtype"] == "float32" and rec["method"] == "mae"
    assert (rec["in_chans"], rec["dec_depth"], rec["dec_emb_dim"]) == (1, 2, 64) and rec["load_avg_1m"] >= 0
    # CPU SDPA: the flash kernel, forward (encoder + decoder blocks) and backward, nothing unfused
    assert rec["attention_backend"] == "flash" and rec["sdpa_flash_only"] == "ok"
    assert rec["attention_kernels"] == {"_scaled_dot_product_flash_attention_for_cpu": 4,
                                        "_scaled_dot_product_flash_attention_for_cpu_backward": 4}
    assert [s["backend"] for s in rec["attention_by_step"]] == ["flash"]  # MAE: one length, one census
    assert rec["host_syncs_per_step"] is None and rec["dynamo_graphs_timed"] == 0
    with pytest.raises(ValueError, match="--device meta"):
        measure_throughput(tiny_cfg(), method="mae", steps=1, device=torch.device("meta"))


def test_largest_batch_fits_an_affine_model_then_steps_down():
    """Two probes predict the limit; a prediction that does not fit (here memory jumps past
    batch 200, or the probe runs out of memory) is stepped down until one fits."""
    def affine(b: int) -> float:
        return 1000 + 10 * b

    assert largest_batch(affine, limit_mb=4000, start=64, multiple=32)[0] == 288  # (4000 - 1000) / 10, rounded down

    def jump(b: int) -> float:
        if b > 250:
            raise torch.cuda.OutOfMemoryError("probe")
        return affine(b) + (2000 if b > 200 else 0)

    batch, tries = largest_batch(jump, limit_mb=4000, start=64, multiple=32)
    assert batch == 192
    assert [t["batch"] for t in tries] == [64, 128, 288, 256, 224, 192] and tries[2] == {"batch": 288, "oom": True}
    assert largest_batch(affine, limit_mb=1500, start=64, multiple=32)[0] == 32  # start itself too big: halved
    assert largest_batch(affine, limit_mb=1e9, start=64, multiple=32, cap=512)[0] == 512


def test_attention_backend_names_the_kernels():
    assert attention_backend({"_scaled_dot_product_flash_attention": 6, "_scaled_dot_product_flash_attention_backward": 4}) == "flash"
    assert attention_backend({"_scaled_dot_product_efficient_attention": 2, "_scaled_dot_product_flash_attention": 2}) == "efficient+flash"
    assert attention_backend({}) == "math"


def test_gpu_check_pretrain_record_sets_a_run_beside_a_cpu_log(tmp_path):
    """The GPU check's step 5 record: the curve, img/s, and the CPU log compared at shared steps."""
    mod = _benchmark_module("gpu_check")
    cfg = {"data": {"dataset": "fashion-mnist", "batch_size": 64, "root_path": ""}, "meta": {"seed": 0, "use_bfloat16": True,
           "cpu_bfloat16": False, "device": "cuda", "depth": 6}, "optimization": {"max_steps": 300}, "logging": {"write_tag": "g"}}
    for name, losses, dev in (("gpu", [1.0, 0.8, 0.5], "cuda"), ("cpu", [1.0, 0.9, 0.5, 0.4], "cpu")):
        (tmp_path / name).mkdir()
        c = json.loads(json.dumps(cfg))
        c["meta"]["device"], c["meta"]["depth"] = dev, 6 if name == "gpu" else 4
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(c))
        rows = ["step,loss,img_per_s,elapsed_s"] + [f"{10 * i + 1},{v},{100 * (i + 1)},{i}" for i, v in enumerate(losses)]
        (tmp_path / name / "log.csv").write_text("\n".join(rows) + "\n")
    args = argparse.Namespace(log=str(tmp_path / "gpu" / "log.csv"), cpu_log=str(tmp_path / "cpu" / "log.csv"),
                              device="cpu", results=str(tmp_path / "results"))
    mod.pretrain(args)
    (path,) = (tmp_path / "results" / "records" / "bench.gpu_pretrain").glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["loss_curve"] == [[1, 1.0], [11, 0.8], [21, 0.5]] and rec["common_steps"] == 3
    assert rec["img_per_s"] == 250 and rec["cpu_img_per_s"] == 250
    assert rec["loss_rel_diff_max"] == pytest.approx(1 / 9) and rec["loss_rel_diff_mean"] == pytest.approx(1 / 27)
    assert rec["config_differences"] == ["meta.depth: 4 -> 6"]  # device and max_steps are where it ran, not the recipe


def test_gpu_check_summary_judges_targets_on_a_gpu_only():
    """A CPU dry run of the GPU check must not print "target met" from CPU numbers; a target
    without a figure says which step left it unmeasured."""
    mod = _benchmark_module("gpu_check")
    tp = {"kind": "bench.throughput", "method": "ijepa", "preset": "vit_huge14", "batch_size": 8, "compile": False, "img_per_s": 1.0,
          "step_time_median_s": 1.0, "step_time_p25_s": 1.0, "step_time_p75_s": 1.0, "peak_mem_mb": 1024.0, "utilisation": 0.9,
          "attention_backend": "flash", "sdpa_flash_only": "ok", "host_syncs_per_step": 0, "dtype": "bfloat16",
          "attention_by_step": [{"context_len": 40, "backend": "flash"}, {"context_len": 61, "backend": "flash"}]}
    steps = [{"step": "official_vit_huge14", "rc": "124", "seconds": "150"}, {"step": "features", "rc": "skipped", "seconds": "0"}]
    on = {d: "\n".join(mod.summary_lines([tp], {}, steps, d)) for d in ("cpu", "cuda")}
    assert "MFU >= 50%" in on["cpu"] and "not judged: a dry run on cpu" in on["cpu"] and "-> met" not in on["cpu"] and "NOT met" not in on["cpu"]
    assert "MFU >= 50% on flash attention, no cuDNN: best 90.0% (eager, bfloat16, attention flash) -> met" in on["cuda"]
    assert "| 40: flash, 61: flash |" in on["cuda"]
    assert "official step's math at ViT-H/14: not measured: official_vit_huge14 stopped at its time limit" in on["cuda"]
    assert "of fp32 (linear probes on Fashion-MNIST test): not measured: features skipped (the time budget was spent)" in on["cuda"]
    assert "`pytest -m cuda` all pass: not measured: pytest_cuda did not run" in on["cuda"]
    cudnn = {**tp, "attention_backend": "cudnn"}  # the MFU target is on flash attention
    assert "attention cudnn) -> NOT met" in "\n".join(mod.summary_lines([cudnn], {}, [], "cuda"))


def _cli(args: list[str]):
    import ijepa.cli.bench  # noqa: F401  (registers the commands)
    from ijepa.cli import app

    return CliRunner().invoke(app, args)


def tiny_sets() -> list[str]:
    sets = ["data.crop_size=32", "data.batch_size=2", "mask.patch_size=8", "mask.min_keep=2", "meta.depth=1",
            "meta.pred_depth=1", "meta.pred_emb_dim=96", "meta.in_chans=1"]
    return [a for s in sets for a in ("--set", s)]


def test_json_contract_one_line_with_img_per_s(tmp_path):
    res = _cli(["bench", "throughput", "--json", "--steps", "2", "--warmup", "0", "--device", "cpu",
                "--results", str(tmp_path), *tiny_sets()])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["kind"] == "bench.throughput" and rec["img_per_s"] > 0 and rec["dataset"] == "synthetic"
    assert (rec["in_chans"], rec["pred_depth"], rec["pred_emb_dim"]) == (1, 1, 96)
    saved = json.loads(Path(rec["record"]).read_text())
    assert saved["img_per_s"] == rec["img_per_s"] and Path(rec["record"]).is_relative_to(tmp_path)


def test_flops_cli_reads_an_official_yaml_on_meta(tmp_path):
    """The official ViT-H/14 config (cut to 2 blocks: meta tensors are slow), never allocated."""
    res = _cli(["bench", "flops", "--json", "--device", "meta", "--config", str(OFFICIAL_YAML),
                "--set", "data.batch_size=2", "--set", "meta.depth=2", "--set", "meta.pred_depth=1",
                "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert rec["arch"] == "vit_huge" and rec["patch_size"] == 14 and rec["attention"] == "math"
    assert rec["device"] == "meta"  # the results table's bench row says where it was counted
    assert abs(rec["closed_form_rel_diff"]) < 0.02
    # Per ViT-H/14 block at 224: 2*256*1280*(4*1280 + 2*5120) + 4*256^2*1280 = 10.41 GFLOPs (x32 blocks
    # + patch embedding = 333.6 GFLOPs, the usual "167 GMACs"); 2 blocks + patch embedding: 21.2.
    assert 21.0e9 < rec["inference_flops_per_image"] < 21.4e9


def test_cli_bad_method_is_one_error_line(tmp_path):
    res = _cli(["bench", "flops", "--method", "byol", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "--method 'byol'" in res.output


def _benchmark_module(name: str):
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _official_step_module():
    return _benchmark_module("official_step")


def test_official_style_baseline_computes_the_same_step():
    """Same weights, images and masks: same loss, and the same trajectory over two steps."""
    mod = _official_step_module()
    cfg = tiny_cfg(batch_size=3)
    ours = build_harness(cfg, "ijepa", device=torch.device("cpu"), n_masks=3)
    base = mod.OfficialStyleStep(ours)
    assert mod.check_same_math(ours, base) < 1e-5
    for i in range(2):
        a, b = float(ours.step(i)), base.step(i)
        assert a == pytest.approx(b, rel=1e-4)
    theirs = base.target_encoder.state_dict()
    for n, p in ours.model.target_encoder.state_dict().items():
        assert torch.allclose(p, theirs[n], atol=1e-5), n


def test_results_plot_joins_compute_and_linear_records(tmp_path):
    from ijepa.results.io import write_record
    from ijepa.results.plots import Setting, compute_panels, plot_compute

    for run, method, flops, top1 in (("a", "ijepa", 1e12, 0.7), ("b", "mae", 1e12, 0.6), ("c", "mae", 2e12, None)):
        write_record({"kind": "pretrain.compute", "encoder": run, "run": run, "method": method,
                      "pretrain_flops": flops, "pretrain_wall_s": 10.0}, results_dir=tmp_path)
        if top1 is not None:
            write_record({"kind": "eval.linear", "encoder": f"{run}:target_encoder", "dataset": "fashion-mnist", "top1": top1},
                         results_dir=tmp_path)
    for ds in ("fashion-mnist", "imagefolder:/x"):
        write_record({"kind": "eval.linear", "encoder": f"random:vit_tiny-{ds}", "dataset": ds, "top1": 0.5}, results_dir=tmp_path)
    from ijepa.results.io import read_records

    (setting, panel), = compute_panels(read_records(tmp_path)).items()
    assert setting == Setting("fashion-mnist", "linear-grid", "all images", "test")
    assert sorted((p["run"], p["method"], p["gflops"], p["top1"]) for p in panel.points) == [("a", "ijepa", 1000.0, 70.0), ("b", "mae", 1000.0, 60.0)]
    assert panel.floors == [50.0]  # the imagefolder random init stands under no Fashion-MNIST line
    out = plot_compute(tmp_path)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no pretrain.compute"):
        plot_compute(tmp_path / "empty")


def test_recipe_sweep_sizes_a_variant_to_its_flops_budget():
    """`budget_pflops` buys each method as many steps as its own cost per step allows."""
    from ijepa.bench.flops import mean_step_flops
    from ijepa.bench.sweep import Variant, variant_config

    def config(overrides: list[str]):
        return variant_config(Variant("v", tuple(overrides), None, Path("g.yaml")), folder="/nonexistent")

    for method, extra in (("ijepa", []), ("mae", ["meta.dec_depth=1", "meta.dec_emb_dim=32"])):
        per_step = mean_step_flops(config([f"method={method}", *extra]), method)
        cfg = config([f"method={method}", f"budget_pflops={100.5 * per_step / 1e15}", *extra])
        assert cfg.data.subset == 100 * cfg.data.batch_size and cfg.optimization.epochs == 1
    # Past the train split's 50,000 images: every image, more than one epoch, warm-up stretched
    # alike (a subset beyond the split would silently buy fewer steps than the budget).
    base = config(["optimization.warmup=0.2"])
    cfg = config([f"budget_pflops={1000.5 * mean_step_flops(base, 'ijepa') / 1e15}", "optimization.warmup=0.2"])
    assert cfg.data.subset == 0 and cfg.optimization.epochs == pytest.approx(64_000 / 50_000)
    assert cfg.optimization.warmup == pytest.approx(0.2 * 64_000 / 50_000)


def test_a_subset_larger_than_the_train_split_is_refused():
    from ijepa.distributed import DistInfo
    from ijepa.training.config import load_config
    from ijepa.training.data import PretrainData
    from ijepa.typedconfig import ConfigError

    with pytest.raises(ConfigError, match="data.subset: 50001 images asked, the train split of .* has 50000"):
        PretrainData(load_config(None, ["data.subset=50001"]), DistInfo(), pin_memory=False)


def test_bench_and_trainer_share_the_bf16_autocast():
    """The trainer's rule (official use_bfloat16 on CUDA, ours cpu_bfloat16 elsewhere, MPS included) is the benchmarks' too."""
    from ijepa.devices import bf16_autocast

    table = {("cuda", True, False): True, ("cuda", False, True): False, ("cpu", True, False): False, ("cpu", False, True): True,
             ("mps", False, True): True, ("meta", True, True): False}
    for (dev, gpu, cpu), want in table.items():
        with warnings.catch_warnings():  # no CUDA here: torch disables the autocast object itself, the rule is what is checked
            warnings.simplefilter("ignore", UserWarning)
            ac, on = bf16_autocast(torch.device(dev), use_bfloat16=gpu, cpu_bfloat16=cpu)
        assert on is want and (dev == "meta" or ac.device == dev), dev
    cfg = tiny_cfg()
    cfg.meta.cpu_bfloat16 = True
    h = build_harness(cfg, "ijepa", device=torch.device("cpu"))
    assert h.bf16 and (h.autocast.device, h.autocast.fast_dtype, h.autocast._enabled) == ("cpu", torch.bfloat16, True)


def test_gpu_check_compile_form_failure_is_recorded_and_judged(tmp_path, monkeypatch):
    """On the H200 an inductor failure was all the compiled phase produced: each form now runs
    alone, its failure lands in the state beside the forms that worked, and the summary says
    which form compiled and how it compares with eager."""
    mod = _benchmark_module("gpu_check")

    def fake(arch, method, *, compile_, form="whole", **kw):
        if compile_ and form == "seqdim":
            raise AssertionError("inductor: tiling assertion\nmore")
        return {"img_per_s": 120.0 if compile_ else 100.0, "compile": compile_}

    monkeypatch.setattr(mod, "measure", fake)
    monkeypatch.setattr(mod, "save_throughput", lambda rec, **kw: tmp_path / "rec.json")
    monkeypatch.setattr(mod, "throughput_fields", lambda rec: {"warmup_s": 9.0, "graphs_timed": 0, "utilisation": 0.3, "attention": "flash"})
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"batches": {"ijepa-vit_base16": 8}, "eager": {"ijepa-vit_base16": 100.0}, "forms": {}, "skipped": []}))
    args = argparse.Namespace(device="cpu", state=str(state), form="seqdim", method="ijepa", arch="vit_base16", tiny=True,
                              steps=3, huge_steps=3, warmup=1, results=str(tmp_path / "results"))
    with pytest.raises(SystemExit, match="seqdim:ijepa-vit_base16: FAILED \\(AssertionError: inductor: tiling assertion\\)"):
        mod.compile_run(args)
    for form in ("blocks", "bucketed"):
        mod.compile_run(argparse.Namespace(**{**vars(args), "form": form}))
    forms = json.loads(state.read_text())["forms"]
    assert forms["seqdim:ijepa-vit_base16"]["status"] == "failed" and forms["blocks:ijepa-vit_base16"]["speedup"] == pytest.approx(1.2)
    assert forms["bucketed:ijepa-vit_base16"]["buckets"] == [16, 8]  # its eager baseline ran again on the cut masks
    assert mod.best_form(json.loads(state.read_text())) == "blocks"
    lines = "\n".join(mod.summary_lines([], {}, [], "cuda", json.loads(state.read_text())))
    assert "a compiled step faster than eager: best blocks on ijepa-vit_base16, 1.20x eager -> met" in lines
    assert "| seqdim | ijepa-vit_base16 | None | FAILED: AssertionError: inductor: tiling assertion |" in lines


@pytest.mark.skipif(not (FMNIST_ROOT / "t10k-labels-idx1-ubyte.gz").exists(), reason="Debian's Fashion-MNIST not installed")
def test_feature_dtype_scores_bf16_features_through_the_eval(tmp_path):
    """bf16 features, extracted by the eval's own `dtype` (cached beside fp32's under their own
    key), really differ from fp32's, and the eval scores both."""
    from ijepa.models.registry import create_encoder

    mod = _benchmark_module("feature_dtype")
    torch.manual_seed(0)
    enc = create_encoder("vit_tiny", img_size=32, patch_size=4, in_chans=1, depth=1)
    (path,) = mod.compare(enc, torch.device("cpu"), protocols=["logreg"], tiny=True, data=None, results=tmp_path)
    rec = json.loads(path.read_text())
    assert rec["kind"] == "bench.feature_dtype" and rec["protocol"] == "sklearn-logreg" and rec["n_train"] == 2000
    assert rec["feature_rel_diff"] > 1e-4
    assert rec["delta_points"] == pytest.approx(100 * (rec["top1_bfloat16"] - rec["top1_float32"]))
    assert rec["within_target"] == (abs(rec["delta_points"]) <= 0.1)
