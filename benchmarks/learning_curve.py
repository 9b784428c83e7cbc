"""Accuracy against pretraining minutes for the val-chosen I-JEPA recipe (issue 22, section 2), one piece at a time.

Each budget is a run of the recipe (a sweep variant, `GRID.yaml:VARIANT`, chosen on val)
whose schedule is sized to the budget: steps = minutes x 60 x the reference img/s / batch
(the packaged recipe's 100 img/s unless `--img-per-s`), warm-up, cosine and EMA ramp all
ending there. Each run is scored by both linear probes (the VISSL grid
`evals/linear_fmnist.yaml`, logistic regression `evals/linear_fmnist_logreg.yaml`) on val
first, then on test. Random init and raw pixels are the reference lines. Every piece writes
one record (`ijepa.bench.curves`) and is skipped when it exists; a run killed mid-way
resumes exactly. The runs are the compute curve's I-JEPA runs of the same minutes.

    R=benchmarks/sweeps/fmnist_round7.yaml:r7_default
    python benchmarks/learning_curve.py pretrain --recipe $R --minutes 15
    python benchmarks/learning_curve.py score --recipe $R --minutes 15 --probe logreg --split val
    python benchmarks/learning_curve.py baselines --recipe $R --split val
    python benchmarks/learning_curve.py plot      # results/learning_curve.png and the table in results/README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ijepa.bench import curves
from ijepa.results.curves import plot_learning_curve
from ijepa.results.readme import write_tables

PROBES = ("linear", "logreg")


def run_of(args: argparse.Namespace) -> curves.Run:
    recipe = curves.read_recipe(args.recipe, results_dir=args.results, extra=args.extra)
    if recipe.method != "ijepa":
        raise SystemExit(f"--recipe {args.recipe}: a {recipe.method} variant; the learning curve is I-JEPA's")
    return curves.plan_run(recipe, folder=args.runs, minutes=args.minutes, img_per_s=args.img_per_s)


def score_kw(args: argparse.Namespace) -> dict:
    return {"split": args.split, "results_dir": args.results, "sets": args.probe_set, "device": args.device,
            "cache_dir": None if args.no_cache else args.cache_dir}


def cmd_pretrain(args: argparse.Namespace) -> None:
    rec, skipped = curves.pretrain_run(run_of(args), results_dir=args.results)
    show = ("encoder", "budget_minutes", "steps", "images_seen", "pretrain_pflops", "wall_minutes")
    print(json.dumps({"skipped (record exists)" if skipped else "done": {k: rec[k] for k in show}}))


def cmd_score(args: argparse.Namespace) -> None:
    fields = curves.pretrained(run_of(args), args.results)
    rec, skipped = curves.score(fields, args.probe, val_first=True, **score_kw(args))
    print(json.dumps({"skipped (record exists)" if skipped else "done": {"encoder": rec["encoder"], "split": rec["split"], **rec["metrics"]}}))


def cmd_baselines(args: argparse.Namespace) -> None:
    """Random init of the recipe's encoder and raw pixels, each by both linear probes."""
    recipe = curves.read_recipe(args.recipe, results_dir=args.results, extra=args.extra)
    pieces = [(method, p) for method in curves.BASELINES for p in PROBES]
    for method, probe in pieces:
        rec, skipped = curves.score(curves.baseline_fields(method, recipe), probe, **score_kw(args))
        print(json.dumps({"skipped (record exists)" if skipped else "done": {"encoder": rec["encoder"], "split": rec["split"], **rec["metrics"]}}))


def cmd_plot(args: argparse.Namespace) -> None:
    out = plot_learning_curve(args.results, recipe=args.variant)
    md, _, skipped = write_tables(args.results)
    for path, why in skipped:
        print(f"skipped {path}: {why}")
    print(f"wrote {out} and {md}")


def main() -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results", type=Path, default=Path("results"))
    common.add_argument("--runs", default="runs/curves", help="folder of the pretraining runs (shared with the compute curve)")
    common.add_argument("--img-per-s", type=float, default=None, help="reference throughput of minutes (default: the packaged recipe's, 100 img/s)")
    common.add_argument("--set", dest="extra", action="append", default=[], help="override on top of the recipe (smoke tests); part of each run's identity")
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--split", required=True, choices=("val", "test"), help="val first; test once the recipe is final")
    probe.add_argument("--probe-set", action="append", default=[], help="override of the probe's recipe (smoke tests; shown as its own column)")
    probe.add_argument("--device", default="cpu")
    probe.add_argument("--cache-dir", type=Path, default=Path(".cache/features"))
    probe.add_argument("--no-cache", action="store_true")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, parents in (("pretrain", [common]), ("score", [common, probe]), ("baselines", [common, probe])):
        p = sub.add_parser(name, parents=parents)
        p.add_argument("--recipe", required=True, help="the val-chosen I-JEPA sweep variant, GRID.yaml:VARIANT")
        if name != "baselines":
            p.add_argument("--minutes", type=float, required=True)
    sub.choices["score"].add_argument("--probe", required=True, choices=PROBES)
    plot = sub.add_parser("plot", parents=[common])
    plot.add_argument("--variant", help="the recipe to draw (default: the only I-JEPA recipe with records)")
    args = ap.parse_args()
    try:
        {"pretrain": cmd_pretrain, "score": cmd_score, "baselines": cmd_baselines, "plot": cmd_plot}[args.cmd](args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
