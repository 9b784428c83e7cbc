"""What is committed is what the records say: tables regenerated from a copy of the committed
records must equal the committed ones byte for byte (run `ijepa results` after adding records)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ijepa.results.readme import write_tables

RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    shutil.copytree(RESULTS / "records", out / "records")
    write_tables(out)
    return out


@pytest.mark.parametrize("name", ["README.md", "summary.csv"])
def test_committed_tables_match_the_committed_records(regenerated, name):
    assert (regenerated / name).read_text() == (RESULTS / name).read_text(), f"results/{name} is stale: run `ijepa results`"


def test_a_new_record_makes_the_committed_tables_stale(regenerated, tmp_path):
    """The check above can fail: one more record changes the regenerated summary."""
    from ijepa.results.io import write_record

    shutil.copytree(regenerated / "records", tmp_path / "records")
    write_record({"kind": "eval.knn", "encoder": "x", "dataset": "fashion-mnist", "top1": 0.5,
                  "selected_on": "train-heldout", "reported_on": "test"}, results_dir=tmp_path)
    write_tables(tmp_path)
    assert (tmp_path / "summary.csv").read_text() != (RESULTS / "summary.csv").read_text()
