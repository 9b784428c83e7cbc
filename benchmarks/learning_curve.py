"""Linear top-1 against pretraining minutes for the default recipe (issue 8).

Each budget is a separate run of the default recipe whose schedule is sized to the budget
(epochs = minutes x 60 x reference img/s / 50,000 train images), so warm-up, cosine and EMA ramp
all complete. The x-axis is images seen; each point is annotated with the wall time the run
actually took (longer when the machine is shared). Random
init (same architecture) and raw pixels (scikit-learn logistic regression) are drawn in.

    python benchmarks/learning_curve.py --minutes 5 15 30 60
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ijepa.data import build_dataset  # noqa: E402
from ijepa.evals.core.encoders import EncoderSpec  # noqa: E402
from ijepa.evals.core.logreg import logreg_model, topk  # noqa: E402
from ijepa.evals.linear import run_linear  # noqa: E402
from ijepa.results.io import read_records, write_record  # noqa: E402
from ijepa.training.config import load_config  # noqa: E402
from ijepa.training.loop import pretrain  # noqa: E402

N_TRAIN = 50_000  # the Fashion-MNIST train split (val is held out of the official 60k)
DEFAULT_MINUTES = 15  # the budget the packaged recipe is sized to


def raw_pixels() -> dict:
    """The baseline every Fashion-MNIST number is read against (the probe of `eval linear --protocol logreg`)."""
    tr, te = build_dataset("fashion-mnist", "train"), build_dataset("fashion-mnist", "val")
    xtr, xte = tr.images.flatten(1).float().numpy() / 255, te.images.flatten(1).float().numpy() / 255
    top1, top5 = topk(logreg_model().fit(xtr, tr.targets.numpy()), xte, te.targets.numpy())
    return {"kind": "baseline.raw_pixels", "encoder": "raw-pixels", "dataset": "fashion-mnist",
            "protocol": "sklearn-logreg", "top1": top1, "top5": top5}


def recipe_id(extra: list[str]) -> str:
    """Fingerprint of the recipe apart from its budget: the curve only joins runs of one recipe."""
    d = load_config(None, extra).to_dict()
    d["optimization"].pop("epochs")
    d.pop("logging")
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def budget_run(minutes: float, *, img_per_s: float, folder: str, extra: list[str]) -> dict:
    """The default recipe resized to `minutes`; the default budget is the default run itself."""
    epochs = minutes * 60 * img_per_s / N_TRAIN
    default = load_config(None, extra)
    if abs(epochs - default.optimization.epochs) < 1e-3:
        overrides = [f"logging.folder={folder}"]
    else:
        overrides = [f"logging.folder={folder}", f"logging.write_tag=fmnist_curve_{minutes:g}min", f"optimization.epochs={epochs:.4f}"]
    cfg = load_config(None, [*extra, *overrides])
    tag = cfg.logging.write_tag
    run_dir = pretrain(cfg, resume=True)
    log = pd.read_csv(run_dir / "log.csv")
    rec = run_linear(str(run_dir))
    lr = run_linear(str(run_dir), protocol="logreg")  # cached features: the raw-pixel baseline's probe
    return {**rec, "kind": "learning_curve", "encoder": tag, "budget_minutes": minutes, "epochs": epochs,
            "recipe_id": recipe_id(extra), "logreg_top1": lr["top1"], "logreg_head": lr["best_head"],
            "pretrain_minutes": float(log.elapsed_s.iloc[-1]) / 60, "steps": int(log.step.iloc[-1]),
            "images_seen": int(log.step.iloc[-1]) * cfg.data.batch_size}


def plot(results_dir: Path, extra: list[str], img_per_s: float) -> Path:
    """The current recipe's budgets (runs of earlier recipes stay in the records, off the plot)."""
    recs = read_records(results_dir)
    rid = recipe_id(extra)
    curve = pd.DataFrame([r for r in recs if r.get("kind") == "learning_curve" and r.get("recipe_id") == rid])
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(curve):
        curve = curve.sort_values(["budget_minutes", "created"]).drop_duplicates("budget_minutes", keep="last")
        ax.plot(curve.images_seen / 1000, 100 * curve.top1, "o-", color="C0", label="I-JEPA default recipe, linear grid")
        for _, r in curve.iterrows():
            ax.annotate(f"{r.pretrain_minutes:.0f} min wall", (r.images_seen / 1000, 100 * r.top1), fontsize=7,
                        textcoords="offset points", xytext=(4, -10))
        if "logreg_top1" in curve:
            lr = curve.dropna(subset=["logreg_top1"])
            ax.plot(lr.images_seen / 1000, 100 * lr.logreg_top1, "s--", color="C1", label="same runs, logistic regression")
    for kind, protocol, style, color, label in (
        ("baseline.raw_pixels", "sklearn-logreg", "--", "C1", "raw pixels, logistic regression"),
        ("baseline.random_init", "linear-grid", ":", "C0", "same ViT at random init, linear grid"),
        ("baseline.random_init", "sklearn-logreg", ":", "C1", "same ViT at random init, logistic regression"),
    ):
        vals = [r["top1"] for r in recs if r.get("kind") == kind and r.get("protocol") == protocol]
        if vals:
            ax.axhline(100 * vals[-1], ls=style, color=color, alpha=0.7, label=f"{label}: {100 * vals[-1]:.1f}%")
    ax.set_xlabel("pretraining images (thousands; the schedule is sized to each budget)")
    ax.set_ylabel("Fashion-MNIST linear top-1 (%)")
    top = ax.secondary_xaxis("top", functions=(lambda k: k * 1000 / img_per_s / 60, lambda m: m * 60 * img_per_s / 1000))
    top.set_xlabel(f"minutes on an idle 2-core CPU at {img_per_s:.0f} img/s")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out = results_dir / "learning_curve.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="*", default=[5, 15, 30, 60])
    ap.add_argument("--img-per-s", type=float, default=None,
                    help="reference throughput (default: the one the default recipe is sized by, 15 min)")
    ap.add_argument("--folder", default="runs")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra config override")
    ap.add_argument("--baselines", action="store_true", help="also (re)compute raw-pixel and random-init lines")
    args = ap.parse_args()
    if args.baselines:
        write_record(raw_pixels(), results_dir=args.results)
        spec = EncoderSpec(random_init="vit_tiny", depth=6, img_size=32, patch_size=4, in_chans=1)
        for protocol in ("grid", "logreg"):
            write_record({**run_linear(spec, protocol=protocol), "kind": "baseline.random_init"}, results_dir=args.results)
    ips = args.img_per_s or load_config(None, args.extra).optimization.epochs * N_TRAIN / (DEFAULT_MINUTES * 60)
    for m in args.minutes:
        rec = budget_run(m, img_per_s=ips, folder=args.folder, extra=args.extra)
        write_record(rec, results_dir=args.results)
        print(json.dumps({k: rec[k] for k in ("encoder", "top1", "pretrain_minutes", "steps")}))
    print(plot(args.results, args.extra, ips))


if __name__ == "__main__":
    main()
