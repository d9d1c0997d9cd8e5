#!/usr/bin/env bash
# The GPU work this session's device budget did not cover, as one batched command for an H100 (about 9 minutes):
#   run(command="bash tools/gpu_remaining.sh", carry=[".whl"], timeout_s=600)
# It re-runs the `#| cuda` cells of the notebooks whose GPU outputs are missing or stale (outputs of every other cell are
# kept), then the full hm_bench table; everything comes back under $OUT (notebooks as a tarball).
# 2-GPU DDP (nvidia-h200-x2):  torchrun --standalone --nproc_per_node 2 --no-python hm_train --preset small \
#     --out /tmp/ddp --steps 60 --batch_size 8 --seq_len 1024 --eval_every 0 --ckpt_every 0   (compare tokens/s with 1 GPU)
# Ablations on an H100: see GPU_COMMAND in nbs/11_ablations.ipynb.
set -uo pipefail
source tools/gpu_setup.sh >/dev/null || exit 1
printf 'import sys, types\nsys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))\n' > /tmp/site/sitecustomize.py
mkdir -p "$OUT"
nbs=(nbs/03_memory.ipynb nbs/08_train.ipynb nbs/09_generate.ipynb)
for nb in "${nbs[@]}"; do
  timeout 200 python3 tools/run_nb.py "$nb" --flags cuda --only-flagged --keep-going 2>&1 | tee -a "$OUT/log.txt" | tail -5
done
tar czf "$OUT/nbs.tar.gz" "${nbs[@]}"
timeout 240 python3 -c "from hypermnemosyne.bench import bench_main; bench_main(out='$OUT/bench_h100.json')" 2>&1 | tee "$OUT/bench_log.txt" | tail -60
