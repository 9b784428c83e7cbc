#!/usr/bin/env bash
# The experiment queue (issue 22): one CPU-heavy job at a time, in the background, resumable.
# Each line of QUEUE is a recipe_sweep grid and the variant names to run from it (`-
# random-init` records the random-init reference), or `run NAME COMMAND...`: a command run
# once (done when runs/queue-done/NAME exists; commands that resume, like `ijepa pretrain
# --resume`, pick up where a killed one stopped). Lines are read one at a time, so lines
# appended while the queue runs are picked up. A variant whose record exists is skipped, a
# half-trained one resumes from its checkpoint. Every finished variant's record is committed
# at once with the results tables and figures regenerated from it (only those paths: nothing
# else staged is swept in).
#   nohup benchmarks/queue.sh > runs/queue.log 2>&1 &      # start or restart it the same way
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
IJEPA=${IJEPA:-.venv/bin/ijepa}
QUEUE=${QUEUE:-benchmarks/sweeps/queue.txt}
TABLES="results/records/ results/README.md results/summary.csv results/*.png"  # the figures too (the curve plots write them)
commit_records() {  # the record and the tables regenerated from it, so the tree stays consistent
  "$IJEPA" results > /dev/null || return
  git add $TABLES || return
  git diff --cached --quiet -- $TABLES && return
  for _ in 1 2 3 4 5; do
    git commit -q -m "Queue record: $1" -- $TABLES && return
    sleep 5
  done
}
i=1
while line=$(grep -v '^\s*#' "$QUEUE" | grep -v '^\s*$' | sed -n "${i}p"); [ -n "$line" ]; do
  read -r grid names <<< "$line"
  if [ "$grid" = run ]; then
    read -r _ name cmd <<< "$line"
    if [ ! -e "runs/queue-done/$name" ]; then
      echo "=== $(date -u +%FT%TZ) run $name: $cmd"
      if bash -c "$cmd"; then mkdir -p runs/queue-done && touch "runs/queue-done/$name"; else echo "FAILED: $name"; fi
      commit_records "$name"
    fi
    i=$((i + 1)); continue
  fi
  for name in $names; do
    echo "=== $(date -u +%FT%TZ) $grid $name"
    if [ "$name" = random-init ]; then
      "$PY" benchmarks/recipe_sweep.py --random-init || echo "FAILED: random-init"
    else
      "$PY" benchmarks/recipe_sweep.py --grid "$grid" --only "$name" || echo "FAILED: $name"
    fi
    commit_records "$name"
  done
  i=$((i + 1))
done
echo "=== $(date -u +%FT%TZ) queue done"
"$PY" benchmarks/recipe_sweep.py --summary
