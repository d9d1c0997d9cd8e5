#!/usr/bin/env bash
# Every test, in the order that fails fastest: library/notebook sync, README freshness, notebooks, integration tests.
# GPU cells (`#| cuda`) and long ones (`#| slow`) are skipped here; on a GPU run: nbdev_test --flags "cuda slow" --n_workers 1
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} PYTHONHASHSEED=0 MPLBACKEND=Agg
python tools/check_export.py
python tools/readme.py --check
start=$(date +%s)
echo "nbdev_test: every notebook (about 3 minutes on 2 cores; each is printed as it starts and ends)"
timeout 900 nbdev_test --n_workers "${HM_TEST_WORKERS:-2}" --do_print --timing ${HM_TEST_FLAGS:+--flags "$HM_TEST_FLAGS"}
echo "nbdev_test: $(( $(date +%s) - start )) s"
echo "pytest: integration tests (CLIs, a real Jupyter kernel, the widget in a browser)"
timeout 1200 python -m pytest -v --durations=5 tests
