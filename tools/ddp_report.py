"""Throughput scaling of DDP from two hm_train run dirs: python tools/ddp_report.py ONE_GPU_DIR TWO_GPU_DIR.
tokens/s in metrics.jsonl is global (batch x seq x accum x world per step); the median skips the first 5 steps
(warm-up)."""
import json, statistics, sys
from pathlib import Path

def median_tps(run):
    rows = [r for r in map(json.loads, (Path(run) / 'metrics.jsonl').read_text().splitlines()) if 'tokens_per_s' in r]
    return statistics.median(r['tokens_per_s'] for r in rows[5:]), rows[-1]['loss'], len(rows)

if __name__ == '__main__':
    one, two = (median_tps(a) for a in sys.argv[1:3])
    print('| GPUs | median tokens/s | last loss | steps |\n|---|---|---|---|')
    for n, (t, l, s) in ((1, one), (2, two)): print(f'| {n} | {t:,.0f} | {l:.3f} | {s} |')
    print(f'scaling 2 GPUs / 1 GPU: {two[0] / one[0]:.2f}x (ideal 2.00x), efficiency {two[0] / one[0] / 2:.0%}')
