#!/usr/bin/env bash
# Reproduce the recorded GPU numbers on a GPU machine (tools/README.md): bash tools/gpu_run.sh STAGE [NOTEBOOK ...]
#   cells NB...  run the `#| cuda` cells of the notebooks (tools/run_nb.py) and file their outputs in
#                nbs/gpu_records.json (tools/gpu_records.py add), copied to $OUT/gpu_records.json
#   bench        the hm_bench table -> $OUT/bench.json
#   ablations    the GPU ablation study (GPU_COMMAND of experiments/ablations/run.py; SEEDS=1 for seed 1)
#   memtask      the memory question with the long task phase (GPU_TASK_COMMAND) -> $OUT/ablations-*.tgz
#   ddp          tokens/s of `small` on 1 GPU and on 2 GPUs (torchrun, nccl; needs 2 GPUs) -> $OUT/ddp.txt
#   speed        issue 19's measurements, each part its own process under a timeout from one budget of SPEED_BUDGET
#                seconds (default 540): tools/speed_check.py train --compile (base vs transformer, both compiled),
#                decode --compile (eager, graph and compiled graph after 1K and 32K tokens), then overheads with what
#                is left -> $OUT/speed-*.json, $OUT/speed.log (SPEED_QUICK=1: the CPU check of the stage, tiny models;
#                the eager training rows: tools/speed_check.py train)
#   verify       the checks still owed to a GPU, in one call of under 10 minutes: the `#| cuda` cells of 02_mhc,
#                05_memory and 12_generate side by side (each under VERIFY_NB_SECONDS, default 200; a notebook is filed
#                in gpu_records.json only when every cell ran and passed), then tools/speed_check.py decode --compile
#                --fused_decode (under VERIFY_DECODE_SECONDS, default 225) -> $OUT/verify.tgz (the notebooks, their logs,
#                gpu_records.json, speed-*.json: a call brings back at most 8 files)
#   length       study B of issue 16 for one call: experiments/length/run.py with ARMS (default: the two memory arms),
#                SEEDS (default 0), STEPS (default 3000), --mem_compile, a 540 s deadline, into
#                experiments/length/results/$SET (default h200-next) -> $OUT/length.tgz, $OUT/length.log
#   verify-heavy the notebooks whose `#| cuda` cells compile for minutes: 03_ssd and 09_model side by side, each under
#                VERIFY_NB_SECONDS (default 540; at 420 s neither finished on an H200), filed as in verify -> $OUT/verify-heavy.tgz
# Outputs go to $OUT (default $TMPDIR/gpu-out); COMMIT names the commit the records are filed under (default: git's
# HEAD; a copy of the tree without .git needs it).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${TMPDIR:-/tmp}/gpu-out}; mkdir -p "$OUT"; echo "outputs: $OUT"
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
[ -d .whl ] && source tools/gpu_setup.sh
study() {  # study COMMAND NAME: run an ablation command, pack its result folder
  local dir; dir=$(python3 -c 'import shlex, sys; a = shlex.split(sys.argv[1]); print(a[a.index("--out") + 1])' "$1")
  echo "$1"; $1 2>&1 | tee "$OUT/$2.log" | tail -40
  tar czf "$OUT/$2.tgz" "$dir"
}
command_of() { python3 -c "import runpy; print(runpy.run_path('experiments/ablations/run.py')['$1'])"; }
speed_part() {  # speed_part NAME SECONDS ARGS...: one tools/speed_check.py part, skipped when no time is left
  local name=$1 secs=$2; shift 2
  if [ "$secs" -lt 30 ]; then echo "== $name: skipped, ${secs} s left" | tee -a "$OUT/speed.log"; return; fi
  echo "== $name (timeout ${secs} s)" | tee -a "$OUT/speed.log"
  timeout "$secs" python3 tools/speed_check.py "$@" ${SPEED_QUICK:+--quick} --out "$OUT/speed-$name.json" >> "$OUT/speed.log" 2>&1 \
    || echo "== $name: exit $? (124: timed out)" | tee -a "$OUT/speed.log"
}
stage=${1:?usage: bash tools/gpu_run.sh cells NB... | verify | verify-heavy | length | bench | ablations | memtask | ddp | speed}; shift
case $stage in
cells)
  [ $# -gt 0 ] || { echo 'cells: name the notebooks, e.g. nbs/02_mhc.ipynb' >&2; exit 2; }
  for nb in "$@"; do
    python3 tools/run_nb.py "$nb" --flags cuda --only-flagged --keep-going | tee -a "$OUT/cells.log"
  done
  python3 tools/gpu_records.py add "$@" --commit "$COMMIT" \
    --command 'python tools/run_nb.py NB --flags cuda --only-flagged --keep-going'
  cp nbs/gpu_records.json "$OUT/gpu_records.json" ;;
verify|verify-heavy)
  if [ "$stage" = verify ]; then nbs=(02_mhc 05_memory 12_generate); secs=${VERIFY_NB_SECONDS:-200}
  else nbs=(03_ssd 09_model); secs=${VERIFY_NB_SECONDS:-540}; fi
  for nb in "${nbs[@]}"; do
    timeout "$secs" python3 tools/run_nb.py "nbs/$nb.ipynb" --flags cuda --only-flagged --keep-going \
      > "$OUT/nb-$nb.log" 2>&1 &
  done
  wait || true
  clean=(); files=()
  for nb in "${nbs[@]}"; do
    cp "nbs/$nb.ipynb" "$OUT/"; files+=("$nb.ipynb" "nb-$nb.log"); tail -n 3 "$OUT/nb-$nb.log"
    grep -q "^$nb.ipynb: ran in [0-9.]* s$" "$OUT/nb-$nb.log" && clean+=("nbs/$nb.ipynb")
  done
  if [ ${#clean[@]} -gt 0 ]; then
    python3 tools/gpu_records.py add "${clean[@]}" --commit "$COMMIT" \
      --command 'python tools/run_nb.py NB --flags cuda --only-flagged --keep-going' \
      && cp nbs/gpu_records.json "$OUT/gpu_records.json" && files+=(gpu_records.json) || echo "gpu_records: nothing filed"
  fi
  if [ "$stage" = verify ]; then
    timeout "${VERIFY_DECODE_SECONDS:-225}" python3 tools/speed_check.py decode --compile --fused_decode \
      --out "$OUT/speed-decode-compiled-fused.json" > "$OUT/speed-decode.log" 2>&1 || echo "decode: exit $? (124: timed out)"
    tail -n 30 "$OUT/speed-decode.log"; files+=(speed-decode.log)
    [ -f "$OUT/speed-decode-compiled-fused.json" ] && files+=(speed-decode-compiled-fused.json)
  fi
  tar czf "$OUT/$stage.tgz" -C "$OUT" "${files[@]}" ;;
length)
  set_dir="experiments/length/results/${SET:-h200-next}"
  timeout 570 python3 experiments/length/run.py --arms "${ARMS:-ssd+memory,ssd+swa+memory}" --seeds "${SEEDS:-0}" \
    --steps "${STEPS:-3000}" --mem_compile --deadline 540 --eval_reserve 150 --out "$set_dir" \
    > "$OUT/length.log" 2>&1 || echo "length: exit $? (124: timed out)"
  tar czf "$OUT/length.tgz" "$set_dir"; tail -n 20 "$OUT/length.log" ;;
bench)
  python3 -c 'import sys; from hypermnemosyne import hm_bench; sys.exit(hm_bench())' --out "$OUT/bench.json" \
    2>&1 | tee "$OUT/bench.log" | tail -80 ;;
ablations)
  cmd=$(command_of GPU_COMMAND); study "${cmd/--seeds 0 /--seeds ${SEEDS:-0} }" ablations-gpu-small ;;
memtask)
  study "$(command_of GPU_TASK_COMMAND)" ablations-gpu-small-task400 ;;
ddp)
  nvidia-smi -L
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  printf 'import sys\nfrom hypermnemosyne import hm_train\nsys.exit(hm_train())\n' > "$tmp/hm_train.py"
  S="--preset small --no-progress --steps 40 --warmup 3 --eval_every 0 --eval_batches 2 --ckpt_every 0 --batch_size 8
     --seq_len 1024"
  { echo "== small, 1 GPU"; python3 "$tmp/hm_train.py" $S --out "$tmp/one"
    echo "== small, 2 GPUs (DDP, nccl)"; torchrun --standalone --nproc_per_node 2 "$tmp/hm_train.py" $S --out "$tmp/two"
    python3 tools/ddp_report.py "$tmp/one" "$tmp/two"; } 2>&1 | tee "$OUT/ddp.txt" | tail -40 ;;
speed)
  end=$((SECONDS + ${SPEED_BUDGET:-540}))
  left() { local l=$((end - SECONDS - ${1:-0})); echo $((l > 0 ? l : 0)); }
  speed_part train-compiled $(left 280) train --compile; speed_part decode-compiled $(left 120) decode --compile
  speed_part overheads $(left) overheads
  tail -n 60 "$OUT/speed.log" ;;
*) echo "unknown stage $stage: cells, verify, verify-heavy, length, bench, ablations, memtask, ddp or speed" >&2; exit 2 ;;
esac
