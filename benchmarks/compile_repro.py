"""The smallest piece of the I-JEPA step on which a torch.compile form fails (issue 40).

Runs a form of `ijepa.training.compiled.FORMS` on ever larger pieces of the step, at the
widths of the model that failed but one block deep and batch 4, and stops at the first that
fails: the smallest piece that shows the failure.
  block      one predictor block, on random tokens
  predictor  the predictor alone, on random context tokens
  step       encoder + predictor: one optimizer step (forward, backward, AdamW, EMA)
Each piece runs three mask sets (three context lengths) under bf16 autocast on CUDA, fp32
elsewhere. For a failing piece torch's own repro tooling (`repro_after="aot"`, level 1)
writes `repro.py` into `--out/<form>-<piece>/`: the one graph inductor failed on, compiled
alone. One line per piece, and `--out/compile_repro.json`.

    python benchmarks/compile_repro.py --form whole --arch vit_base16 --device cuda --out /tmp/repro
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path

import torch

from ijepa.bench.harness import build_harness, draw_masks
from ijepa.devices import bf16_autocast
from ijepa.training.compiled import FORMS, compile_modules
from ijepa.training.config import Config, from_dict
from ijepa.training.loop import build_method

ARCHS = {  # (encoder, patch, predictor width, crop): the widths of the failing models, one block deep
    "vit_base16": ("vit_base", 16, 384, 224), "vit_huge14": ("vit_huge", 14, 384, 224), "tiny": ("vit_tiny", 4, 96, 32),
}
PIECES = ("block", "predictor", "step")
BATCH, SETS = 4, 3


def piece_config(arch: str) -> Config:
    name, patch, pred_dim, crop = ARCHS[arch]
    return from_dict({"data": {"crop_size": crop, "batch_size": BATCH}, "mask": {"patch_size": patch},
                      "meta": {"model_name": name, "depth": 1, "pred_depth": 1, "pred_emb_dim": pred_dim, "compile": True}})


def run_piece(piece: str, form: str, cfg: Config, device: torch.device, backend: str) -> None:
    """Compile `piece` in `form` and run it forward and backward on SETS mask sets."""
    buckets = FORMS[form].buckets
    if piece == "step":
        h = build_harness(cfg, "ijepa", device=device, n_masks=SETS, compile_backend=backend, compile_form=form, buckets=buckets)
        for i in range(SETS):
            h.step(i)
        return
    with device:
        pred = build_method(cfg, "ijepa").predictor
    autocast, _ = bf16_autocast(device, use_bfloat16=True, cpu_bfloat16=False)
    module = pred if piece == "predictor" else pred.predictor_blocks[0]
    (run,) = compile_modules({piece: module}, form, backend=backend).values()
    for me, mp in draw_masks(cfg, "ijepa", SETS, device, buckets=buckets):
        n = me[0].size(1) + (0 if piece == "predictor" else mp[0].size(1))
        width = pred.embed_dim if piece == "predictor" else pred.predictor_embed_dim
        x = torch.randn(BATCH, n, width, device=device, requires_grad=True)
        with autocast:
            out = run(x, me, mp) if piece == "predictor" else run(x)
        out.float().square().mean().backward()


def try_piece(piece: str, form: str, cfg: Config, device: torch.device, backend: str, out: Path) -> dict:
    """{piece, ok, seconds, error, repro}: the piece run in its own folder (where repro.py lands)."""
    folder = out / f"{form}-{piece}"
    folder.mkdir(parents=True, exist_ok=True)
    torch._dynamo.reset()
    cwd, t0, row = os.getcwd(), time.perf_counter(), {"form": form, "piece": piece}
    try:
        os.chdir(folder)
        run_piece(piece, form, cfg, device, backend)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        row.update(ok=True, error=None)
    except Exception as e:  # the compiler's failure is the result
        row.update(ok=False, error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}",
                   traceback_tail=traceback.format_exc().splitlines()[-12:])
    finally:
        os.chdir(cwd)
    repro = folder / "repro.py"
    row.update(seconds=round(time.perf_counter() - t0, 1), repro=str(repro) if repro.exists() else None)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--form", nargs="+", choices=sorted(FORMS), required=True)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="vit_base16")
    ap.add_argument("--pieces", nargs="+", choices=PIECES, default=list(PIECES))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default="inductor", help="inductor; eager or aot_eager for CPU dry runs")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    device, cfg = torch.device(a.device), piece_config(a.arch)
    a.out = a.out.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    torch._dynamo.config.repro_after, torch._dynamo.config.repro_level = "aot", 1
    torch._dynamo.config.debug_dir_root = str(a.out / "torch_compile_debug")
    rows = []
    for form in a.form:
        for piece in a.pieces:
            r = try_piece(piece, form, cfg, device, a.backend, a.out)
            rows.append(r)  # written after each piece: a run stopped at its limit keeps what it found
            summary = {"arch": a.arch, "batch": BATCH, "device": str(device), "torch": torch.__version__, "rows": rows}
            (a.out / "compile_repro.json").write_text(json.dumps(summary, indent=1))
            print(f"{form} {piece} ({a.arch}, depth 1, batch {BATCH}): {'ok' if r['ok'] else 'FAILED ' + r['error']} "
                  f"[{r['seconds']} s]{' repro: ' + r['repro'] if r['repro'] else ''}", flush=True)
            if not r["ok"]:
                break
        else:
            print(f"{form}: no piece fails at this size", flush=True)


if __name__ == "__main__":
    main()
