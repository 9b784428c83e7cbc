"""Benchmarks: FLOP counter vs closed form, throughput record fields, the --json contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ijepa.bench.flops import count_flops, inference_flops, measure_flops, step_flops
from ijepa.bench.harness import build_harness
from ijepa.bench.throughput import measure_throughput
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
    with pytest.raises(ValueError, match="--device meta"):
        measure_throughput(tiny_cfg(), method="mae", steps=1, device=torch.device("meta"))


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
    assert rec["kind"] == "bench.throughput" and rec["img_per_s"] > 0
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
    assert abs(rec["closed_form_rel_diff"]) < 0.02
    # Per ViT-H/14 block at 224: 2*256*1280*(4*1280 + 2*5120) + 4*256^2*1280 = 10.41 GFLOPs (x32 blocks
    # + patch embedding = 333.6 GFLOPs, the usual "167 GMACs"); 2 blocks + patch embedding: 21.2.
    assert 21.0e9 < rec["inference_flops_per_image"] < 21.4e9


def test_cli_bad_method_is_one_error_line(tmp_path):
    res = _cli(["bench", "flops", "--method", "byol", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "--method 'byol'" in res.output


def _official_step_module():
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / "official_step.py"
    spec = importlib.util.spec_from_file_location("official_step", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    from ijepa.results.plots import compute_points, plot_compute

    for run, method, flops, top1 in (("a", "ijepa", 1e12, 0.7), ("b", "mae", 1e12, 0.6), ("c", "mae", 2e12, None)):
        write_record({"kind": "pretrain.compute", "encoder": run, "run": run, "method": method,
                      "pretrain_flops": flops, "pretrain_wall_s": 10.0}, results_dir=tmp_path)
        if top1 is not None:
            write_record({"kind": "eval.linear", "encoder": f"{run}:target_encoder", "dataset": "fashion-mnist", "top1": top1},
                         results_dir=tmp_path)
    for ds in ("fashion-mnist", "imagefolder:/x"):
        write_record({"kind": "eval.linear", "encoder": f"random:vit_tiny-{ds}", "dataset": ds, "top1": 0.5}, results_dir=tmp_path)
    from ijepa.results.io import read_records

    points, randoms = compute_points(read_records(tmp_path))
    assert sorted((p["run"], p["method"], p["gflops"], p["top1"]) for p in points) == [("a", "ijepa", 1000.0, 70.0), ("b", "mae", 1000.0, 60.0)]
    assert [r["dataset"] for r in randoms] == ["fashion-mnist"]
    out = plot_compute(tmp_path)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no pretrain.compute"):
        plot_compute(tmp_path / "empty")
