#!/usr/bin/env bash
# The GPU work in batched stages, one device call each (every stage stays under the 10-minute limit of one call):
#   run(command="bash tools/gpu_remaining.sh decode nbs", carry=[".whl"], timeout_s=600)     # H100
# Several stages in one call run in the order given, each cut to what is left of END seconds (default 585).
# In order of what they unblock (30 device-minutes per session fit about three):
#   decode re-runs 12_generate's `#| cuda` cells: the CUDA-graph check against eager decoding and the decode table
#          with its "cuda graph" rows -> $OUT/nbs09.tar.gz
#   train  the `#| cuda` cell of 11_train alone -> $OUT/nbs08.tar.gz, $OUT/train08.txt
#   nbs    the `#| cuda` cells of 09_model and 11_train alone (tools/gpu_cells.py --write: outputs saved into the
#          notebooks, every other cell untouched) -> $OUT/nbs0708.tar.gz, $OUT/model07.txt, $OUT/train08.txt
#   bench  the full hm_bench table ($OUT/bench_h100.json; partial results are saved after each benchmark)
#   ablate the GPU ablation study (GPU_COMMAND in nbs/14_ablations.ipynb, about 4 minutes) -> $OUT/ablations.tar.gz;
#          SEEDS=1 runs it for seed 1 instead of seed 0 (copy the JSONs beside seed 0's in nbs/ablation_results/gpu-small)
#   memtask the memory question with a 4x longer task phase (GPU_TASK_COMMAND, about 5 minutes) -> $OUT/memtask.tar.gz
#   ddp    2-GPU DDP on nvidia-h200-x2: tokens/s of `small` on 1 GPU vs 2 GPUs (torchrun, nccl) -> $OUT/ddp.txt
# Done on 2026-11-23 (two sessions): decode (twice), bench, ablate (seeds 0 and 1), nbs (07), train (08).
# Left: ddp, when status lists nvidia-h200-x2: run(command="END=500 bash tools/gpu_remaining.sh ddp", kind="nvidia-h200-x2",
# carry=[".whl"]).
# .whl/ is built by tools/gpu_wheels.sh. Back here: untar, then `python tools/gpu_merge.py RETURNED.ipynb nbs/NAME.ipynb`
# copies only the cuda cells' outputs (matched by source, errors refused), then nbdev_clean.
set -uo pipefail
END=${END:-585}
source tools/gpu_setup.sh >/dev/null || exit 1
printf 'import sys, types\nsys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))\n' > /tmp/site/sitecustomize.py
mkdir -p "$OUT"
printf 'import sys\nfrom hypermnemosyne.train.loop import hm_train\nsys.exit(hm_train())\n' > /tmp/hm_train.py
left() { local l=$(( END - SECONDS )); echo $(( l < $1 ? l : $1 )); }
# study CMD MAX_S NAME DIR: run an ablation command, then pack its JSONs (/tmp/DIR) and worker logs (/tmp/DIR_runs)
study() { echo "$1"; timeout $(left $2) $1 2>&1 | tee "$OUT/$3_log.txt" | tail -40
          tar czf "$OUT/$3.tar.gz" -C /tmp "$4" $(cd /tmp && ls "$4"_runs/*.log); }
train08() { timeout $(left $1) python3 tools/gpu_cells.py nbs/11_train.ipynb hypermnemosyne.train.loop --write 2>&1 | grep -v Warning | tee "$OUT/train08.txt" | tail -20; }
for stage in "${@:-nbs}"; do
echo "== stage $stage at ${SECONDS} s"
case $stage in
decode)
  timeout $(left 420) python3 tools/run_nb.py nbs/12_generate.ipynb --flags cuda --only-flagged --keep-going 2>&1 | tee -a "$OUT/log.txt" | tail -8
  tar czf "$OUT/nbs09.tar.gz" nbs/12_generate.ipynb ;;
nbs)
  # the `#| cuda` cells alone, outputs written into the notebooks (tools/gpu_cells.py --write): run_nb would re-run every
  # CPU cell first, which took the whole call on 2026-11-23 (09_model's did not finish in 209 s)
  timeout $(left 300) python3 tools/gpu_cells.py nbs/09_model.ipynb hypermnemosyne.model --write 2>&1 | grep -v Warning | tee "$OUT/model07.txt" | tail -20
  echo "11_train cuda cell, $(left 999) s left"
  [ $(left 999) -gt 40 ] && train08 999
  tar czf "$OUT/nbs0708.tar.gz" nbs/09_model.ipynb nbs/11_train.ipynb ;;
train)
  # 11_train's `#| cuda` cell alone (small, 60 steps, eager then torch.compile; about 3 minutes with the compile)
  train08 400; tar czf "$OUT/nbs08.tar.gz" nbs/11_train.ipynb ;;
bench)
  timeout $(left 570) python3 -c "from hypermnemosyne.bench.runner import bench_main; bench_main(out='$OUT/bench_h100.json')" 2>&1 | tee "$OUT/bench_log.txt" | tail -80 ;;
ablate)
  cmd=$(python3 -c "from hypermnemosyne.ablations import GPU_COMMAND; print(GPU_COMMAND)"); cmd=${cmd/--seeds 0 /--seeds ${SEEDS:-0} }
  study "$cmd" 560 ablations hm_ablations ;;
memtask)
  # the memory question with a 400-step task phase (GPU_TASK_COMMAND in nbs/14_ablations.ipynb, memory and mHC, seeds 0,1)
  study "$(python3 -c "from hypermnemosyne.ablations import GPU_TASK_COMMAND; print(GPU_TASK_COMMAND)")" 500 memtask hm_ablations_task ;;
ddp)
  nvidia-smi -L
  S="--preset small --no-progress --steps 40 --warmup 3 --eval_every 0 --eval_batches 2 --ckpt_every 0 --batch_size 8 --seq_len 1024"
  { echo "== small, 1 GPU"; timeout 200 python3 /tmp/hm_train.py $S --out /tmp/s1; echo rc=$?
    echo "== small, 2 GPUs (DDP, nccl)"; timeout 240 torchrun --standalone --nproc_per_node 2 /tmp/hm_train.py $S --out /tmp/s2; echo rc=$?
    python3 tools/ddp_report.py /tmp/s1 /tmp/s2; } 2>&1 | tee "$OUT/ddp.txt" | tail -40 ;;
*) echo "unknown stage $stage (decode, nbs, train, bench, ablate, memtask, ddp)"; exit 2 ;;
esac
done
