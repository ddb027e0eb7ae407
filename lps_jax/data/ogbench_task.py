"""OGBench single-task manipulation as a Task: official (or locally generated) data + env rollouts."""
import numpy as np

from lps_jax import tasks
from lps_jax.data import ogbench_data
from lps_jax.envs import ogbench_env


def make_ogbench_task(config) -> tasks.Task:
  """config.task e.g. 'cube-single-play-singletask-task1-v0'; data from config.dataset_dir."""
  dataset_dir = config.dataset_dir or ogbench_data.DEFAULT_DATASET_DIR
  env = ogbench_env.make_env(config.task)
  transitions, info = ogbench_data.load_ogbench_dataset(
      config.task, dataset_dir, split='train', sparse=config.sparse_reward,
      download=config.download, env=env)
  horizon, action_dim = config.agent.horizon, info['act_dim']
  envs = [env]   # grown on first use to one env per episode (lockstep evaluation)

  def evaluate(policy_fn, num_episodes, seed):
    while len(envs) < num_episodes:
      envs.append(ogbench_env.make_env(config.task))
    batched = lambda observations: np.asarray(policy_fn(observations))
    return ogbench_env.evaluate(config.task, batched, num_episodes, horizon, action_dim,
                                seed=seed, envs=envs[:num_episodes])

  return tasks.Task(config.task, transitions, info['obs_dim'], action_dim, evaluate)
