"""Collect a finished (or partly finished) sweep into a table and a plot.

    out/results.csv    one row per run: name, group, seed, overrides (JSON), one column per grid
                       key, status, step, train/<metric>..., eval/<metric>...
    out/results.png    the final value of the chosen eval metric per run (bars coloured by
                       group, the group mean marked)
"""
import csv
import json
import os
from typing import Any, Dict, List, Optional

from launch import spec as spec_lib
from lps_jax import metrics_log, rundir

STATUS = {0: 'done', 2: 'bad input', 3: 'diverged', 75: 'preempted'}


def run_dir(out: str, name: str) -> str:
  return os.path.join(out, 'runs', name)


def _row_from_workdir(workdir: str) -> Dict[str, Any]:
  """status/step/train/eval of one run directory (final.json, else the last CSV rows)."""
  final = rundir.read_final(workdir)
  if final is not None:
    return {'status': 'done', 'step': final.get('step'), 'train': final.get('train') or {},
            'eval': final.get('eval') or {}}
  if not os.path.exists(os.path.join(workdir, rundir.CONFIG_FILE)):
    return {'status': 'missing', 'step': None, 'train': {}, 'eval': {}}
  train = metrics_log.read_rows(workdir, 'train')
  evals = metrics_log.read_rows(workdir, 'eval')
  last = lambda rows: {k: v for k, v in rows[-1].items() if k != 'step'} if rows else {}
  step = int(train[-1]['step']) if train else None
  return {'status': 'incomplete', 'step': step, 'train': last(train), 'eval': last(evals)}


def collect_rows(spec: spec_lib.Spec, runs: List[spec_lib.Run], out: str,
                 statuses: Optional[Dict[str, str]] = None,
                 workdirs: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
  rows = []
  for run in runs:
    workdir = (workdirs or {}).get(run.name) or run_dir(out, run.name)
    found = _row_from_workdir(workdir)
    status = found['status']
    if statuses and run.name in statuses and status != 'done':
      status = statuses[run.name]
    row = {'name': run.name, 'group': run.group, 'seed': run.seed,
           'overrides': json.dumps(run.overrides, sort_keys=True), 'status': status,
           'step': found['step'] if found['step'] is not None else ''}
    for key in spec.grid:
      row[key] = spec_lib.format_value(run.overrides[key])
    row.update({f'train/{k}': v for k, v in found['train'].items()})
    row.update({f'eval/{k}': v for k, v in found['eval'].items()})
    rows.append(row)
  return rows


def write_table(rows: List[Dict[str, Any]], path: str) -> None:
  columns = []
  for row in rows:
    columns += [c for c in row if c not in columns]
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    for row in rows:
      writer.writerow({c: row.get(c, '') for c in columns})


def pick_metric(rows: List[Dict[str, Any]], metric: Optional[str]) -> Optional[str]:
  if metric:
    return metric if metric.startswith(('eval/', 'train/')) else f'eval/{metric}'
  for row in rows:
    for column in row:
      if column.startswith('eval/'):
        return column
  return None


def plot(rows: List[Dict[str, Any]], metric: str, path: str, title: str = '') -> None:
  """Horizontal bars: metric per run, coloured by group; a black tick at each group's mean."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = [r['name'] for r in rows]
  values = [float(r[metric]) if r.get(metric, '') != '' else float('nan') for r in rows]
  groups = list(dict.fromkeys(r['group'] for r in rows))
  colors = plt.get_cmap('tab10')
  fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
  ax.barh(range(len(rows)), values,
          color=[colors(groups.index(r['group']) % 10) for r in rows])
  for g, group in enumerate(groups):
    idx = [i for i, r in enumerate(rows) if r['group'] == group]
    vals = [values[i] for i in idx if values[i] == values[i]]
    if vals:
      mean = sum(vals) / len(vals)
      ax.plot([mean, mean], [min(idx) - 0.4, max(idx) + 0.4], c='k', lw=2)
    del g
  ax.set_yticks(range(len(rows)))
  ax.set_yticklabels(names, fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel(f'final {metric}')
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def collect(spec: spec_lib.Spec, runs: List[spec_lib.Run], out: str,
            statuses: Optional[Dict[str, str]] = None,
            workdirs: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
  """Write out/results.csv and out/results.png; returns the rows."""
  rows = collect_rows(spec, runs, out, statuses, workdirs)
  write_table(rows, os.path.join(out, 'results.csv'))
  metric = pick_metric(rows, spec.metric)
  if metric is not None and any(r.get(metric, '') != '' for r in rows):
    plot(rows, metric, os.path.join(out, 'results.png'), f'{spec.name}: final {metric}')
  return rows


def summary_lines(rows: List[Dict[str, Any]], metric: Optional[str]) -> List[str]:
  """One line per run: status, step and the metric (for the launcher's stdout)."""
  lines = []
  width = max([len(r['name']) for r in rows] + [4])
  for r in rows:
    value = r.get(metric, '') if metric else ''
    value = f'{value:.4g}' if isinstance(value, float) else str(value)
    lines.append(f'{r["name"]:<{width}}  {r["status"]:<10}  step={r["step"]!s:<8}  '
                 f'{metric or ""}={value}')
  return lines
