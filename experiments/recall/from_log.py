"""Rebuild a set's run records from the runner's progress log, for a call whose JSONs did not come back.

    python experiments/recall/from_log.py --log results/<set>/logs/x.log --commit C --gpu 'NVIDIA H200' -- <runner args>

The runner's arguments (after `--`) give each run's spec; every `[i/n] ... acc A (W s, M ms/step)` line of the log gives
its accuracy (3 decimals), wall time and step time. The records say so: `source` is 'progress log', the curve holds the
final point only, fields the log lacks are None (test loss) or 'not in the log' (torch version). A run the log shows cut short is skipped.
"""
from __future__ import annotations
import argparse, re, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import parser as run_parser, run_specs, run_name, write_json   # noqa: E402

LINE = re.compile(r'\[\d+/\d+\] (\S+) d(\d+) L(\d+)/(\d+) lr (\S+) seed (\d+): acc ([\d.]+)(?P<tag> [A-Z]+[^(]*)? '
                  r'\((\d+) s, (\d+) ms/step\)')


def records_from_log(log: str, runner_args: list[str], commit: str, gpu: str, command: str) -> list[dict]:
    "One record per completed run line of `log`, its spec from `runner_args` (ValueError for a line no spec matches)."
    a = run_parser().parse_args(runner_args)
    if a.points: a.settings, a.widths = sorted({p[:2] for p in a.points}), sorted({p[2] for p in a.points})
    specs = {(s['mixer'], s['d_model'], s['seq'], s['pairs'], s['lr'], s['seed']): s for s in run_specs(a, 'cuda')}
    out = []
    for m in LINE.finditer(log):
        mixer, d, seq, pairs, lr, seed, acc, tag, wall, ms = m.groups()
        if tag: continue                                           # PARTIAL or DIVERGED: not a finished run
        key = (mixer, int(d), int(seq), int(pairs), float(lr), int(seed))
        if key not in specs: raise ValueError(f'log line {m.group(0)!r} matches no run of the given arguments')
        s = specs[key]
        out.append(dict(s, test_acc=float(acc), test_loss=None, steps_done=s['steps'], complete=True, diverged=False,
                        curve=[dict(step=s['steps'], train_loss=None, test_acc=float(acc), test_loss=None, eval_n=s['n_test'])],
                        wall_s=float(wall), s_per_step=int(ms) / 1000, commit=commit, command=command, gpu=gpu,
                        torch='not in the log', source='progress log'))
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if '--' not in argv:
        print('from_log.py: error: give the runner arguments after --', file=sys.stderr); return 2
    i = argv.index('--')
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--log', required=True); p.add_argument('--commit', required=True); p.add_argument('--gpu', required=True)
    a = p.parse_args(argv[:i])
    if not Path(a.log).is_file():
        print(f'from_log.py: error: --log {a.log}: no such file', file=sys.stderr); return 2
    rargs = argv[i + 1:]
    recs = records_from_log(Path(a.log).read_text(), rargs, a.commit, a.gpu, 'python3 experiments/recall/run.py ' + ' '.join(rargs))
    for r in recs:
        write_json(Path(r_out(rargs)) / (run_name(r) + '.json'), r)
    print(f'{len(recs)} records written')
    return 0


def r_out(rargs): return run_parser().parse_args(rargs).out


if __name__ == '__main__':
    sys.exit(main())
