#!/usr/bin/env bash
# Append stages E and F of issue 22 (benchmarks/sweeps/queue_stage_EF.txt) to the queue once both recipes are
# chosen on val by the rule (`benchmarks/recipe_sweep.py --choose ijepa|mae`); exit 1 while either is pending,
# so the queue's `run` line that calls it is retried at the queue's next start.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QUEUE=${QUEUE:-benchmarks/sweeps/queue.txt}
choice() { "$PY" benchmarks/recipe_sweep.py --choose "$1" | sed -n 's/^.*: chosen on val (grid, mean over seeds): //p'; }
I=$(choice ijepa)
M=$(choice mae)
if [ -z "$I" ] || [ -z "$M" ]; then
  echo "stages E/F not appended: ijepa ${I:-pending}, mae ${M:-pending} (recipe_sweep.py --choose)" >&2
  exit 1
fi
gi=$(basename "${I%:*}" .yaml) vi=${I##*:} gm=$(basename "${M%:*}" .yaml) vm=${M##*:}
sed -e "s/fmnist_round7\.yaml/$gi.yaml/; s/r7_default/$vi/g" -e "s/fmnist_mae_round1\.yaml/$gm.yaml/; s/m1_base/$vm/g" \
  benchmarks/sweeps/queue_stage_EF.txt | grep -v '^#' | grep -v '^\s*$' >> "$QUEUE"
echo "appended stages E and F to $QUEUE: ijepa $I, mae $M"
