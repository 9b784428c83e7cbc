"""A run's decoders: where they live, how they are trained and measured, what they record.

`RUN/decoder/checkpoint.pt` is the decoder of the run's target encoder;
`RUN/decoder/random_init/checkpoint.pt` the same decoder trained on the tokens of the
random-init encoder the run started from (the baseline). `record.json` compares their
reconstructions on val; `measure.json` scores decoded predictions against baselines.
`RUN/decoder/diffusion/` holds the same for the diffusion decoder (`--kind diffusion`),
whose samples `measure.json` scores beside the deterministic decoder's numbers.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from ijepa.atomic import atomic_write, unwritable
from ijepa.data import build_dataset, data_spec, eval_transform
from ijepa.decoder.diffusion import diffusion_dir, load_diffusion_decoder
from ijepa.decoder.diffusion_metrics import measure_samples, sample_reconstruction
from ijepa.decoder.metrics import mean_tokens, measure_predictions, reconstruction_metrics
from ijepa.decoder.model import TokenDecoder, decoder_dir, load_decoder, spec_for
from ijepa.decoder.train import (
    DecoderTrainConfig,
    DecoderTrainer,
    DiffusionTrainConfig,
    DiffusionTrainer,
)
from ijepa.devices import resolve_device
from ijepa.masks import MultiBlockMaskCollator
from ijepa.models.checkpoint import open_checkpoint
from ijepa.models.vit import init_weights
from ijepa.results.io import git_commit
from ijepa.training.data import dataset_root
from ijepa.training.networks import Networks, networks_of, random_networks


def mask_collator(model: Networks, seed: int) -> MultiBlockMaskCollator:
    """The run's own target-block statistics (one context block)."""
    m = model.cfg.mask
    return MultiBlockMaskCollator(
        input_size=model.img_size, patch_size=model.encoder.patch_size, enc_mask_scale=m.enc_mask_scale,
        pred_mask_scale=m.pred_mask_scale, aspect_ratio=m.aspect_ratio, nenc=1, npred=m.num_pred_masks,
        min_keep=m.min_keep, allow_overlap=m.allow_overlap, seed=seed, sampler=m.sampler,
    )


def run_dataset(model: Networks, split: str, data: str | None = None):
    """The run's dataset (or `data`) at the model's size and normalisation, no augmentation."""
    spec = data_spec(data or dataset_root(model.cfg))
    mean, std = model.mean_std
    tf = eval_transform(model.img_size[0], in_chans=model.in_chans, mean=mean, std=std)
    return build_dataset(spec, split, transform=tf), spec


def _shapes(m: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def random_twin(model: Networks) -> Networks:
    """The random init the run started from (its recipe, its seed); for a checkpoint without
    a recipe (official), the same shapes under the official init."""
    twin = random_networks(model.cfg)
    if _shapes(twin.encoder) == _shapes(model.encoder) and _shapes(twin.predictor) == _shapes(model.predictor):
        return twin
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.cfg.meta.seed)
        enc, pred = (copy.deepcopy(m).requires_grad_(False).apply(init_weights) for m in (model.encoder, model.predictor))
    return Networks(enc, pred, copy.deepcopy(enc), model.cfg, f"RANDOM INIT like {model.label}", True)


def _write_json(path: Path, record: dict) -> None:
    stamp = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "git_commit": git_commit()}
    try:
        atomic_write(path, lambda f: f.write(json.dumps({**stamp, **record}, indent=1) + "\n"))
    except OSError as e:
        raise ValueError(unwritable(path, "the decoder record", e)) from None


def publish(record: dict, results: str | Path) -> Path:
    """The run's decoder record as a results record too (`results/records/decoder.*/`), with its
    headline at the top level, so the tables and the README read it like every other record."""
    from ijepa.results.io import write_record

    if record["kind"] == "decoder.train":
        top = {"headline": "val_ssim", "unit": "value", "val_ssim": record["trained"]["ssim"], "val_mse": record["trained"]["mse"]}
        if "random_init" in record:
            top["random_init_val_ssim"] = record["random_init"]["ssim"]
    else:
        top = {"headline": "retrieval_top1", "unit": "fraction", "retrieval_top1": record["retrieval"]["prediction"]["block_top1"],
               "pred_pixel_mse": record["pixel_mse"]["prediction"]}
    which = "" if record.get("decoder_kind", "mean") == "mean" else f":{record['decoder_kind']}_decoder"
    return write_record({**record, "encoder": f"{Path(record['run']).name}:target_encoder{which}", **top}, results_dir=Path(results))


def run_model(run: str | Path) -> Networks:
    """The run's three networks; a file with one encoder and no predictor is refused in one line."""
    file, _, ckpt = open_checkpoint(run)
    model = networks_of(file, ckpt)
    if model is None:
        raise ValueError(f"{run}: holds one encoder and no predictor; decoders are trained and measured for "
                         "I-JEPA runs (encoder, predictor, target_encoder)")
    return model


KINDS = {"mean": (DecoderTrainConfig, DecoderTrainer), "diffusion": (DiffusionTrainConfig, DiffusionTrainer)}


def train_decoders(run: str | Path, tc: DecoderTrainConfig | None = None, *, kind: str = "mean", data: str | None = None,
                   device: str = "cpu", resume: bool = False, baseline: bool = True, val_images: int = 1000,
                   sample_steps: int = 25, console: Console | None = None) -> dict:
    """Train the run's decoder of `kind` (and the random-init baseline), write and return its `record.json`
    (`RUN/decoder/` for "mean", `RUN/decoder/diffusion/` for "diffusion")."""
    if kind not in KINDS:
        raise ValueError(f"decoder kind {kind!r}: expected one of {', '.join(KINDS)}")
    config_cls, trainer_cls = KINDS[kind]
    tc, dev = tc or config_cls(), resolve_device(device)
    if not isinstance(tc, config_cls):
        raise ValueError(f"decoder kind {kind!r} takes a {config_cls.__name__}, given a {type(tc).__name__}")
    model, out = run_model(run), decoder_dir(run) if kind == "mean" else diffusion_dir(run)
    train, spec = run_dataset(model, "train", data)
    val, _ = run_dataset(model, "val", data)
    encoders = {"trained": model.target_encoder}
    if baseline:
        encoders["random_init"] = random_twin(model).target_encoder
    record = {"kind": "decoder.train", "decoder_kind": kind, "run": str(run), **spec.fields(), "train_config": asdict(tc),
              "selected_on": "none (fixed defaults; nothing is chosen on any split)", "reported_on": "val",
              "pixels": "MSE on normalised pixels (the model's input); SSIM on [0, 1] pixels (torchmetrics, data_range 1)"}
    for name, enc in encoders.items():
        dspec = spec_for(enc, str(run), *model.mean_std)
        folder = out if name == "trained" else out / "random_init"
        t0 = time.perf_counter()
        trainer = trainer_cls(enc, dspec, train, mask_collator(model, tc.seed), folder, tc, device=dev, resume=resume)
        decoder = trainer.fit(console, description=f"{kind} decoder ({name} encoder)")
        if kind == "mean":
            metrics = reconstruction_metrics(enc, decoder, val, mask_collator(model, 0), n_images=val_images,
                                             batch_size=tc.batch_size, device=dev)
        else:
            metrics = sample_reconstruction(enc, decoder, val, mask_collator(model, 0), n_images=val_images,
                                            batch_size=tc.batch_size, steps=sample_steps, device=dev)
        record[name] = {**metrics, "encoder_sha256": dspec.encoder_sha256, "checkpoint": str(folder / "checkpoint.pt"),
                        "final_train_loss": trainer.losses[-1][1] if trainer.losses else None,
                        "train_seconds_this_call": round(time.perf_counter() - t0, 1)}
        record["decoder"] = decoder.hparams()
    _write_json(out / "record.json", record)
    return record


def measure_decoded(run: str | Path, *, decoder: str | Path | None = None, data: str | None = None, device: str = "cpu",
                    val_images: int = 1000, mean_images: int = 1000, batch_size: int = 64, seed: int = 0,
                    diffusion_images: int = 128, n_samples: int = 4, sample_steps: int = 25) -> dict:
    """Decoded predictions vs baselines, and retrieval, on val; write and return `measure.json`.

    Where the run has a diffusion decoder (`RUN/decoder/diffusion/`), its samples are measured
    too, on the first `diffusion_images` val images with the same masks (sampling costs
    `n_samples` x `sample_steps` decoder passes per block and token set)."""
    dev = resolve_device(device)
    model, out = run_model(run), decoder_dir(run)
    dec: TokenDecoder = load_decoder(decoder or out, spec_for(model.target_encoder, str(run), *model.mean_std)).to(dev)
    twin = random_twin(model)
    for m in (model.encoder, model.predictor, model.target_encoder, twin.encoder, twin.predictor, twin.target_encoder):
        m.to(dev)
    train, spec = run_dataset(model, "train", data)
    val, _ = run_dataset(model, "val", data)
    mean = mean_tokens(model.target_encoder, train, n_images=mean_images, batch_size=batch_size, device=dev)
    result = measure_predictions(model, twin, dec, val, mask_collator(model, seed), mean, n_images=val_images,
                                 batch_size=batch_size, device=dev)
    record = {
        "kind": "decoder.measure", "run": str(run), **spec.fields(), "decoder": str(decoder or out),
        "selected_on": "none (fixed masks seed, fixed decoder; nothing is chosen)", "reported_on": "val",
        "n_images": min(val_images, len(val)), "batch_size": batch_size, "mask_seed": seed,
        "mean_token_from": f"train[:{min(mean_images, len(train))}]",
        "baselines": {"target": "the target encoder's own tokens (the decoder's ceiling)",
                      "mean_token": "the mean layer-normed target token of each position",
                      "random_predictor": "a random-init predictor on the trained context encoder"},
        "retrieval_rule": "cosine among the batch's targets at the same patches; random_init: all three networks random",
        **result,
    }
    if (diffusion_dir(run) / "checkpoint.pt").is_file():
        diff = load_diffusion_decoder(diffusion_dir(run), spec_for(model.target_encoder, str(run), *model.mean_std)).to(dev)
        record["diffusion"] = {"decoder": str(diffusion_dir(run)), **measure_samples(
            model, diff, val, mask_collator(model, seed), mean, n_images=diffusion_images, batch_size=batch_size,
            n_samples=n_samples, steps=sample_steps, device=dev)}
    _write_json(out / "measure.json", record)
    return record
