"""Export one encoder of our run or of an official checkpoint to Hugging Face or timm.

The target encoder by default, as the paper evaluates (the HF and timm conversions of the
official weights hold the context encoder, `encoder`). The folder gets the library's files
and a model card (README.md) saying which encoder it is, the run's config and the eval
numbers recorded for exactly these weights (records whose `encoder_key` is their digest and
checkpoint key, `encoder.source.key`). A Hugging Face folder also gets `preprocessor_config.json`,
our eval transform as transformers' `BitImageProcessor` (short-side resize, center crop, the
encoder's normalisation), so `AutoImageProcessor.from_pretrained(folder)` prepares images as the
evals do.
It is written beside its destination and renamed into place, so a failed export leaves
nothing behind; folders and files get the usual modes (0777 / 0666 less the umask).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ijepa.atomic import atomic_write
from ijepa.models.which import resolve_which
from ijepa.results.io import read_records

if TYPE_CHECKING:
    from ijepa.models.vit import VisionTransformer

FORMATS = ("hf", "timm")
ENCODERS = {
    "target_encoder": "the target (EMA) encoder, the one the I-JEPA paper evaluates",
    "encoder": "the context encoder (what the Hugging Face and timm conversions of the official weights hold)",
}


def export_encoder(
    source: str | Path, *, fmt: str, out: str | Path, which: str = "target_encoder",
    results_dir: Path = Path("results"), num_heads: int | None = None,
) -> Path:
    """Write `which` encoder of `source` (run dir, checkpoint, official .pth.tar) to `out` in
    `fmt` ("hf" or "timm") with a model card; returns `out`. The options are checked before
    torch is imported, so a wrong one answers at once."""
    if fmt not in FORMATS:
        raise ValueError(f"--format={fmt!r}: expected one of {', '.join(FORMATS)}")
    which = resolve_which(which, option="--which")  # the card and records use the checkpoint's key
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not empty; choose a new --out")
    from ijepa.models import interop
    from ijepa.models.checkpoint import open_checkpoint
    from ijepa.models.load import encoder_from_checkpoint

    file, source_fmt, ckpt = open_checkpoint(source)
    if source_fmt != "torch":
        raise ValueError(f"{file}: already a {source_fmt} model; export reads our runs and official checkpoints")
    enc = encoder_from_checkpoint(file, source_fmt, ckpt, which, num_heads=num_heads)
    mean, std = normalisation(ckpt, enc.in_chans)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if fmt == "hf":
            interop.save_hf(enc, tmp)
            processor = json.dumps(preprocessor_config(enc, mean, std), indent=2)
            atomic_write(tmp / "preprocessor_config.json", lambda f: f.write(processor + "\n"))
        else:
            interop.save_timm(enc, tmp, mean=mean, std=std)
        card = model_card(file, ckpt, enc, fmt=fmt, which=which, out=out, mean=mean, std=std, results_dir=results_dir)
        atomic_write(tmp / "README.md", lambda f: f.write(card))
        usual_modes(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def normalisation(ckpt: dict, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalisation the encoder was trained with, one value per input channel."""
    from ijepa.data import fashion_mnist
    from ijepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    cfg = ckpt.get("config")
    gray = isinstance(cfg, dict) and cfg.get("data", {}).get("dataset") == "fashion-mnist"
    mean, std = (fashion_mnist.MEAN, fashion_mnist.STD) if gray else (IMAGENET_MEAN, IMAGENET_STD)
    if len(mean) == in_chans:
        return mean, std
    if in_chans == 1:  # RGB statistics, grayscale input: their mean (as the eval transforms)
        return (sum(mean) / 3,), (sum(std) / 3,)
    return mean * in_chans, std * in_chans


def preprocessor_config(enc: VisionTransformer, mean: tuple[float, ...], std: tuple[float, ...]) -> dict[str, Any]:
    """`eval_transform` at the encoder's native size as transformers' BitImageProcessor:
    the short side resized (bilinear, antialiased) to `eval_resize`, a center crop to the
    grid, [0, 1], then the normalisation. A one-channel encoder takes grayscale ("L") images."""
    from ijepa.data.transforms import eval_resize

    (gh, gw), p = enc.grid, enc.patch_size
    return {
        "image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": eval_resize(max(gh, gw) * p)},
        "resample": 2, "do_center_crop": True, "crop_size": {"height": gh * p, "width": gw * p}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(mean), "image_std": list(std),
        "do_convert_rgb": enc.in_chans == 3,
    }


def usual_modes(folder: Path) -> None:
    """mkdtemp makes the folder 0700 and some writers their files 0600: give the export the
    modes a plain `mkdir` and `open` would (0777 and 0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def recorded_evals(key: str, results_dir: Path) -> list[dict[str, Any]]:
    """Table rows of the records of exactly these weights (`key`: the evals' `encoder_key`)."""
    from ijepa.results.tables import rows_of

    if not (results_dir / "records").is_dir():
        return []
    recs = [r for r in read_records(results_dir) if str(r.get("encoder_key", "")).split("-pos")[0] == key]
    return [row for r in recs for row in rows_of(r)]


def model_card(
    file: Path, ckpt: dict, enc: VisionTransformer, *, fmt: str, which: str, out: Path,
    mean: tuple[float, ...], std: tuple[float, ...], results_dir: Path,
) -> str:
    (gh, gw), p = enc.grid, enc.patch_size
    size = f"{gh * p}x{gw * p}"
    source = ("our run" if isinstance(ckpt.get("config"), dict) else
              "an official I-JEPA checkpoint" if "target_encoder" in ckpt else "an encoder state dict")
    lines = [
        f"# I-JEPA ViT ({enc.embed_dim} wide, {enc.depth} deep, patch {p}, {size} px, {enc.in_chans} channel(s))", "",
        f"- Encoder: **{which}**, {ENCODERS[which]}." if which in ckpt else
        "- Encoder: the one encoder of an encoder state dict (which one the file does not say).",
        f"- Source: `{file}`, {source}" + "".join(f", {k} {ckpt[k]}" for k in ("step", "epoch") if k in ckpt) + ".",
        f"- Architecture: width {enc.embed_dim}, depth {enc.depth}, {enc.num_heads} heads, MLP "
        f"{enc.blocks[0].mlp.fc1.out_features}, patch {p}, grid {gh}x{gw}, LayerNorm eps {enc.norm.eps:g}, "
        "no class token; features are the last block's LayerNorm-ed patch tokens (average them for a global one).",
        f"- Input: {size} px, {enc.in_chans} channel(s), normalised with mean {list(mean)}, std {list(std)}.",
        "", "## Load", "", "```python", *loaders(enc, fmt, out), "```", "", NOTES[fmt], "",
        "## Training config", "",
    ]
    if isinstance(ckpt.get("config"), dict):
        lines += ["```yaml", yaml.safe_dump(ckpt["config"], sort_keys=False).rstrip(), "```"]
    else:
        lines += ["None recorded in the checkpoint."]
    lines += ["", "## Recorded evaluations", ""]
    rows = recorded_evals(enc.source.key, results_dir)
    if rows:
        lines += ["A `(subset)` metric was measured on part of a split: `--train-limit` / `--eval-limit` say how much.", "",
                  "| eval | dataset | protocol | train limit | eval limit | metric | value | selected on | reported on | record |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['kind']} | {r['dataset']} | {r['protocol'] or '-'} | {r['train_limit'] or 'all'} | {r['eval_limit'] or 'all'} | "
                  f"{r['metric']} | {r['value']:.2f} | {r['selected_on']} | {r['reported_on']} | {r['record']} |" for r in rows]
    else:
        lines += [f"No eval records of these weights under `{results_dir}/records`."]
    return "\n".join(lines) + "\n"


def loaders(enc: VisionTransformer, fmt: str, out: Path) -> list[str]:
    """The documented calls that load the exported folder (both are tested)."""
    from ijepa.models import interop

    if fmt == "hf":
        mode = "L" if enc.in_chans == 1 else "RGB"
        return ["from PIL import Image", "from transformers import AutoImageProcessor, IJepaModel",
                f'model = IJepaModel.from_pretrained("{out}").eval()',
                f'processor = AutoImageProcessor.from_pretrained("{out}")  # resize, center crop, normalise as the evals do',
                f'pixel_values = processor(Image.open("image.png").convert("{mode}"), return_tensors="pt").pixel_values',
                "tokens = model(pixel_values).last_hidden_state  # [B, N, D]"]
    arch, args = interop.timm_args(enc)
    kw = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return ["import timm", f'model = timm.create_model("local-dir:{out}", pretrained=True).eval()',
            "# or, naming the architecture (the shape is in model_args, config.json):",
            f'model = timm.create_model("{arch}", pretrained=True, num_classes=0, '
            f'pretrained_cfg_overlay=dict(file="{out}/model.safetensors", num_classes=0), {kw}).eval()',
            "tokens = model.forward_features(images)  # [B, N, D]; model(images) averages them"]


NOTES = {
    "hf": ("At the native size the features equal ours (checked before writing). At other sizes "
           "(`interpolate_pos_encoding=True`) transformers resizes the position table its own way "
           "(bicubic, no antialias, square tables only), so features there differ from ijepa's."),
    "timm": ("`model_args` rebuild the exact shape; `dynamic_img_size=True`: other sizes resample the "
             "position table as ijepa does, so features match ours at any size (checked at the native one before writing)."),
}
