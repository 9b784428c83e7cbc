"""`ijepa eval detection`: Mask R-CNN (boxes + instance masks) on a COCO-layout dataset.

Same encoder flags, `--config` recipe and `--json` record as the classification evals
(`ijepa.cli.evals`); recipe keys are `DetectionConfig` fields, flags override them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    merged,
    recipe,
)

Opt = typer.Option


def _ap(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


@eval_app.command("detection")
def detection(
    encoder: Encoder = None, random_init: RandomInit = None,
    img_size: Annotated[int | None, Opt(help="Input size: long side, padded square (recipe default 256; ViTDet 1024); also the random-init size")] = None,
    patch_size: PatchSize = 16,
    in_chans: Annotated[int, Opt(help="Input channels (random init); COCO images are read as RGB, or grayscale when 1")] = 3,
    depth: Depth = 0, which: Which = "target_encoder",
    data: Annotated[Path, Opt(help="COCO-layout root: annotations/instances_{train,val}2017.json + {train,val}2017/")] = ...,
    config: Config = None,
    max_iters: Annotated[int | None, Opt(help="Training iterations")] = None,
    batch_size: Annotated[int | None, Opt(help="Images per iteration")] = None,
    lr: Annotated[float | None, Opt(help="Base learning rate (heads; encoder groups get layer decay)")] = None,
    finetune: Annotated[bool | None, Opt("--finetune/--frozen", help="Fine-tune the encoder with layer-wise lr decay (default: frozen)")] = None,
    layer_decay: Annotated[float | None, Opt(help="Layer-wise lr decay when fine-tuning (ViTDet ViT-B: 0.7)")] = None,
    max_val_images: Annotated[int | None, Opt(help="Score only the first N val images (0 = all)")] = None,
    workers: Annotated[int | None, Opt(help="DataLoader workers")] = None,
    seed: Annotated[int | None, Opt(help="Seed of the heads and the data order")] = None,
    device: Device = "auto", as_json: AsJson = False, results: Results = Path("results"),
) -> None:
    """Train Mask R-CNN on the ViTDet pyramid over the encoder; COCOeval box and mask AP on val."""
    from ijepa.evals.detection import DetectionConfig, run_detection

    try:
        fields = set(DetectionConfig.__dataclass_fields__)
        cfg = merged(recipe(config), fields, str(config), img_size=img_size, max_iters=max_iters, batch_size=batch_size, lr=lr,
                     layer_decay=layer_decay, max_val_images=max_val_images, workers=workers, seed=seed,
                     mode=None if finetune is None else ("finetune" if finetune else "frozen"))
        cfg = DetectionConfig(**cfg)
        kw = common(encoder, random_init, cfg.img_size, patch_size, in_chans, depth, which, device, None, True)
        rec = run_detection(kw["encoder"], data, cfg, device=kw["device"], console=kw["console"])
    except USER_ERRORS as e:
        fail(e)
    box, mask = rec["box"], rec["mask"]
    rows = [("box AP (%)", _ap(box["ap"])), ("box AP50 / AP75", f"{_ap(box['ap50'])} / {_ap(box['ap75'])}"),
            ("box AP S / M / L", " / ".join(_ap(box[k]) for k in ("ap_s", "ap_m", "ap_l"))),
            ("mask AP (%)", _ap(mask["ap"])), ("mask AP50 / AP75", f"{_ap(mask['ap50'])} / {_ap(mask['ap75'])}"),
            ("backbone", rec["config"]["mode"]), ("train / val images", f"{rec['n_train']} / {rec['n_val']}"),
            ("train / eval time", f"{rec['train_s']:.1f} s / {rec['eval_s']:.1f} s")]
    finish(rec, as_json, results, rows)
