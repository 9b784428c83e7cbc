"""What every result record holds, checked before a table or plot reads it.

A record is a JSON object with `kind`, `created`, `encoder` and its headline metric. New eval
records declare `headline` (the key of the number a table shows first) and `unit`
(`fraction`: stored in [0, 1], shown as %; `value`: shown as is), stamped by the eval
registry; records written before that get them from their eval's registry entry (which also
says what else its records hold, `check`), those of benchmarks and curves from `KNOWN` by
their kind. A record that breaks the schema is skipped with the reason, never half-read; so
is one holding a number that cannot be, wherever it sits (`impossible`): a top-k accuracy
outside [0, 1], FLOPs that are negative, any number that is not finite.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ijepa.evals import registry
from ijepa.evals.registry import number

UNITS = ("fraction", "value")
# What a measurement of speed, FLOPs or a run says for `selected_on` / `reported_on`: no choice, no split.
NO_SPLIT = {"selected_on": "none (a measurement, no choice)", "reported_on": "none (no data split)"}
# kind -> (headline, unit) for records of no eval that do not declare theirs
KNOWN: dict[str, tuple[str, str]] = {
    "baseline.random_init": ("top1", "fraction"), "baseline.raw_pixels": ("top1", "fraction"),
    "learning_curve": ("top1", "fraction"), "recipe_sweep": ("probe_best", "fraction"),
    "bench.throughput": ("img_per_s", "value"), "bench.pretrain_step": ("img_per_s", "value"),
    "bench.official_step": ("img_per_s", "value"), "bench.flops": ("gflops_per_image", "value"),
    "bench.paper_compute": ("mae_over_ijepa_flops", "value"), "bench.probe_speed": ("logreg_s", "value"),
    "curve.score": ("top1", "fraction"),  # ijepa.bench.curves: one probe of one budget's run
    "bench.eval_speed": ("img_per_s", "value"), "bench.gpu_pretrain": ("img_per_s", "value"),
}
OPTIONAL = {"pretrain.compute", "curve.pretrain", "bench.gpu_check"}  # plot inputs, the GPU check's index of its records: no headline


@dataclass(frozen=True)
class Headline:
    key: str
    value: float
    unit: str

    @property
    def shown(self) -> float:
        """The value as a table shows it (fractions in %)."""
        return 100 * self.value if self.unit == "fraction" else self.value


def _known(kind: Any) -> tuple[str | None, str | None]:
    """(headline, unit) of a kind: its eval's registry entry, else `KNOWN`."""
    entry = registry.of_kind(kind)
    return (entry.headline, entry.unit) if entry is not None else KNOWN.get(kind, (None, None))


def headline(rec: dict[str, Any]) -> Headline | None:
    """The record's declared (or its kind's) headline; None for plot-only kinds."""
    key, unit = rec.get("headline"), rec.get("unit")
    if key is None:
        if rec.get("kind") in OPTIONAL:
            return None
        key, unit = _known(rec.get("kind"))
    if key is None:
        raise ValueError(f"kind {rec.get('kind')!r} declares no headline (set `headline` and `unit`)")
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r}: expected one of {', '.join(UNITS)}")
    value = rec.get(key)
    if not number(value):
        raise ValueError(f"{key} is {value!r}; expected a finite number")
    if unit == "fraction" and not 0 <= value <= 1:
        raise ValueError(f"{key} is {value!r}; expected a fraction in [0, 1]")
    return Headline(key, float(value), unit)


def _numbers(rec: dict[str, Any], keys: tuple[str, ...]) -> None:
    for k in keys:
        if not number(rec.get(k)) or rec[k] < 0:
            raise ValueError(f"{k} is {rec.get(k)!r}; expected a finite number >= 0")


def _curve_pretrain(rec: dict[str, Any]) -> None:
    if not isinstance(rec.get("method"), str) or not isinstance(rec.get("piece"), dict):
        raise ValueError("method (a string) and piece (a mapping) are required")
    _numbers(rec, ("budget_pflops", "steps", "images_seen", "flops_per_image", "pretrain_flops", "wall_minutes"))


def _curve_score(rec: dict[str, Any]) -> None:
    if not isinstance(rec.get("method"), str) or not isinstance(rec.get("piece"), dict):
        raise ValueError("method (a string) and piece (a mapping) are required")
    _numbers(rec, ("steps", "images_seen", "pretrain_flops", "wall_minutes"))
    if rec.get("split") not in ("val", "test") or rec.get("reported_on") != rec.get("split"):
        raise ValueError(f"split {rec.get('split')!r}, reported_on {rec.get('reported_on')!r}: expected the same, val or test")
    metrics = rec.get("metrics")
    if not isinstance(metrics, dict) or not metrics or not all(number(v) and 0 <= v <= 1 for v in metrics.values()):
        raise ValueError("metrics: expected a mapping of probe -> top-1 fraction in [0, 1]")


def _pretrain_compute(rec: dict[str, Any]) -> None:
    if not isinstance(rec.get("run"), str) or not isinstance(rec.get("method"), str):
        raise ValueError("run and method (strings) are required")
    _numbers(rec, ("pretrain_flops", "pretrain_wall_s"))


CHECKS = {"curve.pretrain": _curve_pretrain, "curve.score": _curve_score, "pretrain.compute": _pretrain_compute}
TOPK = re.compile(r"(^|_)top\d+$")  # top1, top5, heldout_top1, val_top5, retrieval_top1: fractions wherever they sit
FLOPS = re.compile(r"flops(?!_rel)", re.I)  # counts, rates and ratios of FLOPs; not a relative difference (flops_rel_budget)


def impossible(value: Any, key: str = "") -> str | None:
    """The first number under `value` that cannot be (None if none): not finite (a record is
    written with none), a top-k accuracy outside [0, 1], FLOPs below 0."""
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := impossible(v, str(k))) is not None), None)
    if isinstance(value, list):
        return next((p for v in value if (p := impossible(v, key)) is not None), None)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if not math.isfinite(value):
        return f"{key} is {value!r}; a record holds finite numbers only"
    if TOPK.search(key) and not 0 <= value <= 1:
        return f"{key} is {value!r}; expected a fraction in [0, 1]"
    if FLOPS.search(key) and value < 0:
        return f"{key} is {value!r}; expected FLOPs >= 0"
    return None


def _how_run(rec: dict[str, Any]) -> None:
    """What an eval record says of how it ran, where it says it (records before them do not):
    `world_size`, torchrun's processes (1 for one), and `feature_dtype`, the extraction's.
    Imported here: `ijepa eval --help` imports this module and must import no eval's."""
    from ijepa.evals.core.config import FEATURE_DTYPES

    world = rec.get("world_size", 1)
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"world_size is {world!r}; expected a whole number >= 1")
    if rec.get("feature_dtype", FEATURE_DTYPES[0]) not in FEATURE_DTYPES:
        raise ValueError(f"feature_dtype is {rec['feature_dtype']!r}; expected one of {', '.join(FEATURE_DTYPES)}")


def validate(rec: Any) -> str | None:
    """The first problem of a record (None if it follows the schema)."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got a JSON {type(rec).__name__}"
    for key in ("kind", "created"):
        if not isinstance(rec.get(key), str):
            return f"{key} is {rec.get(key)!r}; expected a string"
    if rec["kind"] not in OPTIONAL and not isinstance(rec.get("encoder"), str):
        return f"encoder is {rec.get('encoder')!r}; expected a string"
    entry = registry.of_kind(rec["kind"])
    check = entry.check if entry is not None else CHECKS.get(rec["kind"])
    try:
        headline(rec)
        _how_run(rec)
        if check is not None:
            check(rec)
    except ValueError as e:
        return str(e)
    return impossible(rec)
