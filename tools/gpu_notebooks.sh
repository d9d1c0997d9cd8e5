#!/usr/bin/env bash
# On the GPU machine: run the given notebooks with their `#| cuda` cells, keeping the committed CPU outputs of every
# other cell, and bring the notebooks back as $OUT/nbs.tar.gz (plus a log). Usage: bash tools/gpu_notebooks.sh nbs/02_ssd.ipynb ...
set -uo pipefail
source tools/gpu_setup.sh || exit 1
mkdir -p "$OUT"
for nb in "$@"; do
  start=$(date +%s)
  timeout 590 python3 tools/run_nb.py "$nb" --flags "cuda" --only-flagged --keep-going 2>&1 | tee -a "$OUT/log.txt" | tail -40
  echo "$nb: $(( $(date +%s) - start )) s" | tee -a "$OUT/log.txt"
done
tar czf "$OUT/nbs.tar.gz" "$@"
