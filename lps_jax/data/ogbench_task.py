"""OGBench single-task manipulation as a Task: official (or locally generated) data + env rollouts.

config.task is the dataset-style name, e.g. 'cube-single-play-singletask-task1-v0' (or the same
with an 'ogbench:' prefix); the files come from config.dataset_dir (config.download fetches them).
"""
import os

import numpy as np

from lps_jax import config_lib
from lps_jax.data import ogbench_data
from lps_jax.data.task import Task
from lps_jax.envs import quiet

EXAMPLE_TASK = 'cube-single-play-singletask-task1-v0'
HINT = (f"use 'toy', 'toy-rings', an OGBench name such as {EXAMPLE_TASK}, minari:<dataset_id> or "
        'npz:<path>')


def check_config(config, name: str) -> None:
  """A registered OGBench env name; the dataset directory must exist (unless downloading)."""
  try:
    env_id, _, _ = ogbench_data.parse_env_name(name)
  except ValueError:
    raise config_lib.ConfigError(f'config.task: unknown task {config.task!r}; {HINT}') from None
  quiet.silence_known_env_warnings()
  import gymnasium  # pylint: disable=g-import-not-at-top
  import ogbench  # pylint: disable=g-import-not-at-top,unused-import  (registers the envs)
  if env_id not in gymnasium.registry:
    raise config_lib.ConfigError(f'config.task: unknown task {config.task!r} (no OGBench env '
                                 f'{env_id!r}); {HINT}')
  if not config.download:
    directory = os.path.expanduser(config.dataset_dir or ogbench_data.DEFAULT_DATASET_DIR)
    if not os.path.isdir(directory):
      raise config_lib.ConfigError(
          f'config.dataset_dir: dataset directory {directory} does not exist (point '
          f'--config.dataset_dir at the folder holding the .npz files, or set '
          f'--config.download=True)')


def make_task(config, name: str) -> Task:
  """Transitions of the single-task dataset `name` and chunked rollouts in its env."""
  from lps_jax.envs import ogbench_env  # pylint: disable=g-import-not-at-top
  quiet.silence_known_env_warnings()
  dataset_dir = config.dataset_dir or ogbench_data.DEFAULT_DATASET_DIR
  env = ogbench_env.make_env(name)
  transitions, info = ogbench_data.load_ogbench_dataset(
      name, dataset_dir, split='train', sparse=config.sparse_reward,
      download=config.download, env=env)
  horizon, action_dim = config.agent.horizon, info['act_dim']
  envs = [env]   # grown on first use to the lockstep wave size (episodes run in waves)

  def evaluate(policy_fn, num_episodes, seed):
    batched = lambda observations: np.asarray(policy_fn(observations))
    return ogbench_env.evaluate(name, batched, num_episodes, horizon, action_dim, seed=seed,
                                envs=ogbench_env.grow_envs(name, envs, num_episodes))

  return Task(config.task, transitions, info['obs_dim'], action_dim, evaluate)
