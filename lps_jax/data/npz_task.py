"""A plain .npz as a Task, with no environment: `--config.task=npz:<path>`.

Keys (N rows of real numbers: float, int or bool; other keys are ignored):
  observations      [N, O]   s_i
  actions           [N, A]   a_i, in [-1, 1] (rescale them before saving)
  next_observations [N, O]   s_{i+1}
  rewards           [N]      r_i
  terminals         [N]      1 on the last row of each episode (a boundary), else 0 (all 0:
                             one episode, with a warning)
  masks             [N]      optional: 0 where s_{i+1} is a terminal state (no bootstrapping
                             from it), else 1; default all 1

The last HOLDOUT_FRACTION of the rows is held out (the cut is an episode boundary). There is
no environment, so "evaluation" is on the held-out split (every key prefixed heldout/): the
agent's own losses and Q / value statistics on held-out batches (its update's metrics,
computed at the current parameters and discarded), and the policy's action statistics there
(action_mse against the data's actions, action_abs, data_action_abs).
"""
import os
import sys
import zipfile
from typing import Dict, Tuple

import jax
import numpy as np

from lps_jax import config_lib
from lps_jax.data import dataset as dataset_lib
from lps_jax.data import ogbench_data
from lps_jax.data.task import Task

REQUIRED_KEYS = ('observations', 'actions', 'next_observations', 'rewards', 'terminals')
OPTIONAL_KEYS = ('masks',)
HOLDOUT_FRACTION = 0.1
HELDOUT_BATCHES = 8
NPY_MAGIC = b'\x93NUMPY'
REAL_KINDS = 'biuf'           # numpy dtype kinds: bool, signed and unsigned int, float
DTYPE_KINDS = {'O': 'Python objects', 'U': 'text', 'S': 'bytes', 'c': 'complex numbers',
               'M': 'dates', 'm': 'time deltas', 'V': 'raw records'}


def _path(name: str) -> str:
  return os.path.expanduser(name)


def read_headers(path: str) -> Dict[str, Tuple[tuple, np.dtype]]:
  """{key: (shape, dtype)} of the file's arrays, from the .npy headers (nothing decompressed);
  DatasetError if the file is not an .npz archive (e.g. a .npy file or text)."""
  try:
    if not zipfile.is_zipfile(path):
      with open(path, 'rb') as f:
        head = f.read(len(NPY_MAGIC))
      what = ('is a .npy file (one array)' if head == NPY_MAGIC
              else 'is not an .npz archive (not a zip file)')
      raise dataset_lib.DatasetError(
          f'{path} {what}; an npz task reads one written by np.savez(path, observations=..., '
          f'actions=..., next_observations=..., rewards=..., terminals=...)')
  except OSError as e:
    raise dataset_lib.DatasetError(f'{path}: cannot be read ({e.strerror})') from None
  return ogbench_data.read_npz_headers(path)


def check_headers(path: str) -> None:
  """Keys, dtypes (real numbers) and shapes from the headers: missing keys, object / string /
  complex arrays, [N, 0] features and wrong ranks are refused before any array is loaded."""
  headers = read_headers(path)
  missing = [k for k in REQUIRED_KEYS if k not in headers]
  if missing:
    raise dataset_lib.DatasetError(f'{path}: missing keys {missing} (an npz task needs '
                                   f'{list(REQUIRED_KEYS)}; masks optional)')
  for key in REQUIRED_KEYS + OPTIONAL_KEYS:
    if key not in headers:
      continue
    shape, dtype = headers[key]
    if dtype.kind not in REAL_KINDS:
      kind = DTYPE_KINDS.get(dtype.kind, 'not real numbers')
      raise dataset_lib.DatasetError(f'{path}: {key} has dtype {dtype} ({kind}); an npz task '
                                     f'needs real numbers (float, int or bool)')
    if key in ('observations', 'actions', 'next_observations'):
      if len(shape) != 2:
        raise dataset_lib.DatasetError(f'{path}: {key} must be [N, dim], got shape {shape}')
      if shape[1] == 0:
        raise dataset_lib.DatasetError(f'{path}: {key} has shape {shape}: no features')
    elif len(shape) != 1:
      raise dataset_lib.DatasetError(f'{path}: {key} must be [N], got shape {shape}')


def check_config(config, name: str) -> None:
  """The file exists and is an .npz with the required keys, real-number dtypes and shapes."""
  path = _path(name)
  if not name or not os.path.isfile(path):
    raise config_lib.ConfigError(f'config.task={config.task!r}: no such .npz file '
                                 f'{path or "(empty path)"}')
  check_headers(path)


def load_transitions(path: str) -> Dict[str, np.ndarray]:
  """The file's arrays in the transition format (float32; masks default to 1), validated.
  All-zero terminals: one warning line (the data is one episode)."""
  check_headers(path)
  with np.load(path) as archive:
    transitions = {k: np.asarray(archive[k], np.float32) for k in REQUIRED_KEYS + OPTIONAL_KEYS
                   if k in archive.files}
  transitions.setdefault('masks', np.ones(len(transitions['rewards']), np.float32))
  if transitions['observations'].shape[1:] != transitions['next_observations'].shape[1:]:
    raise dataset_lib.DatasetError(
        f'{path}: observations {transitions["observations"].shape} and next_observations '
        f'{transitions["next_observations"].shape} differ in size')
  dataset_lib.validate_transitions(transitions, path)
  if len(transitions['rewards']) < 2:
    raise dataset_lib.DatasetError(f'{path}: needs at least 2 rows (one is held out)')
  if not transitions['terminals'].any():
    print(f'warning: {path}: terminals are all 0, so the data is read as one episode (set '
          f'terminals = 1 on the last row of each episode)', file=sys.stderr)
  return transitions


def split_holdout(transitions: Dict[str, np.ndarray], fraction: float = HOLDOUT_FRACTION
                  ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
  """(train, held out): the last max(1, round(fraction * N)) rows are held out; the train
  split's last row becomes an episode boundary (terminals = 1; masks unchanged)."""
  n = len(transitions['rewards'])
  cut = n - min(n - 1, max(1, int(round(fraction * n))))
  train = {k: v[:cut].copy() for k, v in transitions.items()}
  heldout = {k: v[cut:].copy() for k, v in transitions.items()}
  train['terminals'][-1] = 1.0
  return train, heldout


@jax.jit
def _heldout_batch_metrics(agent, data, key):
  """One held-out batch: the update's metrics at the current parameters (the updated agent is
  discarded) and the batch itself."""
  cfg = agent.config
  batch = dataset_lib.sample_batch(data, key, cfg.batch_size, cfg.horizon, cfg.discount)
  _, info = agent.update(batch)
  return info, batch['observations'], batch['actions']


def make_heldout_evaluation(heldout: Dict[str, np.ndarray], horizon: int, source: str):
  """evaluate_agent(agent, policy_fn, seed) -> heldout/* metrics, averaged over
  HELDOUT_BATCHES batches drawn with PRNGKey(seed)."""
  data = dataset_lib.to_device(heldout, horizon, source=f'{source} (held-out split)')

  def evaluate_agent(agent, policy_fn, seed):
    totals = {}
    for key in jax.random.split(jax.random.PRNGKey(seed), HELDOUT_BATCHES):
      info, observations, data_actions = jax.device_get(_heldout_batch_metrics(agent, data, key))
      actions = np.asarray(policy_fn(observations), np.float64)
      info = {k: float(v) for k, v in info.items()}
      info['action_mse'] = float(np.mean((actions - data_actions) ** 2))
      info['action_abs'] = float(np.mean(np.abs(actions)))
      info['data_action_abs'] = float(np.mean(np.abs(data_actions)))
      for k, v in info.items():
        totals[k] = totals.get(k, 0.0) + v / HELDOUT_BATCHES
    return {f'heldout/{k}': v for k, v in totals.items()}

  return evaluate_agent


def make_task(config, name: str) -> Task:
  path = _path(name)
  train, heldout = split_holdout(load_transitions(path))
  evaluate_agent = make_heldout_evaluation(heldout, config.agent.horizon, config.task)
  return Task(config.task, train, train['observations'].shape[1], train['actions'].shape[1],
              evaluate=None, evaluate_agent=evaluate_agent)
