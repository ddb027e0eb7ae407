"""Minari datasets as a Task: `--config.task=minari:<dataset_id>`.

The dataset is read from the local Minari root (MINARI_DATASETS_PATH, default
~/.minari/datasets) through the optional `minari` package (`pip install -e '.[minari]'`);
nothing is downloaded. Each Minari episode (observations [T + 1, ...], actions [T, A],
rewards / terminations / truncations [T]) becomes T rows:

  observations[t] = obs[t]     next_observations[t] = obs[t + 1]     rewards[t] = r[t]
  actions[t]      = a[t] rescaled from the action space's [low, high] to [-1, 1]
  masks[t]        = 1 - terminations[t]                 (no bootstrapping from a terminal state)
  terminals[t]    = terminations[t] or truncations[t], and 1 on the episode's last row

Observations: a Box (flattened) or a Dict of Boxes (flattened, concatenated in key order).
Actions: a Box; data outside its bounds, or outside [-1, 1] when the bounds are not finite, is
rejected. Evaluation runs in dataset.recover_environment(eval_env=True) when the dataset
records an env (policy actions mapped back to [low, high]), else the run has no evaluation.
"""
import os
import sys
from typing import Callable, Dict, Iterable, Tuple

import numpy as np

from lps_jax import config_lib
from lps_jax.data import dataset as dataset_lib
from lps_jax.data.task import Task
from lps_jax.envs import quiet, rollout

INSTALL_HINT = "pip install -e '.[minari]' (or pip install 'minari[hdf5]')"
ACTION_TOL = 1e-5


def _import_minari(task_name: str):
  try:
    import minari  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise config_lib.ConfigError(f'config.task={task_name} needs the minari package: '
                                 f'{INSTALL_HINT}') from None
  return minari


def datasets_root() -> str:
  """The local Minari root, as minari resolves it (without creating it)."""
  return os.environ.get('MINARI_DATASETS_PATH') or os.path.join(
      os.path.expanduser('~'), '.minari', 'datasets')


def check_config(config, name: str) -> None:
  """minari is importable and the dataset is in the local root (nothing is downloaded)."""
  if not name:
    raise config_lib.ConfigError(f'config.task={config.task!r}: give a dataset id, e.g. '
                                 'minari:mujoco/halfcheetah/expert-v0')
  _import_minari(config.task)
  root = datasets_root()
  if not os.path.isdir(os.path.join(root, name, 'data')):
    raise config_lib.ConfigError(
        f'config.task: Minari dataset {name!r} not found under {root} (set '
        f'MINARI_DATASETS_PATH to the root holding it, or fetch it first with '
        f'`minari download {name}`)')


# ---------------------------------------------------------------------------------- spaces
def flatten_observations(space, observations) -> np.ndarray:
  """A Box [T, ...] -> [T, O]; a Dict of Boxes -> the keys' flat parts concatenated [T, O]."""
  import gymnasium  # pylint: disable=g-import-not-at-top
  if isinstance(space, gymnasium.spaces.Box):
    observations = np.asarray(observations, np.float32)
    return observations.reshape(len(observations), -1)
  if isinstance(space, gymnasium.spaces.Dict) and all(
      isinstance(s, gymnasium.spaces.Box) for s in space.spaces.values()):
    return np.concatenate([flatten_observations(space[k], observations[k])
                           for k in space.spaces], axis=-1)
  raise dataset_lib.DatasetError(f'observation space {space} is not supported (a Box or a '
                                 'Dict of Boxes)')


def action_maps(space, actions: np.ndarray, source: str) -> Tuple[Callable, Callable]:
  """(to_unit, from_unit): env actions <-> [-1, 1] through the Box bounds [low, high].

  Raises DatasetError when `actions` [N, A] leave the bounds, or leave [-1, 1] when the bounds
  are not finite (nothing to rescale from).
  """
  import gymnasium  # pylint: disable=g-import-not-at-top
  if not isinstance(space, gymnasium.spaces.Box):
    raise dataset_lib.DatasetError(f'{source}: action space {space} is not a Box (continuous '
                                   'actions only)')
  low = np.asarray(space.low, np.float64).reshape(-1)
  high = np.asarray(space.high, np.float64).reshape(-1)
  max_abs = float(np.abs(actions).max())
  if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low)):
    if max_abs > 1 + ACTION_TOL:
      raise dataset_lib.DatasetError(
          f'{source}: actions outside [-1, 1] (max |a| = {max_abs:.4g}) and the action space '
          f'{space} has no finite bounds to rescale them from')
    identity = lambda a: np.clip(a, -1.0, 1.0)
    return identity, identity
  span = high - low
  outside = (actions < low - ACTION_TOL * span) | (actions > high + ACTION_TOL * span)
  if outside.any():
    row = int(np.argmax(outside.any(axis=1)))
    raise dataset_lib.DatasetError(f'{source}: actions outside the action space bounds '
                                   f'[{low.min():.4g}, {high.max():.4g}] (first at transition '
                                   f'{row}: {actions[row]})')
  to_unit = lambda a: np.clip(2.0 * (a - low) / span - 1.0, -1.0, 1.0)
  from_unit = lambda u: low + (np.clip(u, -1.0, 1.0) + 1.0) * 0.5 * span
  return to_unit, from_unit


# ---------------------------------------------------------------------------------- episodes
def episodes_to_transitions(episodes: Iterable, observation_space) -> Dict[str, np.ndarray]:
  """Minari episodes -> transitions (actions still in env units; see the module docstring)."""
  parts = {k: [] for k in dataset_lib.REQUIRED_KEYS}
  for episode in episodes:
    observations = flatten_observations(observation_space, episode.observations)
    steps = len(episode.rewards)
    if steps == 0:
      continue
    terminations = np.asarray(episode.terminations, bool).reshape(steps)
    truncations = np.asarray(episode.truncations, bool).reshape(steps)
    ends = terminations | truncations
    ends[-1] = True
    parts['observations'].append(observations[:-1])
    parts['next_observations'].append(observations[1:])
    parts['actions'].append(np.asarray(episode.actions, np.float64).reshape(steps, -1))
    parts['rewards'].append(np.asarray(episode.rewards, np.float32).reshape(steps))
    parts['masks'].append(1.0 - terminations.astype(np.float32))
    parts['terminals'].append(ends.astype(np.float32))
  if not parts['rewards']:
    return {}
  return {k: np.concatenate(v) for k, v in parts.items()}


def _recover_env(dataset, source: str):
  """The recorded (evaluation) env, or None when the dataset has none or it cannot be built."""
  if dataset.env_spec is None and getattr(dataset, '_eval_env_spec', None) is None:
    return None                         # recorded without an env (e.g. from plain buffers)
  try:
    return dataset.recover_environment(eval_env=True)
  except Exception as e:  # pylint: disable=broad-except  (a missing env package, ...)
    print(f'warning: {source}: no evaluation, its env cannot be built '
          f'({type(e).__name__}: {" ".join(str(e).split())})', file=sys.stderr)
    return None


def make_task(config, name: str) -> Task:
  minari = _import_minari(config.task)
  quiet.silence_known_env_warnings()
  source = config.task
  try:                # a corrupted file fails in h5py when the episodes are read
    dataset = minari.load_dataset(name)
    transitions = episodes_to_transitions(dataset.iterate_episodes(), dataset.observation_space)
  except dataset_lib.DatasetError:
    raise
  except (ValueError, OSError, KeyError, RuntimeError) as e:
    corrupted = not isinstance(e, (FileNotFoundError, ValueError))      # h5py's errors
    hint = f'; is {os.path.join(datasets_root(), name, "data")} corrupted?' if corrupted else ''
    raise dataset_lib.DatasetError(f'{source}: cannot be read ({type(e).__name__}: '
                                   f'{" ".join(str(e).split())}){hint}') from None
  if not transitions:
    raise dataset_lib.DatasetError(f'{source}: no transitions')
  to_unit, from_unit = action_maps(dataset.action_space, transitions['actions'], source)
  transitions['actions'] = to_unit(transitions['actions']).astype(np.float32)
  dataset_lib.validate_transitions(transitions, source)
  observation_dim = transitions['observations'].shape[1]
  action_dim = transitions['actions'].shape[1]
  env = _recover_env(dataset, source)
  evaluate = None
  if env is not None:
    horizon, observation_space = config.agent.horizon, dataset.observation_space

    def observe(observation):
      batch = {k: np.asarray(v)[None] for k, v in observation.items()} if isinstance(
          observation, dict) else np.asarray(observation)[None]
      return flatten_observations(observation_space, batch)[0]

    def evaluate(policy_fn, num_episodes, seed):
      single = lambda observation: np.asarray(policy_fn(observation[None]))[0]
      metrics = rollout.evaluate_chunked(env, single, num_episodes, horizon, seed,
                                         observe=observe, act=from_unit)
      try:                              # D4RL-style reference scores, when recorded
        metrics['normalized_return'] = float(
            minari.get_normalized_score(dataset, np.float64(metrics['return'])))
      except ValueError:
        pass
      return metrics

  return Task(config.task, transitions, observation_dim, action_dim, evaluate)
