"""`ijepa eval segmentation | depth | counting`: dense transfer on ADE20K, NYU v2, FSC-147
(or COCO-style counting data).

Same encoder flags, `--config` recipe and `--json` record as the other evals
(`ijepa.cli.evals`); recipe keys are the run dataclass fields (`SegRun`, `DepthRun`,
`CountRun`), flags override them. `--img-size` is the train crop / eval short side, and the
random-init encoder's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ijepa.cli import USER_ERRORS, eval_app, fail
from ijepa.cli.evals import (
    AsJson,
    Config,
    Depth,
    Device,
    Encoder,
    PatchSize,
    RandomInit,
    Results,
    Which,
    common,
    finish,
)

Opt = typer.Option
ImgSize = Annotated[int | None, Opt(help="Train crop / eval short side (and the random-init size)")]
InChans = Annotated[int, Opt(help="Input channels (random init); images are read as RGB, grey when 1")]
MaxIters = Annotated[int | None, Opt(help="Training iterations")]
BatchSize = Annotated[int | None, Opt(help="Images per iteration")]
Lr = Annotated[float | None, Opt(help="Head learning rate (encoder groups get layer decay)")]
Finetune = Annotated[bool | None, Opt("--finetune/--frozen", help="Fine-tune the encoder with layer-wise lr decay (default: frozen)")]
LayerDecay = Annotated[float | None, Opt(help="Layer-wise lr decay when fine-tuning")]
Taps = Annotated[str | None, Opt(help="Comma-separated blocks to tap (default: 4 evenly spaced, last included)")]
MaxEval = Annotated[int | None, Opt(help="Score only the first N images of each eval split")]
Workers = Annotated[int | None, Opt(help="DataLoader workers")]
Seed = Annotated[int | None, Opt(help="Seed of the heads and the data order")]


def _taps(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--taps {text!r}: expected comma-separated block indices") from None


def _run(cls: type, config: Path | None, flags: dict[str, Any], encoder_flags: tuple, device: str) -> tuple[Any, dict]:
    """(run config from recipe + flags, shared encoder/device kwargs)."""
    from ijepa.evals.dense.setup import load_run

    finetune = flags.pop("finetune")
    flags["mode"] = None if finetune is None else ("finetune" if finetune else "frozen")
    flags["taps"] = _taps(flags["taps"])
    run = load_run(cls, config, **flags)
    if not run.data:
        raise ValueError("--data is required (or `data:` in the recipe)")
    encoder, random_init, patch_size, in_chans, depth, which = encoder_flags
    import torch

    kw = common(encoder, random_init, run.img_size, patch_size, in_chans, depth, which, device, None, True)
    return run, {**kw, "device": torch.device(kw["device"])}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


@eval_app.command("segmentation")
def segmentation(
    encoder: Encoder = None, random_init: RandomInit = None, img_size: ImgSize = None, patch_size: PatchSize = 16,
    in_chans: InChans = 3, depth: Depth = 0, which: Which = "target_encoder",
    data: Annotated[str | None, Opt(help="ADEChallengeData2016 root (images/ + annotations/, training/ + validation/)")] = None,
    config: Config = None, max_iters: MaxIters = None, batch_size: BatchSize = None, lr: Lr = None,
    head: Annotated[str | None, Opt(help="linear (DINOv2 lin.) or upernet (BEiT/MAE)")] = None,
    num_classes: Annotated[int | None, Opt(help="Classes after reduce-zero-label (ADE20K: 150)")] = None,
    finetune: Finetune = None, layer_decay: LayerDecay = None, taps: Taps = None, max_eval_images: MaxEval = None,
    workers: Workers = None, seed: Seed = None, device: Device = "auto", as_json: AsJson = False, results: Results = Path("results"),
) -> None:
    """Train a segmentation head (linear or UperNet); sliding-window mIoU / mAcc / aAcc on validation."""
    from ijepa.evals.segmentation import SegRun, run_segmentation

    flags = dict(data=data, img_size=img_size, max_iters=max_iters, batch_size=batch_size, lr=lr, head=head, num_classes=num_classes,
                 finetune=finetune, layer_decay=layer_decay, taps=taps, max_eval_images=max_eval_images, workers=workers, seed=seed)
    try:
        run, kw = _run(SegRun, config, flags, (encoder, random_init, patch_size, in_chans, depth, which), device)
        rec = run_segmentation(kw["encoder"], run, device=kw["device"], console=kw["console"])
    except USER_ERRORS as e:
        fail(e)
    rows = [("mIoU", _pct(rec["miou"])), ("mAcc", _pct(rec["macc"])), ("aAcc", _pct(rec["aacc"])),
            ("head / backbone", f"{run.head} / {run.mode}"), ("train / val images", f"{rec['n_train']} / {rec['n_val']}")]
    finish(rec, as_json, results, rows)


@eval_app.command("depth")
def depth_cmd(
    encoder: Encoder = None, random_init: RandomInit = None, img_size: ImgSize = None, patch_size: PatchSize = 16,
    in_chans: InChans = 3, depth: Depth = 0, which: Which = "target_encoder",
    data: Annotated[str | None, Opt(help="NYU root with nyu_{train,test}.txt file lists, or nyu_depth_v2_labeled.mat (splits.mat beside it)")] = None,
    config: Config = None, max_iters: MaxIters = None, batch_size: BatchSize = None, lr: Lr = None,
    head: Annotated[str | None, Opt(help="lin1, lin4 (DINOv2 linear, 256 bins) or dpt")] = None,
    max_depth: Annotated[float | None, Opt(help="Depth cap in metres (NYU: 10)")] = None,
    finetune: Finetune = None, layer_decay: LayerDecay = None, taps: Taps = None, max_eval_images: MaxEval = None,
    workers: Workers = None, seed: Seed = None, device: Device = "auto", as_json: AsJson = False, results: Results = Path("results"),
) -> None:
    """Train a depth head; AbsRel, RMSE, delta<1.25^k ... on the Eigen crop of the test split."""
    from ijepa.evals.depth import DepthRun, run_depth

    flags = dict(data=data, img_size=img_size, max_iters=max_iters, batch_size=batch_size, lr=lr, head=head, max_depth=max_depth,
                 finetune=finetune, layer_decay=layer_decay, taps=taps, max_eval_images=max_eval_images, workers=workers, seed=seed)
    try:
        run, kw = _run(DepthRun, config, flags, (encoder, random_init, patch_size, in_chans, depth, which), device)
        rec = run_depth(kw["encoder"], run, device=kw["device"], console=kw["console"])
    except USER_ERRORS as e:
        fail(e)
    rows = [(k, f"{rec[k]:.4f}") for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10")]
    rows += [(f"delta<1.25^{i}", _pct(rec[f"d{i}"])) for i in (1, 2, 3)]
    rows += [("head / backbone", f"{run.head} / {run.mode}"), ("train / test images", f"{rec['n_train']} / {rec['n_test']}")]
    finish(rec, as_json, results, rows)


@eval_app.command("counting")
def counting(
    encoder: Encoder = None, random_init: RandomInit = None, img_size: ImgSize = None, patch_size: PatchSize = 16,
    in_chans: InChans = 3, depth: Depth = 0, which: Which = "target_encoder",
    data: Annotated[str | None, Opt(help="FSC-147 root (images_384_VarV2/, gt_density_map_adaptive_384_VarV2/, the two JSON files) or a COCO-style one (images/, annotations/instances_{train,val,test}.json)")] = None,
    config: Config = None, max_iters: MaxIters = None, batch_size: BatchSize = None, lr: Lr = None,
    head: Annotated[str | None, Opt(help="exemplar (conditioned on the 3 boxes) or plain")] = None,
    finetune: Finetune = None, layer_decay: LayerDecay = None, taps: Taps = None, max_eval_images: MaxEval = None,
    workers: Workers = None, seed: Seed = None, device: Device = "auto", as_json: AsJson = False, results: Results = Path("results"),
) -> None:
    """Train a density head on frozen features; count MAE / RMSE on val and test."""
    from ijepa.evals.counting import CountRun, run_counting

    flags = dict(data=data, img_size=img_size, max_iters=max_iters, batch_size=batch_size, lr=lr, head=head,
                 finetune=finetune, layer_decay=layer_decay, taps=taps, max_eval_images=max_eval_images, workers=workers, seed=seed)
    try:
        run, kw = _run(CountRun, config, flags, (encoder, random_init, patch_size, in_chans, depth, which), device)
        rec = run_counting(kw["encoder"], run, device=kw["device"], console=kw["console"])
    except USER_ERRORS as e:
        fail(e)
    rows = [("test MAE / RMSE", f"{rec['mae']:.2f} / {rec['rmse']:.2f}"), ("val MAE / RMSE", f"{rec['val_mae']:.2f} / {rec['val_rmse']:.2f}"),
            ("mean-count baseline (test MAE / RMSE)", f"{rec['baseline_test_mae']:.2f} / {rec['baseline_test_rmse']:.2f}"),
            ("head / backbone", f"{run.head} / {run.mode}"), ("train / val / test images", f"{rec['n_train']} / {rec['n_val']} / {rec['n_test']}")]
    finish(rec, as_json, results, rows)
