"""A plain .npz as a Task, with no environment: `--config.task=npz:<path>`.

Keys (N rows, float arrays; other keys are ignored):
  observations      [N, O]   s_i
  actions           [N, A]   a_i, in [-1, 1] (rescale them before saving)
  next_observations [N, O]   s_{i+1}
  rewards           [N]      r_i
  terminals         [N]      1 on the last row of each episode (a boundary), else 0
  masks             [N]      optional: 0 where s_{i+1} is a terminal state (no bootstrapping
                             from it), else 1; default all 1

The last HOLDOUT_FRACTION of the rows is held out (the cut is an episode boundary). There is
no environment, so "evaluation" is on the held-out split (every key prefixed heldout/): the
agent's own losses and Q / value statistics on held-out batches (its update's metrics,
computed at the current parameters and discarded), and the policy's action statistics there
(action_mse against the data's actions, action_abs, data_action_abs).
"""
import os
import zipfile
from typing import Dict, Tuple

import jax
import numpy as np

from lps_jax import config_lib
from lps_jax.data import dataset as dataset_lib
from lps_jax.data.task import Task

REQUIRED_KEYS = ('observations', 'actions', 'next_observations', 'rewards', 'terminals')
OPTIONAL_KEYS = ('masks',)
HOLDOUT_FRACTION = 0.1
HELDOUT_BATCHES = 8


def _path(name: str) -> str:
  return os.path.expanduser(name)


def _missing_keys(path: str):
  """Required keys the file lacks (reads only the archive's index)."""
  try:
    with np.load(path) as archive:
      return [k for k in REQUIRED_KEYS if k not in archive.files]
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise dataset_lib.DatasetError(f'{path}: not a readable .npz file ({type(e).__name__}: '
                                   f'{" ".join(str(e).split())})') from None


def check_config(config, name: str) -> None:
  """The file exists, is an .npz and has the required keys."""
  path = _path(name)
  if not name or not os.path.isfile(path):
    raise config_lib.ConfigError(f'config.task={config.task!r}: no such .npz file '
                                 f'{path or "(empty path)"}')
  missing = _missing_keys(path)
  if missing:
    raise dataset_lib.DatasetError(f'{path}: missing keys {missing} (an npz task needs '
                                   f'{list(REQUIRED_KEYS)}; masks optional)')


def load_transitions(path: str) -> Dict[str, np.ndarray]:
  """The file's arrays in the transition format (float32; masks default to 1), validated."""
  with np.load(path) as archive:
    transitions = {k: np.asarray(archive[k], np.float32) for k in REQUIRED_KEYS + OPTIONAL_KEYS
                   if k in archive.files}
  transitions.setdefault('masks', np.ones(len(transitions['rewards']), np.float32))
  for key in ('rewards', 'terminals', 'masks'):
    if transitions[key].ndim != 1:
      raise dataset_lib.DatasetError(f'{path}: {key} must be [N], got shape '
                                     f'{transitions[key].shape}')
  for key in ('observations', 'actions', 'next_observations'):
    if transitions[key].ndim != 2:
      raise dataset_lib.DatasetError(f'{path}: {key} must be [N, dim], got shape '
                                     f'{transitions[key].shape}')
  if transitions['observations'].shape[1:] != transitions['next_observations'].shape[1:]:
    raise dataset_lib.DatasetError(
        f'{path}: observations {transitions["observations"].shape} and next_observations '
        f'{transitions["next_observations"].shape} differ in size')
  dataset_lib.validate_transitions(transitions, path)
  if len(transitions['rewards']) < 2:
    raise dataset_lib.DatasetError(f'{path}: needs at least 2 rows (one is held out)')
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
