"""What the results views show: `ijepa results plot` and the tables keep datasets, probes and
subsets apart, name the split and the limits of every number, and `make demo` writes none of
the committed results."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_writes_only_git_ignored_paths():
    """Every demo command that writes records or tables names a `--results` folder git ignores
    (the default `results/` holds the committed README.md and summary.csv)."""
    out = subprocess.run(["make", "-n", "-B", "demo"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    commands = [shlex.split(line) for line in out.splitlines() if re.match(r"\S*/bin/ijepa ", line)]
    assert {c[1] for c in commands} == {"pretrain", "eval", "results"}
    for words in commands:
        assert "--results" in words, f"{' '.join(words)}: writes under the committed results/"
        folder = words[words.index("--results") + 1]
        ignored = subprocess.run(["git", "check-ignore", "-q", f"{folder}/README.md"], cwd=ROOT)
        assert ignored.returncode == 0, f"{' '.join(words)}: {folder} is not ignored by git"
