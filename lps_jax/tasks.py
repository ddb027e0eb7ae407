"""Tasks by name: a small registry of task makers keyed by name or prefix.

    config.task                          maker
    toy                                  the contextual one-ring 2-D bandit (below; default)
    toy-rings                            the 2-D two-rings bandit (a documented finding)
    <OGBench name> | ogbench:<name>      lps_jax.data.ogbench_task   (e.g. cube-single-play-
                                         singletask-task1-v0; bare names default to OGBench)
    minari:<dataset_id>                  lps_jax.data.minari_task    (local Minari root)
    npz:<path>                           lps_jax.data.npz_task       (a plain .npz, no env)

Each entry has `make(config, name) -> Task` and `check(config, name)`, the task's own
validation (raises config_lib.ConfigError / DatasetError before anything is built or written).
`name` is config.task without its prefix. Maker modules import lps_jax.data.task, never this
module, so there is no import cycle; a new task family is one entry in MAKERS.
"""
import dataclasses
import importlib
from typing import Callable, Dict, Tuple

import numpy as np

from lps_jax import config_lib
from lps_jax.data import toy
from lps_jax.data.task import Task, run_evaluation  # pylint: disable=unused-import  (re-exported)

TOY_TASK = 'toy'               # the contextual one-ring bandit (default)
TOY_RINGS_TASK = 'toy-rings'   # the old two-rings variant (a finding, see toy.py)
TOY_TASKS = (TOY_TASK, TOY_RINGS_TASK)
PLOT_CONTEXTS = (-1.0, -0.5, 0.0, 0.5, 1.0)
DEFAULT_PREFIX = 'ogbench'      # a bare name that is not registered is an OGBench env name


def make_toy_task(num_samples: int = 10_000, seed: int = 0, **reward_kwargs) -> Task:
  """The contextual one-ring bandit: evaluate on an even grid of `num_episodes` contexts."""
  transitions = toy.make_ring_transitions(num_samples, seed, **reward_kwargs)

  def evaluate(policy_fn, num_episodes, seed):
    del seed
    contexts = toy.evaluation_contexts(num_episodes)
    return toy.evaluate_ring_actions(contexts, np.asarray(policy_fn(contexts)),
                                     transitions['rewards'], **reward_kwargs)

  def plot(policy_fn, path, samples_per_context: int = 32):
    contexts = np.repeat(np.asarray(PLOT_CONTEXTS, np.float32), samples_per_context)[:, None]
    actions = np.asarray(policy_fn(contexts))[:, :toy.ACTION_DIM]
    toy.plot_ring_policy(path, transitions['actions'], PLOT_CONTEXTS,
                         actions.reshape(len(PLOT_CONTEXTS), samples_per_context, -1),
                         reward_kwargs=reward_kwargs)

  return Task(TOY_TASK, transitions, toy.CONTEXT_DIM, toy.ACTION_DIM, evaluate, plot)


def make_toy_rings_task(num_samples: int = 10_000, seed: int = 0) -> Task:
  """The two-rings variant: one dummy state; `num_episodes` sampled actions are evaluated."""
  transitions = toy.make_rings_transitions(num_samples, seed)

  def policy_actions(policy_fn, num_samples):
    return np.asarray(policy_fn(np.ones((num_samples, toy.RINGS_OBSERVATION_DIM), np.float32)))

  def evaluate(policy_fn, num_episodes, seed):
    del seed
    return toy.evaluate_actions(policy_actions(policy_fn, num_episodes), transitions['rewards'])

  def plot(policy_fn, path):
    toy.plot_actions(path, transitions['actions'], policy_actions(policy_fn, 256))

  return Task(TOY_RINGS_TASK, transitions, toy.RINGS_OBSERVATION_DIM, toy.ACTION_DIM, evaluate,
              plot)


# ---------------------------------------------------------------------------------- registry
@dataclasses.dataclass(frozen=True)
class TaskMaker:
  make: Callable[..., Task]              # (config, name) -> Task
  check: Callable[..., None]             # (config, name) -> None, raises on bad config


def _from_module(module: str) -> TaskMaker:
  """A maker whose make_task / check_config live in `module`, imported on first use."""
  load = lambda: importlib.import_module(module)
  return TaskMaker(make=lambda config, name: load().make_task(config, name),
                   check=lambda config, name: load().check_config(config, name))


def _no_check(config, name) -> None:
  del config, name


MAKERS: Dict[str, TaskMaker] = {
    TOY_TASK: TaskMaker(make=lambda config, name: make_toy_task(), check=_no_check),
    TOY_RINGS_TASK: TaskMaker(make=lambda config, name: make_toy_rings_task(), check=_no_check),
    'ogbench': _from_module('lps_jax.data.ogbench_task'),
    'minari': _from_module('lps_jax.data.minari_task'),
    'npz': _from_module('lps_jax.data.npz_task'),
}


def resolve(task_name: str) -> Tuple[str, str]:
  """config.task -> (registry key, name for the maker).

  'toy-rings' -> ('toy-rings', 'toy-rings'); 'minari:D4RL/door/human-v2' ->
  ('minari', 'D4RL/door/human-v2'); 'cube-single-play-singletask-task1-v0' -> ('ogbench', same).
  """
  if task_name in MAKERS:
    return task_name, task_name
  prefix, sep, rest = task_name.partition(':')
  if sep and prefix in MAKERS:
    return prefix, rest
  if sep:
    raise config_lib.ConfigError(
        f'config.task: unknown task prefix {prefix!r} in {task_name!r}; choose from '
        f'{sorted(k for k in MAKERS if k != TOY_TASK)} (as prefix:<name>), {TOY_TASK!r} or {TOY_RINGS_TASK!r}')
  return DEFAULT_PREFIX, task_name


def check_config(config) -> None:
  """The task's own checks (names, files, optional packages); run after config_lib.validate."""
  key, name = resolve(config.task)
  MAKERS[key].check(config, name)


def make_task(config) -> Task:
  """The task named by config.task (see the table above)."""
  key, name = resolve(config.task)
  return MAKERS[key].make(config, name)
