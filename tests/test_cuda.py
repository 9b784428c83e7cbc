"""CUDA against CPU: the Trainer's optimizer step, bf16 autocast, load_encoder + features, nccl DDP.

Selected by `pytest -m cuda` (benchmarks/gpu_check.sh runs them); skipped without CUDA.
fp32 comparisons run with TF32 off (cuBLAS and cuDNN), so both devices do fp32 arithmetic
and differ only by summation order and kernels. Tolerances:
- loss of a step: relative 1e-5;
- gradients (read in the optimizer's step pre-hook): per tensor ||cuda - cpu|| / ||cpu|| <= 1e-4;
- weights after the step (AdamW + EMA), per tensor, on the elements whose gradient exceeds
  1e-6 x the tensor's largest: ||cuda - cpu|| <= 1e-3 ||update|| + 4 eps32 ||weights||, the
  update being (after - before) on the CPU and the last term fp32's own rounding of the
  weights (an EMA step moves a weight of 1.0 by ~1e-5, near its ulp). Elsewhere |cuda - cpu|
  <= 2.1 lr: Adam divides each gradient by its own magnitude, so a gradient at rounding
  level (the attention key bias's, zero in exact arithmetic) moves by +-lr on either device.
  fp32 CPU against fp64 CPU reaches 6% of this bound; a wrong kernel or a dropped term, O(1);
- encoder tokens and pooled features: rtol 1e-4, atol 1e-5;
- bf16 autocast against fp32 over 50 steps from the same init and batches: every loss
  finite, mean |relative difference| of the last 10 losses <= 5% and every one <= 15%.
"""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
from fixtures.pretrain import tiny_config
from torch.nn.parallel import DistributedDataParallel as DDP

import ijepa
from ijepa.bench.harness import draw_masks
from ijepa.evals.core.features import pooled
from ijepa.training.loop import build_method, build_optimizer, optimizer_step

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
SMALL = {"depth": 2, "dec_depth": 1, "dec_emb_dim": 64}
LR, WD, MOMENTUM = 1e-3, 0.04, 0.99


@pytest.fixture
def exact_fp32():
    """fp32 as fp32 on the GPU: no TF32 in matmuls or convolutions (restored afterwards)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def build(cfg, method: str, device: torch.device, *, seed: int = 0):
    """The Trainer's model and fused AdamW, initialised on the CPU (same weights everywhere)."""
    torch.manual_seed(seed)
    model = build_method(cfg, method).to(device)
    modules = dict(model.trainable())
    return model, modules, build_optimizer(modules, fused=True)


def batch(cfg, n: int = 1, *, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s, c = cfg.data.crop_size, cfg.meta.in_chans
    return [torch.randn(cfg.data.batch_size, c, s, s, generator=g) for _ in range(n)]


def run_steps(cfg, method: str, device: torch.device, imgs: list[torch.Tensor], masks: list, *, bf16: bool = False,
              grads: bool = False) -> tuple[list[float], dict[str, torch.Tensor], dict[str, torch.Tensor], torch.nn.Module]:
    """optimizer_step once per image batch; (losses, CPU copies of the last step's grads, of
    the weights before the first step, the model)."""
    model, modules, opt = build(cfg, method, device)
    names = {id(p): f"{k}.{n}" for k, m in modules.items() for n, p in m.named_parameters()}
    seen: dict[str, torch.Tensor] = {}
    if grads:
        def grab(optimizer, args, kwargs) -> None:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        seen[names[id(p)]] = p.grad.detach().cpu().clone()

        opt.register_step_pre_hook(grab)
    before = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    losses = []
    for x, (me, mp) in zip(imgs, masks, strict=True):
        micro = [(x.to(device), [m.to(device) for m in me], [m.to(device) for m in mp])]
        loss, _ = optimizer_step(model, modules, opt, micro, lr=LR, wd=WD, momentum=MOMENTUM, autocast=autocast)
        losses.append(float(loss))
    return losses, seen, before, model


def rel(a: torch.Tensor, b: torch.Tensor, ref: torch.Tensor | None = None) -> float:
    """||a - b|| / ||ref|| (ref defaults to b), in float64."""
    ref = b if ref is None else ref
    return float((a.double() - b.double()).norm() / ref.double().norm().clamp_min(1e-30))


@pytest.mark.parametrize("method", ["ijepa", "mae"])
def test_fp32_step_on_cuda_equals_the_cpu_step(tmp_path, exact_fp32, method):
    cfg = tiny_config(tmp_path, meta=SMALL)
    imgs, masks = batch(cfg), draw_masks(cfg, method, 1, CPU)
    loss_cpu, g_cpu, before, m_cpu = run_steps(cfg, method, CPU, imgs, masks, grads=True)
    loss_gpu, g_gpu, _, m_gpu = run_steps(cfg, method, CUDA, imgs, masks, grads=True)
    assert loss_gpu[0] == pytest.approx(loss_cpu[0], rel=1e-5)
    assert g_cpu.keys() == g_gpu.keys() and len(g_cpu) > 10
    worst = max(g_cpu, key=lambda k: rel(g_gpu[k], g_cpu[k]))
    assert rel(g_gpu[worst], g_cpu[worst]) <= 1e-4, worst
    after_cpu, after_gpu = m_cpu.state_dict(), m_gpu.state_dict()
    moved = [k for k in after_cpu if not torch.equal(after_cpu[k], before[k])]
    assert moved, "the step changed no weight"
    eps = torch.finfo(torch.float32).eps
    for k in moved:  # trained weights, and the EMA target for I-JEPA (masked by its encoder's gradient)
        g = g_cpu[k.replace("target_encoder.", "encoder.", 1)].abs()
        keep = g > 1e-6 * g.max()
        w, d = after_cpu[k].double(), after_gpu[k].cpu().double() - after_cpu[k].double()
        update = w - before[k].double()
        assert d[keep].norm() <= 1e-3 * update[keep].norm() + 4 * eps * w[keep].norm(), k
        assert not (~keep).any() or d[~keep].abs().max() <= 2.1 * LR, k


@pytest.mark.parametrize("method", ["ijepa", "mae"])
def test_bf16_autocast_stays_finite_and_tracks_fp32(tmp_path, method):
    cfg = tiny_config(tmp_path, meta=SMALL)
    n = 50
    imgs, masks = batch(cfg, n), draw_masks(cfg, method, n, CPU)
    fp32, *_ = run_steps(cfg, method, CUDA, imgs, masks)
    bf16, *_ = run_steps(cfg, method, CUDA, imgs, masks, bf16=True)
    assert all(map(torch.isfinite, torch.tensor(bf16))), bf16
    diffs = [abs(b / f - 1) for b, f in zip(bf16, fp32, strict=True)]
    assert sum(diffs[-10:]) / 10 <= 0.05 and max(diffs) <= 0.15, list(zip(fp32, bf16, strict=True))
    assert bf16[-1] < bf16[0]  # it trains, in bf16 too


def test_load_encoder_and_features_on_cuda_equal_cpu(tmp_path, exact_fp32):
    cfg = tiny_config(tmp_path, meta=SMALL)
    model = build_method(cfg, "ijepa")
    path = tmp_path / "checkpoint.pt"
    torch.save({**{k: getattr(model, k).state_dict() for k in model.checkpoint_keys}, "config": cfg.to_dict(), "step": 0}, path)
    enc_cpu = ijepa.load_encoder(path)
    enc_gpu = copy.deepcopy(enc_cpu).to(CUDA)
    x = batch(cfg)[0]
    with torch.inference_mode():
        torch.testing.assert_close(enc_gpu(x.to(CUDA)).cpu(), enc_cpu(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(pooled(enc_gpu, x.to(CUDA)).cpu(), pooled(enc_cpu, x), rtol=1e-4, atol=1e-5)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert torch.isfinite(pooled(enc_gpu, x.to(CUDA))).all()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_path_initialises_nccl_in_a_one_process_group(tmp_path, exact_fp32):
    """The Trainer's DDP wrapping (accumulation: no static graph, `no_sync` on the first
    micro-batch) in a one-process nccl group equals the plain step."""
    cfg = tiny_config(tmp_path, meta=SMALL)
    imgs, masks = batch(cfg, 2), draw_masks(cfg, "ijepa", 2, CUDA)
    micro = [(x.to(CUDA), me, mp) for x, (me, mp) in zip(imgs, masks, strict=True)]
    os.environ.setdefault("NCCL_DEBUG", "WARN")
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        assert dist.get_backend() == "nccl" and dist.get_world_size() == 1
        ref_model, ref_modules, ref_opt = build(cfg, "ijepa", CUDA)
        model, modules, opt = build(cfg, "ijepa", CUDA)
        wrapped = {k: DDP(m, device_ids=[CUDA.index or 0], static_graph=False) for k, m in modules.items()}
        off = torch.autocast("cuda", enabled=False)
        kw = dict(lr=LR, wd=WD, momentum=MOMENTUM, autocast=off)
        loss_ref, _ = optimizer_step(ref_model, ref_modules, ref_opt, micro, **kw)
        loss, _ = optimizer_step(model, wrapped, opt, micro, ddp=True, **kw)
        torch.testing.assert_close(loss, loss_ref)
        for (k, a), b in zip(model.state_dict().items(), ref_model.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)
        t = torch.ones(3, device=CUDA)
        dist.all_reduce(t)
        assert t.tolist() == [1.0, 1.0, 1.0]
    finally:
        dist.destroy_process_group()


def test_ijepa_harness_on_cuda_leaves_cudnn_attention_off(tmp_path):
    """Variable mask lengths: cuDNN's per-shape plans made ViT-B/16 3x slower on an H200."""
    from ijepa.bench.harness import build_harness

    build_harness(tiny_config(tmp_path, meta=SMALL), "ijepa", device=CUDA)
    assert not torch.backends.cuda.cudnn_sdp_enabled()
