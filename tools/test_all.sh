#!/usr/bin/env bash
# Every test, in the order that fails fastest: library/notebook sync, README freshness, notebooks, integration tests.
# GPU cells (`#| cuda`) and long ones (`#| slow`) are skipped here; on a GPU run: python tools/test_nbs.py --flags "cuda slow" --n_workers 1
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} PYTHONHASHSEED=0 MPLBACKEND=Agg
python tools/check_export.py
python tools/readme.py --check
start=$(date +%s)
echo "nbdev_test: every notebook, each in a fresh process (about 3 minutes on 2 cores; tools/test_nbs.py)"
timeout 900 python tools/test_nbs.py --n_workers "${HM_TEST_WORKERS:-2}" ${HM_TEST_FLAGS:+--flags "$HM_TEST_FLAGS"}
echo "nbdev_test: $(( $(date +%s) - start )) s"
echo "pytest: integration tests (CLIs, a real Jupyter kernel, the widget in a browser)"
# The browser test first trains the README's tiny run (about 5 minutes on one core): it runs in a second process beside
# the other tests, each single-threaded, so the two cores share the work; its log is printed when both are done.
start=$(date +%s)
browser_log=$(mktemp)
timeout 1200 python -m pytest -v --durations=3 tests/test_widget_browser.py > "$browser_log" 2>&1 & browser=$!
status=0
timeout 1200 python -m pytest -v --durations=5 tests --ignore=tests/test_widget_browser.py || status=$?
wait "$browser" || status=$?
echo "---- the browser test (run beside the others):"; cat "$browser_log"; rm -f "$browser_log"
echo "pytest: $(( $(date +%s) - start )) s"
exit "$status"
