"""A new eval is its entry and its code, nothing else: one registered here, with no edit to the
CLI, the schema or the results tables, runs as `ijepa eval NAME` (`--eval-limit` included),
its records validate (an older one without `headline` and `unit` too, by its entry; a broken
one is skipped by the entry's own check), and `ijepa results` tables it under its title."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest
from typer.testing import CliRunner

from ijepa.evals import registry
from ijepa.evals.core.config import FrozenSpec
from ijepa.evals.registry import Context, Eval, Fixture, Record, pct
from ijepa.results.io import write_record
from ijepa.results.schema import validate
from ijepa.typedconfig import FRACTION, checked


@dataclass(frozen=True)
class ToySpec(FrozenSpec):
    bias: float = checked(0.25, FRACTION)


def run(encoder: object, spec: ToySpec, ctx: Context) -> Record:
    """The eval's code (`run="<this module>:run"`): a score that says which spec it saw."""
    return {"encoder": "toy-encoder", "dataset": spec.data, "protocol": "toy", "score": 0.5 + spec.bias, "val_limit": spec.val_limit,
            "selected_on": "none (fixed)", "reported_on": "test"}


def check(rec: Record) -> None:
    if rec.get("protocol") != "toy":
        raise ValueError(f"protocol is {rec.get('protocol')!r}; expected toy")


@pytest.fixture
def toy(monkeypatch) -> Eval:
    """Registered for one test: the registry is restored after it."""
    registry.names()  # the shipped entries register into the registry kept, not into the test's copy
    monkeypatch.setattr(registry, "_EVALS", dict(registry._EVALS))
    return registry.register(Eval(
        name="toy", spec=ToySpec, run=f"{__name__}:run", summary="A throwaway eval.", example="ijepa eval toy --random-init vit_tiny",
        headline="score", unit="fraction", rows=lambda rec: [("score", pct(rec["score"]))], fixture=Fixture("imagefolder.write_imagefolder"),
        check=check, title="Toy probe",
    ))


def cli(args: list[str]):
    import ijepa.cli.evals  # noqa: F401  (registers the commands)
    import ijepa.cli.results  # noqa: F401
    from ijepa.cli import app

    return CliRunner().invoke(app, args)


def test_a_registered_eval_runs_validates_and_is_tabled_under_its_title(toy, tmp_path):
    res = cli(["eval", "toy", "--random-init", "vit_tiny", "--device", "cpu", "--bias", "0.125", "--eval-limit", "10",
               "--results", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert (rec["kind"], rec["headline"], rec["unit"], rec["score"], rec["val_limit"]) == ("eval.toy", "score", "fraction", 0.625, 10)
    older = {"kind": "eval.toy", "created": "2026-01-01T00:00:00+00:00", "encoder": "older", "dataset": "toyset", "protocol": "toy",
             "score": 0.75}
    assert validate(older) is None and validate({**older, "score": 75}) == "score is 75; expected a fraction in [0, 1]"
    write_record(older, results_dir=tmp_path)
    write_record({**older, "encoder": "broken", "protocol": "other"}, results_dir=tmp_path)
    res = cli(["results", "--results", str(tmp_path)])
    assert res.exit_code == 0 and "protocol is 'other'; expected toy" in res.output
    md = (tmp_path / "README.md").read_text()
    assert "## Toy probe (`eval.toy`)" in md and "| score (subset) |" in md and "| 62.50 |" in md and "| 75.00 |" in md
    csv = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(csv.loc[csv["kind"] == "eval.toy", "value"]) == [62.5, 75.0]
