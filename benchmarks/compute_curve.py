"""I-JEPA vs MAE at matched pretraining compute on Fashion-MNIST (issue 22, section 3), one piece at a time.

Each method pretrains its val-chosen recipe (a sweep variant, `GRID.yaml:VARIANT`) for as
many steps as a budget buys at the recipe's closed-form FLOPs per step
(`ijepa.bench.flops.mean_step_flops`); the run's measured training FLOPs must land within 5%
of the budget. Budgets are PFLOPs, or minutes of the I-JEPA recipe at the reference img/s
(the learning curve's budgets: the I-JEPA runs are then the learning curve's own). Every
piece writes one record and is skipped when it exists; a run killed mid-way resumes exactly.

    python benchmarks/compute_curve.py pretrain --method mae --recipe benchmarks/sweeps/fmnist_mae_round1.yaml:m1_base \\
        --budget-minutes 60 --ijepa-recipe benchmarks/sweeps/fmnist_round7.yaml:r7_default
    python benchmarks/compute_curve.py score --method mae --recipe ...:m1_base --budget-minutes 60 --ijepa-recipe ... --probe knn
    python benchmarks/compute_curve.py score --method random-init --recipe ...:r7_default --probe lowshot   # reference line
    python benchmarks/compute_curve.py score --method raw-pixels --probe knn   # reference line (any probe but finetune)
    python benchmarks/compute_curve.py budgets --ijepa-recipe ... --minutes 5 15 30 60
    python benchmarks/compute_curve.py plot    # results/compute_curve.png and the table in results/README.md

Probes (`--probe`): linear (evals/linear_fmnist.yaml), logreg (evals/linear_fmnist_logreg.yaml),
knn, lowshot (evals/lowshot_fmnist.yaml: 1/5/10%, 3 seeds), finetune (the same file's
`finetune` protocol at 1% labels); all on test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ijepa.bench import curves
from ijepa.results.curves import dataset_frame, matched_pairs, pick_recipe, plot_compute_curve
from ijepa.results.io import load_records
from ijepa.results.readme import write_tables

METHODS = ("ijepa", "mae")


def recipe_of(args: argparse.Namespace, ref: str | None, flag: str) -> curves.Recipe:
    if not ref:
        raise SystemExit(f"{flag} GRID.yaml:VARIANT is required here")
    return curves.read_recipe(ref, results_dir=args.results, extra=args.extra)


def plan(args: argparse.Namespace) -> curves.Run:
    """The run of `--method` at the budget asked for."""
    recipe = recipe_of(args, args.recipe, "--recipe")
    if recipe.method != args.method:
        raise SystemExit(f"--recipe {args.recipe}: a {recipe.method} variant, not {args.method}")
    if (args.budget_pflops is None) == (args.budget_minutes is None):
        raise SystemExit("give one budget: --budget-pflops or --budget-minutes")
    if args.budget_pflops is not None:
        return curves.plan_run(recipe, folder=args.runs, budget_flops=args.budget_pflops * 1e15, img_per_s=args.img_per_s)
    ref = recipe if args.method == "ijepa" and not args.ijepa_recipe else recipe_of(args, args.ijepa_recipe, "--ijepa-recipe")
    if ref.method != "ijepa":
        raise SystemExit(f"--ijepa-recipe {args.ijepa_recipe}: a {ref.method} variant; minutes are minutes of the I-JEPA recipe")
    if ref == recipe:
        return curves.plan_run(recipe, folder=args.runs, minutes=args.budget_minutes, img_per_s=args.img_per_s)
    budget = curves.minutes_budget(ref, args.budget_minutes, img_per_s=args.img_per_s)
    return curves.plan_run(recipe, folder=args.runs, budget_flops=budget, img_per_s=args.img_per_s, budget_minutes=args.budget_minutes)


def cmd_pretrain(args: argparse.Namespace) -> None:
    run = plan(args)
    rec, skipped = curves.pretrain_run(run, results_dir=args.results)
    show = ("encoder", "budget_pflops", "pretrain_pflops", "flops_rel_budget", "steps", "images_seen", "flops_per_image", "wall_minutes")
    print(json.dumps({"skipped (record exists)" if skipped else "done": {k: rec[k] for k in show}}))


def cmd_score(args: argparse.Namespace) -> None:
    if args.method in curves.BASELINES:
        recipe = recipe_of(args, args.recipe, "--recipe") if args.method == "random-init" else None
        fields = curves.baseline_fields(args.method, recipe)
    else:
        fields = curves.pretrained(plan(args), args.results)
    rec, skipped = curves.score(fields, args.probe, split=args.split, results_dir=args.results, sets=args.probe_set,
                                device=args.device, cache_dir=None if args.no_cache else args.cache_dir)
    print(json.dumps({"skipped (record exists)" if skipped else "done": {"encoder": rec["encoder"], "probe": rec["probe"],
                                                                         "split": rec["split"], **rec["metrics"]}}))


def cmd_budgets(args: argparse.Namespace) -> None:
    """The PFLOPs each minutes budget stands for, and the steps each method's recipe gets for it."""
    ref = recipe_of(args, args.ijepa_recipe, "--ijepa-recipe")
    others = [recipe_of(args, r, "--recipe") for r in args.recipes]
    for m in args.minutes:
        budget = curves.minutes_budget(ref, m, img_per_s=args.img_per_s)
        steps = {r.variant: curves.plan_run(r, folder=args.runs, budget_flops=budget, img_per_s=args.img_per_s).steps for r in [ref, *others]}
        print(json.dumps({"minutes": m, "budget_pflops": budget / 1e15, "steps": steps}))


def cmd_plot(args: argparse.Namespace) -> None:
    recipes = {"ijepa": args.ijepa_variant, "mae": args.mae_variant}
    out = plot_compute_curve(args.results, recipes=recipes)
    print(json.dumps(coverage(args.results, recipes)))
    md, _, skipped = write_tables(args.results)
    for path, why in skipped:
        print(f"skipped {path}: {why}")
    print(f"wrote {out} and {md}")


def coverage(results: Path, recipes: dict[str, str | None]) -> dict:
    """What the issue asks of the curve: >= 3 matched budgets spanning >= 8x, the largest >= the 60-minute I-JEPA budget."""
    records = load_records(results)[0]
    df = dataset_frame(records)
    df = df[(df["split"] == "test") & df["default_probe"]]
    chosen = {m: pick_recipe(df, m, recipes.get(m)) for m in METHODS}
    pairs = matched_pairs(records, {m: r for m, r in chosen.items() if r})
    budgets = sorted(p["budget_pflops"] for p in pairs)
    minutes = [r.get("budget_minutes") for r in records if r.get("kind") == "curve.pretrain" and r.get("method") == "ijepa"
               and r.get("recipe", {}).get("variant") == chosen["ijepa"] and round(r["budget_pflops"], 9) == (budgets[-1] if budgets else None)]
    return {"recipes": chosen, "matched_budgets_pflops": budgets, "span": budgets[-1] / budgets[0] if budgets else None,
            "largest_in_ijepa_minutes": minutes[-1] if minutes else None, "max_flops_rel_diff": max((p["rel_diff"] for p in pairs), default=None)}


def main() -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results", type=Path, default=Path("results"))
    common.add_argument("--runs", default="runs/curves", help="folder of the pretraining runs")
    common.add_argument("--img-per-s", type=float, default=None, help="reference throughput of minutes (default: the packaged recipe's, 100 img/s)")
    common.add_argument("--set", dest="extra", action="append", default=[], help="override on top of every recipe (smoke tests); part of each run's identity")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("pretrain", "score"):
        p = sub.add_parser(name, parents=[common])
        p.add_argument("--method", required=True, choices=METHODS + (curves.BASELINES if name == "score" else ()))
        p.add_argument("--recipe", help="the method's val-chosen sweep variant, GRID.yaml:VARIANT")
        p.add_argument("--budget-pflops", type=float)
        p.add_argument("--budget-minutes", type=float, help="minutes of the I-JEPA recipe at the reference img/s")
        p.add_argument("--ijepa-recipe", help="the I-JEPA recipe that minutes are minutes of (default: --recipe for I-JEPA)")
    score = sub.choices["score"]
    score.add_argument("--probe", required=True, choices=list(curves.PROBES))
    score.add_argument("--split", default="test", choices=("val", "test"))
    score.add_argument("--probe-set", action="append", default=[], help="override of the probe's recipe (smoke tests; shown as its own column)")
    score.add_argument("--device", default="cpu")
    score.add_argument("--cache-dir", type=Path, default=Path(".cache/features"))
    score.add_argument("--no-cache", action="store_true")
    budgets = sub.add_parser("budgets", parents=[common])
    budgets.add_argument("--ijepa-recipe", required=True)
    budgets.add_argument("--recipe", dest="recipes", action="append", default=[], help="other recipes to size (repeatable)")
    budgets.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 30, 60])
    plot = sub.add_parser("plot", parents=[common])
    plot.add_argument("--ijepa-variant", help="the I-JEPA recipe to draw (default: the only one with records)")
    plot.add_argument("--mae-variant", help="the MAE recipe to draw (default: the only one with records)")
    args = ap.parse_args()
    try:
        {"pretrain": cmd_pretrain, "score": cmd_score, "budgets": cmd_budgets, "plot": cmd_plot}[args.cmd](args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
