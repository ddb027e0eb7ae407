"""Metric sinks for a run directory: <prefix>.csv per stream and one metrics.jsonl."""
import csv
import json
import os
from typing import Dict

import numpy as np


def to_floats(metrics) -> Dict[str, float]:
  return {k: float(np.asarray(v)) for k, v in metrics.items()}


class MetricsLogger:
  """Appends rows {step, **metrics} to workdir/<prefix>.csv and workdir/metrics.jsonl."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._columns = {}

  def write(self, prefix: str, step: int, metrics: Dict[str, float]) -> None:
    row = {'step': int(step), **to_floats(metrics)}
    path = os.path.join(self.workdir, f'{prefix}.csv')
    columns = self._columns.get(prefix)
    if columns is None:
      columns = self._columns[prefix] = list(row)
      if not os.path.exists(path):
        with open(path, 'w', newline='') as f:
          csv.writer(f).writerow(columns)
    with open(path, 'a', newline='') as f:
      csv.writer(f).writerow([row.get(c, '') for c in columns])
    with open(os.path.join(self.workdir, 'metrics.jsonl'), 'a') as f:
      f.write(json.dumps({'stream': prefix, **row}) + '\n')

  def close(self) -> None:
    pass
