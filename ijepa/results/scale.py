"""Each eval protocol's wall time on ImageNet-1k, projected from what was measured.

No ImageNet run has been made here, so the README's "Evaluating at ImageNet scale" table is
arithmetic on records: the GPU check's ViT-H/14 frozen-feature rates and head-grid time
(`bench.eval_speed`, one H200) and the CPU rehearsal of the real eval path
(`bench.imagenet_rehearsal`: cache bytes per image, peak memory per rank, seconds per image).
The time model is `encoder images / (img/s x GPUs) + the probe's own time`: extraction is
divided over the GPUs (linear scaling assumed, not measured), the probe's fit is not.
A cell that rests on nothing measured says so instead of holding a number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ijepa.results.render import markdown_table

IN1K_TRAIN, IN1K_VAL, IN1K_1PCT = 1_281_167, 50_000, 12_811  # 1%: SimCLR's 1percent.txt
EPOCHS = 50  # MAE's linear probe and Table 2's fine-tuning both run 50
FWD_BWD = 3  # a training step's cost in forwards (forward + backward ~ 2 forwards): an estimate
GPUS = (1, 8)
ROW_EXTRA_BYTES = 16 + 8  # beside each float16 feature row: its row id and its int64 label
REHEARSAL_CMD = "python benchmarks/imagenet_rehearsal.py"
CKPT, DATA = "IN1K-vit.h.14-300e.pth.tar", "/data/imagenet"


@dataclass(frozen=True)
class Protocol:
    """One eval as ImageNet runs it: images through the encoder, the probe's own seconds
    (None: not measured), the command, and whether it runs on one device only."""

    name: str
    encoder_images: int
    fit_s: float | None
    fit_note: str
    command: str
    one_device: bool = False


def latest(records: list[dict[str, Any]], kind: str, *, where: Callable[[dict], bool] = lambda r: True, **match: Any) -> dict[str, Any] | None:
    """The newest record of `kind` whose fields equal `match` and that `where` accepts."""
    mine = [r for r in records if r.get("kind") == kind and all(r.get(k) == v for k, v in match.items()) and where(r)]
    return max(mine, key=lambda r: r.get("created", "")) if mine else None


def gpu_rates(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The GPU check's ViT-H/14 extraction and grid record (`eval_speed.py --scale in1k`)."""
    return latest(records, "bench.eval_speed", device="cuda", dataset="synthetic-imagenet-shape")


def rehearsal_of(records: list[dict[str, Any]], rates: dict[str, Any]) -> dict[str, Any] | None:
    """The newest rehearsal of an encoder of the GPU rates' feature width (a smoke run of a
    small architecture projects nothing)."""
    return latest(records, "bench.imagenet_rehearsal", where=lambda r: r.get("width", 0) * min(4, r.get("depth", 0)) == rates["feature_dim"])


def protocols(rates: dict[str, Any]) -> list[Protocol]:
    """The protocols of the README's table, each costed in encoder images and probe seconds."""
    both = IN1K_TRAIN + IN1K_VAL
    eval_ = f"ijepa eval {{}} --encoder {CKPT} --data {DATA} --device cuda"
    return [
        Protocol("linear, cached features (`linear_in1k` grid)", both, rates["projected_grid_fit_s"],
                 f"{rates['grid_heads']} heads x {rates['grid_epochs']} epochs, measured (the chosen head's refit is not in it)",
                 eval_.format("linear -c linear_in1k")),
        Protocol("linear, logistic regression", both, None, "L-BFGS on 1.28M x 5120: not measured",
                 eval_.format("linear -c linear_in1k --protocol logreg")),
        Protocol("linear, augmented every epoch (MAE's probe, the paper's 79.3%)", EPOCHS * IN1K_TRAIN + IN1K_VAL, 0.0,
                 "heads train beside the encoder: negligible; runs in one process (torchrun refused)",
                 eval_.format("linear -c linear_in1k_mae --augment"), one_device=True),
        Protocol("k-NN (DINO, k up to 200)", both, None,
                 "the search, 2 x 50k x 1.28M x 6400 multiply-adds (~0.8 PFLOP): not measured",
                 eval_.format("knn")),
        Protocol("low-shot 1%, frozen (`lowshot_in1k_simclr`)", IN1K_1PCT + IN1K_VAL, None,
                 "MSN's logistic regression (lambd fixed) on 12.8k rows: not measured; no extraction after `linear`",
                 eval_.format("lowshot -c lowshot_in1k_simclr --set 'fractions=[0.01]'")),
        Protocol("low-shot 1%, fine-tuned (Table 2, `lowshot_in1k_finetune`)", FWD_BWD * EPOCHS * IN1K_1PCT + IN1K_VAL, 0.0,
                 f"estimate: {EPOCHS} epochs x 12,811 images x {FWD_BWD} forwards; runs on one device",
                 eval_.format("lowshot -c lowshot_in1k_finetune"), one_device=True),
    ]


def duration(s: float) -> str:
    """Seconds as a table shows them: minutes under two hours, then hours, then days."""
    if s < 60:
        return "< 1 min"
    if s < 2 * 3600:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h" if s < 72 * 3600 else f"{s / 86400:.1f} days"


def projected_s(p: Protocol, img_per_s: float, gpus: int) -> tuple[float, bool]:
    """(seconds, whether the probe's own time is in them): extraction divided over `gpus`
    (linear scaling, assumed), the probe's fit not."""
    extract = p.encoder_images / (img_per_s * gpus)
    return (extract, False) if p.fit_s is None else (extract + p.fit_s, True)


def wall(p: Protocol, img_per_s: float, gpus: int) -> str:
    """The projected wall time of `p` on `gpus` GPUs at `img_per_s` per GPU, as a cell."""
    if gpus > 1 and p.one_device:
        return "- (one device)"
    s, whole = projected_s(p, img_per_s, gpus)
    return duration(s) if whole else duration(s) + " + probe"


def time_table(rates: dict[str, Any]) -> str:
    """Protocol x (1, 8 GPUs) x (fp32, bf16) wall times, with what each rests on."""
    rows = []
    for p in protocols(rates):
        cells = {f"{g} GPU{'s' * (g > 1)} {d}": wall(p, rates[k], g) for g in GPUS for d, k in (("fp32", "img_per_s"), ("bf16", "img_per_s_bf16"))}
        rows.append({"protocol": p.name, "encoder images": f"{p.encoder_images:,}", **cells, "probe / fit": p.fit_note,
                     "command (1 GPU)": f"`{p.command}`" if p.command.startswith("ijepa") else p.command})
    return markdown_table(pd.DataFrame(rows))


def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB"


def resource_table(rates: dict[str, Any], rehearsal: dict[str, Any] | None) -> str:
    """Disk and memory at ImageNet scale, and the CPU rehearsal's own figures."""
    dim, pending = rates["feature_dim"], f"not yet measured (`{REHEARSAL_CMD}`)"
    per_img = rehearsal["cache_bytes_per_img_4096"] if rehearsal else dim * 2 + ROW_EXTRA_BYTES
    source = (f"rehearsal: {rehearsal['cache_bytes_per_img']:,.0f} B per image in chunks of {rehearsal['chunk_rows']}, "
              f"{per_img:,.0f} B in chunks of 4096" if rehearsal else f"the format: {dim} float16 + {ROW_EXTRA_BYTES} B a row")
    rows = [("feature cache on disk, train + val", gb(per_img * (IN1K_TRAIN + IN1K_VAL)), source),
            ("train features in memory, fp32 (logistic regression holds all of it on one device)", gb(IN1K_TRAIN * dim * 4),
             f"1,281,167 x {dim} x 4 B")]
    if rehearsal is None:
        rows += [("peak memory per rank, ViT-H/14", pending, ""), ("this CPU, ImageNet extraction", pending, "")]
    else:
        n, s = rehearsal["world_size"], rehearsal["s_per_img_per_rank"]
        rows += [("peak memory per rank, ViT-H/14 (rehearsal, CPU)", gb(1e6 * max(rehearsal["peak_rss_mb"].values())),
                  "the largest rank's high-water RSS (checkpoint load + extraction + fit)"),
                 (f"this CPU, ImageNet extraction on {n} ranks", duration(s * (IN1K_TRAIN + IN1K_VAL) / n),
                  f"rehearsal: {s:.2f} s per image per rank, {rehearsal['threads_per_rank']} thread each")]
    return markdown_table(pd.DataFrame(rows, columns=["what", "projected", "from"]))


def scale_markdown(records: list[dict[str, Any]]) -> str | None:
    """The README section's tables, from the newest GPU-rate and rehearsal records (None
    without a GPU-rate record)."""
    rates = gpu_rates(records)
    if rates is None:
        return None
    head = (f"ViT-H/14 at 224 px, {rates['device_name']}: {rates['img_per_s']:.0f} img/s fp32, {rates['img_per_s_bf16']:.0f} img/s "
            f"bf16 (`bench.eval_speed`, {rates['created'][:10]}).")
    how = ("bf16 columns: add `--dtype bfloat16`; 8 GPUs: the same command after "
           "`torchrun --nproc_per_node 8 --no-python`, each rank extracting its share of the cache's chunks.")
    return "\n\n".join([head, time_table(rates), how, resource_table(rates, rehearsal_of(records, rates))])
