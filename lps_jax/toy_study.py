"""Many toy runs in one program: N members (seeds x one swept hparam) of one agent, vmapped.

    members   [{'seed': s, 'agent.alpha': a}, ...]            (lps_jax.vmap_sweep.make_members)
    agents    vmap_sweep.create_stacked_agents -> [N, ...] leaves  (each member = its solo run)
    train     jit(vmap(engine.train_steps)) over the members, the toy dataset shared
    evaluate  vmap(sample_actions) on the task's context grid -> per-member toy metrics

The learning gates (tests/test_toy_gates.py) and the alpha study
(experiments/alpha_sensitivity.py) both run through `train_members` / `evaluate_members`.
"""
import dataclasses
import time
from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lps_jax import config_lib, tasks, vmap_sweep
from lps_jax.data import dataset as dataset_lib

EVAL_KEY_OFFSET = 1_000_003     # evaluation noise key = PRNGKey(seed + offset), as in sweeps


@dataclasses.dataclass
class MemberRuns:
  agents: object                  # stacked [N, ...]
  members: List[dict]
  train_metrics: Dict[str, np.ndarray]    # metric -> [N], mean over the last call
  seconds: float


def train_members(config, members: Sequence[dict], task: Optional[tasks.Task] = None,
                  num_steps: Optional[int] = None,
                  compiler_options: Optional[Dict[str, Any]] = None) -> MemberRuns:
  """Train every member of `members` in one vmapped program for num_steps (default config's).

  config: a run config (config_lib.make_run_config); num_steps must be a multiple of
  config.steps_per_call. The last call's mean train metrics are returned per member.
  compiler_options: XLA options for the training program (e.g. an optimisation level).
  """
  task = task or tasks.make_task(config)
  num_steps = config.num_steps if num_steps is None else num_steps
  if num_steps % config.steps_per_call:
    raise ValueError(f'num_steps={num_steps} must be a multiple of steps_per_call='
                     f'{config.steps_per_call}')
  start = time.perf_counter()
  chunk_dim = config.agent.horizon * task.action_dim
  agents, _ = vmap_sweep.create_stacked_agents(config, members, task.observation_dim, chunk_dim)
  data = dataset_lib.to_device(task.transitions, config.agent.horizon, source=task.name)
  train_fn = vmap_sweep.make_vmapped_train_fn(config.steps_per_call)
  if compiler_options:
    train_fn = train_fn.lower(agents, data).compile(compiler_options)
  info = {}
  for _ in range(num_steps // config.steps_per_call):
    agents, info = train_fn(agents, data)
  metrics = {k: np.asarray(v) for k, v in info.items()}
  return MemberRuns(agents, list(members), metrics, time.perf_counter() - start)


@jax.jit
def _member_actions(agents, observations, keys):
  """Stacked agents [N, ...], observations [B, O], keys [N] -> actions [N, B, D]."""
  return jax.vmap(lambda agent, key: agent.sample_actions(observations, key))(agents, keys)


def member_actions(runs: MemberRuns, observations: np.ndarray) -> np.ndarray:
  """Every member's actions (whole chunk) at observations [B, O] -> [N, B, D]."""
  keys = jnp.stack([jax.random.PRNGKey(m['seed'] + EVAL_KEY_OFFSET) for m in runs.members])
  return np.asarray(_member_actions(runs.agents, jnp.asarray(observations, jnp.float32), keys))


def evaluate_members(runs: MemberRuns, task: tasks.Task, num_episodes: int = 256) -> List[Dict]:
  """task.evaluate for every member: [{reward, out_of_support, ...}] (toy: a context grid).

  All members act in one vmapped call per policy query; member i reads its own slice.
  """
  cache = {}

  def policy_of(index):
    def policy(observations):
      key = (observations.shape, observations.tobytes())
      if key not in cache:
        cache.clear()
        cache[key] = member_actions(runs, observations)
      return cache[key][index]
    return policy

  return [task.evaluate(policy_of(i), num_episodes, m['seed'])
          for i, m in enumerate(runs.members)]


def run_config(agent_name: str, variant: str = 'toy', **overrides):
  """The agent's own config at `variant`, with run-level or agent.<key> overrides."""
  config = config_lib.make_run_config(config_lib.agent_module(agent_name).get_config(), variant)
  for key, value in overrides.items():
    if key.startswith('agent.'):
      config.agent[key[len('agent.'):]] = value
    else:
      config[key] = value
  config_lib.validate(config)
  return config
