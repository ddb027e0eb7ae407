"""Metric sinks for a run directory.

Always:      workdir/<stream>.csv (one per stream: train, eval) and workdir/metrics.jsonl (each
             row {'run': run id, 'stream', 'step', ...}: rows of another run can be told apart)
Optional:    TensorBoard event files in workdir/tensorboard/ (tensorboardX),
             Weights & Biases (imported lazily; the run id is kept in workdir/wandb_id.txt).

Resuming from a checkpoint at step S moves the CSV/JSONL rows after S out of the files into
workdir/set_aside/after_step_<S>.<time>/ (`truncate_after`; no row is ever deleted), and
TensorBoard is told to purge events after S, so that the metrics of a resumed run read exactly
like an uninterrupted one.
"""
import csv
import json
import math
import os
import time
from typing import Dict, Optional, Tuple

import datetime

import numpy as np

from lps_jax import preemption

JSONL = 'metrics.jsonl'
SET_ASIDE_DIR = 'set_aside'
TENSORBOARD_DIR = 'tensorboard'
WANDB_ID_FILE = 'wandb_id.txt'


class MissingDependencyError(RuntimeError):
  """An optional logging backend was asked for but is not installed (one-line message)."""


def to_floats(metrics) -> Dict[str, float]:
  return {k: float(np.asarray(v)) for k, v in metrics.items()}


def first_nonfinite(metrics: Dict[str, float]) -> Optional[Tuple[str, float]]:
  """(key, value) of the first NaN/Inf metric (losses first), or None."""
  bad = [(key, value) for key, value in metrics.items() if not math.isfinite(value)]
  bad.sort(key=lambda item: 'loss' not in item[0])
  return bad[0] if bad else None


# ---------------------------------------------------------------------------------- files
def _csv_streams(workdir: str):
  return [name for name in sorted(os.listdir(workdir))
          if name.endswith('.csv') and os.path.isfile(os.path.join(workdir, name))]


def _rewrite(path: str, keep_line, aside: str, header: int = 0) -> int:
  """Keep the lines for which keep_line(index, line) is True; the others are appended to the
  file of the same name in directory `aside` (after the first `header` lines, e.g. the CSV
  header), written and synced before `path` is replaced (atomic). Returns lines moved."""
  with open(path, newline='') as f:
    lines = f.readlines()
  kept = [line for i, line in enumerate(lines) if keep_line(i, line)]
  moved = [line for i, line in enumerate(lines) if not keep_line(i, line)]
  if moved:
    os.makedirs(aside, exist_ok=True)
    with open(os.path.join(aside, os.path.basename(path)), 'w', newline='') as f:
      f.writelines(lines[:header] + [l if l.endswith('\n') else l + '\n' for l in moved])
      f.flush()
      os.fsync(f.fileno())
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='') as f:
      f.writelines(kept)
    os.replace(tmp, path)
  return len(moved)


def set_aside_dir(workdir: str, step: int) -> str:
  """A fresh workdir/set_aside/after_step_<step>.<time> path (not created)."""
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
  return os.path.join(workdir, SET_ASIDE_DIR, f'after_step_{step}.{stamp}')


def truncate_after(workdir: str, step: int, aside: Optional[str] = None) -> int:
  """Move every metrics row with step > `step` (CSV streams and JSONL) out of the files into
  `aside` (default set_aside_dir(workdir, step)), which holds files of the same names (CSV
  with their header); nothing is deleted. Returns the rows moved."""
  if not os.path.isdir(workdir):
    return 0
  aside = aside or set_aside_dir(workdir, step)
  dropped = 0
  for name in _csv_streams(workdir):
    path = os.path.join(workdir, name)
    with open(path, newline='') as f:
      header = next(csv.reader(f), None)
    if not header or header[0] != 'step':
      continue

    def keep_csv(i, line):
      if i == 0 or not line.strip():
        return True
      try:
        return int(float(line.split(',', 1)[0])) <= step
      except ValueError:
        return False          # a half-written last line from a killed process

    dropped += _rewrite(path, keep_csv, aside, header=1)
  path = os.path.join(workdir, JSONL)
  if os.path.exists(path):

    def keep_json(i, line):
      del i
      try:
        return int(json.loads(line)['step']) <= step
      except (ValueError, KeyError, TypeError):
        return False

    dropped += _rewrite(path, keep_json, aside)
  return dropped


def read_rows(workdir: str, stream: str):
  """The rows of workdir/<stream>.csv as a list of {column: float}."""
  path = os.path.join(workdir, f'{stream}.csv')
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    return [{k: float(v) for k, v in row.items() if v not in ('', None)}
            for row in csv.DictReader(f)]


# ---------------------------------------------------------------------------------- optional sinks
def check_wandb() -> None:
  """MissingDependencyError unless wandb can be imported (call before creating the workdir)."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise MissingDependencyError('--wandb needs the wandb package: pip install wandb '
                                 '(or run without --wandb)') from None


def init_wandb(workdir: str, config: dict, project: str, name: Optional[str] = None):
  """A wandb run for this workdir; a resumed workdir continues its wandb run (same id)."""
  check_wandb()
  import wandb  # pylint: disable=g-import-not-at-top
  id_path = os.path.join(workdir, WANDB_ID_FILE)
  if os.path.exists(id_path):
    with open(id_path) as f:
      run_id = f.read().strip()
  else:
    run_id = wandb.util.generate_id()
    with open(id_path, 'w') as f:
      f.write(run_id)
  return wandb.init(project=project, name=name or os.path.basename(os.path.abspath(workdir)),
                    id=run_id, resume='allow', dir=workdir, config=config)


class MetricsLogger:
  """Appends rows {step, **metrics} to workdir/<prefix>.csv, metrics.jsonl and the extra sinks.

  resume_step: None for a new run; S when continuing from a checkpoint at step S (rows after S
  are first moved to `set_aside` (a directory, see truncate_after), and TensorBoard purges its
  events after S).
  run_id: the run's id (config.json 'run_id'), written into every metrics.jsonl row.
  """

  def __init__(self, workdir: str, resume_step: Optional[int] = None, tensorboard: bool = False,
               wandb_run=None, run_id: Optional[str] = None):
    self.workdir = workdir
    self.run_id = run_id
    self._columns = {}
    self.set_aside = set_aside_dir(workdir, resume_step) if resume_step is not None else None
    self.dropped_rows = (truncate_after(workdir, resume_step, self.set_aside)
                         if resume_step is not None else 0)
    self._tb = None
    if tensorboard:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      purge = None if resume_step is None else resume_step + 1
      # A unique suffix: a resumed run must not overwrite an event file from the same second.
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR),
                                            purge_step=purge,
                                            filename_suffix=f'.{time.time_ns()}')
    self._wandb = wandb_run

  def _csv_columns(self, prefix: str, path: str, row) -> list:
    columns = self._columns.get(prefix)
    if columns is None:
      if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, newline='') as f:
          columns = next(csv.reader(f))
      else:
        columns = list(row)
        with open(path, 'w', newline='') as f:
          csv.writer(f).writerow(columns)
      self._columns[prefix] = columns
    return columns

  def write(self, prefix: str, step: int, metrics: Dict[str, float]) -> None:
    with preemption.holding():        # a SIGTERM exit during start-up waits for the whole row
      self._write(prefix, step, metrics)

  def _write(self, prefix: str, step: int, metrics: Dict[str, float]) -> None:
    row = {'step': int(step), **to_floats(metrics)}
    path = os.path.join(self.workdir, f'{prefix}.csv')
    columns = self._csv_columns(prefix, path, row)
    with open(path, 'a', newline='') as f:
      csv.writer(f).writerow([row.get(c, '') for c in columns])
    with open(os.path.join(self.workdir, JSONL), 'a') as f:
      run = {'run': self.run_id} if self.run_id is not None else {}
      f.write(json.dumps({**run, 'stream': prefix, **row}) + '\n')
    if self._tb is not None:
      for key, value in row.items():
        if key != 'step':
          self._tb.add_scalar(f'{prefix}/{key}', value, int(step))
    if self._wandb is not None:
      self._wandb.log({f'{prefix}/{k}': v for k, v in row.items() if k != 'step'}, step=int(step))

  def has_row(self, prefix: str, step: int) -> bool:
    return any(int(r['step']) == step for r in read_rows(self.workdir, prefix))

  def last_row(self, prefix: str) -> Dict[str, float]:
    rows = read_rows(self.workdir, prefix)
    return {k: v for k, v in rows[-1].items() if k != 'step'} if rows else {}

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None


class NullLogger:
  """The logger of a non-main process in a multi-host run: writes nothing (process 0 logs)."""
  dropped_rows = 0
  set_aside = None

  def write(self, prefix: str, step: int, metrics: Dict[str, float]) -> None:
    del prefix, step, metrics

  def has_row(self, prefix: str, step: int) -> bool:
    del prefix, step
    return True

  def last_row(self, prefix: str) -> Dict[str, float]:
    del prefix
    return {}

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass
