"""`ijepa decoder train|measure RUN`: see what the predictor predicts, as pixels."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, app, console, fail

decoder_app = typer.Typer(help="A pixel decoder for a run's target-encoder tokens (for `ijepa explore`).", no_args_is_help=True)
app.add_typer(decoder_app, name="decoder")

RUN_HELP = "Run dir (or checkpoint) with encoder, predictor and target_encoder"
TRAIN_FLAGS = {"steps": "--steps", "batch_size": "--batch-size", "width": "--width", "depth": "--depth",
               "train_images": "--train-images", "num_workers": "--workers"}


@decoder_app.command("train")
def train(
    run: Path = typer.Argument(..., help=RUN_HELP),
    kind: str = typer.Option("mean", "--kind", help="mean: deterministic, paints the average of what the tokens leave open "
                             "(RUN/decoder/); diffusion: a conditional diffusion decoder that draws samples (RUN/decoder/diffusion/)"),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps per decoder"),
    batch_size: int = typer.Option(64, "--batch-size"),
    width: int = typer.Option(128, "--width", help="Decoder width"),
    depth: int | None = typer.Option(None, "--depth", help="Decoder transformer blocks (default: 2 mean, 4 diffusion)"),
    train_images: int = typer.Option(0, "--train-images", help="Train on the first N train images only (0: all)"),
    val_images: int = typer.Option(1000, "--val-images", help="Val images the record is measured on"),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also train the decoder on the random-init encoder's tokens"),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Then run `ijepa decoder measure`"),
    data: str | None = typer.Option(None, "--data", help="Dataset (default: the run's own): fashion-mnist or an ImageFolder root"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (CUDA when available)"),
    workers: int = typer.Option(0, "--workers", help="DataLoader workers"),
    resume: bool = typer.Option(False, "--resume", help="Continue RUN/decoder exactly"),
    results: Path = typer.Option(Path("results"), "--results", help="Also write the records under RESULTS/records/decoder.*"),
) -> None:
    """Train RUN/decoder on the frozen target encoder's tokens; write RUN/decoder/record.json.

    Example: ijepa decoder train runs/fmnist_vit_tiny
    """
    from ijepa import typedconfig
    from ijepa.decoder.model import decoder_dir
    from ijepa.decoder.runs import KINDS, measure_decoded, publish, train_decoders
    from ijepa.rundir import RunError

    if kind not in KINDS:
        fail(ValueError(f"--kind {kind}: expected one of {', '.join(KINDS)}"))
    given = {"steps": steps, "batch_size": batch_size, "width": width, "depth": depth, "train_images": train_images, "num_workers": workers}
    try:  # the typed loader of every recipe: each value held to its field's range, named as typed, before any work
        tc = typedconfig.build(KINDS[kind][0], {k: v for k, v in given.items() if v is not None}, where="", names=TRAIN_FLAGS)
        rec = train_decoders(run, tc, kind=kind, data=data, device=device, resume=resume, baseline=baseline,
                             val_images=val_images, console=console)
        _say(f"record: {publish(rec, results)}")
        for name in ("trained", "random_init"):
            if name in rec:
                r = rec[name]
                block = f"  block MSE {r['block_mse']:.4f}" if "block_mse" in r else " (one sample)"
                _say(f"{name:>11} encoder: val MSE {r['mse']:.4f}  SSIM {r['ssim']:.3f}{block}")
        if measure and not (decoder_dir(run) / "checkpoint.pt").is_file():
            _say(f"not measured: the measure compares with the deterministic decoder; `ijepa decoder train {run}`, "
                 f"then `ijepa decoder measure {run}`")
        elif measure:
            m = measure_decoded(run, data=data, device=device, val_images=val_images)
            _print_measure(m)
            _say(f"record: {publish(m, results)}")
    except (RunError, *USER_ERRORS) as e:
        fail(e)


@decoder_app.command("measure")
def measure_cmd(
    run: Path = typer.Argument(..., help=RUN_HELP),
    decoder: Path | None = typer.Option(None, "--decoder", help="Decoder checkpoint (default: RUN/decoder)"),
    val_images: int = typer.Option(1000, "--val-images"),
    diffusion_images: int = typer.Option(128, "--diffusion-images", help="Val images the diffusion decoder's samples are measured on (if RUN/decoder/diffusion exists)"),
    samples: int = typer.Option(4, "--samples", help="Diffusion samples per block"),
    sample_steps: int = typer.Option(25, "--sample-steps", help="DDIM steps per diffusion sample"),
    data: str | None = typer.Option(None, "--data", help="Dataset (default: the run's own)"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (CUDA when available)"),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON"),
    results: Path = typer.Option(Path("results"), "--results", help="Also write the record under RESULTS/records/decoder.measure"),
) -> None:
    """Decoded predictions vs baselines per block size, and retrieval; write RUN/decoder/measure.json.

    Example: ijepa decoder measure runs/fmnist_vit_tiny
    """
    from ijepa.decoder.runs import measure_decoded, publish

    try:
        rec = measure_decoded(run, decoder=decoder, data=data, device=device, val_images=val_images,
                              diffusion_images=diffusion_images, n_samples=samples, sample_steps=sample_steps)
        path = publish(rec, results)
    except USER_ERRORS as e:
        fail(e)
    if as_json:
        print(json.dumps(rec))
    else:
        _print_measure(rec)
        _say(f"record: {path}")


def _print_measure(rec: dict) -> None:
    names = ("target", "prediction", "mean_token", "random_predictor")
    _say(f"decoded pixel MSE on val ({rec['n_images']} images), by target block size (patches):")
    _say("  size  blocks " + " ".join(f"{n:>17}" for n in names))
    for size, row in {**rec["pixel_mse_by_block_size"], "all": rec["pixel_mse"]}.items():
        _say(f"  {size:>4} {row['n_blocks']:>7} " + " ".join(f"{row[n]:>17.4f}" for n in names))
    if "diffusion" in rec:
        d = rec["diffusion"]
        _say(f"diffusion decoder on val ({d['n_images']} images, {d['n_samples']} samples x {d['sample_steps']} DDIM steps, context known):")
        _say("  tokens        sample MSE  samples-mean MSE  diversity (std)")
        for n in ("target", "prediction", "mean_token"):
            _say(f"  {n:<12} {d['all'][n + '_sample']:>11.4f} {d['all'][n + '_samples_mean']:>17.4f} {d['all'][n + '_diversity']:>10.4f}")
    ret = rec["retrieval"]
    _say(f"retrieval top-1 among the batch (chance {ret['chance']:.3f}): " + ", ".join(
        f"{k} {v['block_top1']:.3f} (tokens {v['token_top1']:.3f})" for k, v in ret.items() if k != "chance"))


def _say(text: str) -> None:
    """One line on stderr, never wrapped (off a terminal rich wraps at 80 columns, splitting
    the measure table's rows and the record's path)."""
    console.print(text, soft_wrap=True, highlight=False, markup=False)
