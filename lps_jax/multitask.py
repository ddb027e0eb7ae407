"""Tasks x seeds in ONE compiled program, for tasks that share observations and actions.

OGBench single-task variants of one dataset (e.g. cube-single tasks 1..5) have the same
observations, actions and episode boundaries; only the relabelled rewards and masks differ.

    data     a DeviceDataset whose rewards / masks are [T, N] (one row per task); observations,
             actions, next_observations and chunk starts are stored once, not T times
    agents   stacked [T, S, ...]: member (t, s) starts as create(seed_s), exactly as a solo run
             (or [T, M, ...] for vmap_sweep members: seed x vmappable hparams, e.g. alpha)
    train    jit(vmap_tasks(vmap_seeds(train_steps))), in_axes: agents 0 / 0, data: rewards and
             masks 0 on the task axis, every other leaf None (shared)

So member (t, s) follows the run `create(seed_s)` trained alone on task t would follow.
"""
import functools
import json
import os
from typing import Any, Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lps_jax import agents as agents_lib
from lps_jax import engine
from lps_jax.data import dataset as dataset_lib

SHARED_KEYS = ('observations', 'actions', 'next_observations', 'terminals')


def stack_task_datasets(transitions_per_task: Sequence[Dict[str, np.ndarray]], horizon: int,
                        source: str = 'tasks') -> dataset_lib.DeviceDataset:
  """T transition dicts that differ only in rewards / masks -> one DeviceDataset.

  rewards, masks: [T, N]; the other leaves are task 0's (checked equal across tasks).
  Raises DatasetError if the tasks do not share observations, actions or episode boundaries.
  """
  if not transitions_per_task:
    raise dataset_lib.DatasetError(f'{source}: no tasks')
  first = transitions_per_task[0]
  for t, transitions in enumerate(transitions_per_task):
    dataset_lib.validate_transitions(transitions, f'{source}[{t}]')
    for key in SHARED_KEYS:
      if not np.array_equal(np.asarray(transitions[key]), np.asarray(first[key])):
        raise dataset_lib.DatasetError(f'{source}[{t}]: {key} differs from task 0; tasks '
                                       'stacked in one program must share it')
  data = dataset_lib.to_device(first, horizon, source)
  stacked = lambda key: jnp.asarray(np.stack(
      [np.asarray(t[key], np.float32) for t in transitions_per_task]))
  return data.replace(rewards=stacked('rewards'), masks=stacked('masks'))


def task_in_axes(data: dataset_lib.DeviceDataset) -> dataset_lib.DeviceDataset:
  """vmap in_axes for a task-stacked dataset: rewards / masks on axis 0, the rest shared."""
  return data.replace(observations=None, actions=None, next_observations=None, rewards=0,
                      masks=0, starts=None)


def make_train_fn(num_steps: int, data: dataset_lib.DeviceDataset, step_fn=engine.train_step):
  """jit(vmap over tasks (vmap over seeds (K scanned updates))); donates the [T, S] agents.

  Returns fn(agents [T, S, ...], data) -> (agents, metrics {name: [T, S]}).
  """
  scan = functools.partial(engine.train_steps, num_steps=num_steps, step_fn=step_fn)
  over_seeds = jax.vmap(scan, in_axes=(0, None))
  over_tasks = jax.vmap(over_seeds, in_axes=(0, task_in_axes(data)))
  return jax.jit(over_tasks, donate_argnums=(0,))


def create_agents(agent_config, seeds: Sequence[int], num_tasks: int, observation_dim: int,
                  chunk_dim: int):
  """Stacked [T, S, ...] agents: member (t, s) = create(seeds[s]) (the same for every task)."""
  agent_cls = agents_lib.get_agent_class(agent_config.agent_name)
  created = [agents_lib.create_agent(agent_cls, int(seed), observation_dim, chunk_dim, agent_config)
             for seed in seeds]
  # Static fields (optimisers, config) are taken from the first member; leaves are stacked.
  columns = zip(*(jax.tree.leaves(agent) for agent in created))
  leaves = [jnp.stack([jnp.stack(column)] * num_tasks) for column in columns]
  return jax.tree.unflatten(jax.tree.structure(created[0]), leaves)


def create_member_agents(run_config, members: Sequence[dict], num_tasks: int,
                         observation_dim: int, chunk_dim: int):
  """Stacked [T, M, ...] agents for vmap_sweep members [{'seed': s, 'agent.<key>': v}, ...].

  Member m is created as vmap_sweep.create_stacked_agents creates it (its seed, its swept
  vmappable hyperparameters, e.g. agent.alpha), the same for every task; a key that cannot vary
  inside one program raises vmap_sweep.SweepError.
  """
  from lps_jax import vmap_sweep  # pylint: disable=g-import-not-at-top  (workers skip it)
  agents, _ = vmap_sweep.create_stacked_agents(run_config, members, observation_dim, chunk_dim)
  return jax.tree.map(lambda x: jnp.stack([x] * num_tasks), agents)


def member(tree, task_index: int, seed_index: int):
  """Member (t, s) of a [T, S, ...] stacked tree."""
  return jax.tree.map(lambda x: x[task_index, seed_index], tree)


def host_params(agents) -> Dict[str, np.ndarray]:
  """Every member's network parameters {state name: [T, S, ...] numpy}, in one transfer."""
  return jax.device_get(agents.params())


def member_params(agents_or_host_params, task_index: int, seed_index: int):
  """Member (t, s)'s network parameters {state name: params} as numpy (picklable).

  Accepts the stacked agents or host_params(agents) (cheaper when taking many members).
  """
  params = agents_or_host_params
  if not isinstance(params, dict):
    params = host_params(params)
  return jax.tree.map(lambda x: np.array(x[task_index, seed_index]), params)


def save_params(path: str, params: Dict[str, Any], meta: Dict[str, Any]) -> None:
  """host_params(agents) {state: tree [T, S, ...]} and a json-able meta dict -> one .npz
  (written to a temporary name, then renamed): train on one machine, evaluate on another."""
  flat = traverse_util.flatten_dict(params, sep='/')
  tmp = path + '.tmp.npz'
  np.savez(tmp, __meta__=np.array(json.dumps(meta)), **flat)
  os.replace(tmp, path)


def load_params(path: str):
  """The .npz of save_params -> (params {state: tree [T, S, ...]} as numpy, meta)."""
  with np.load(path) as f:
    meta = json.loads(str(f['__meta__']))
    flat = {k: f[k] for k in f.files if k != '__meta__'}
  return traverse_util.unflatten_dict(flat, sep='/'), meta


def with_params(agent, params: Dict[str, np.ndarray]):
  """`agent` with each named train state's params replaced (e.g. from member_params)."""
  return agent.replace(**{name: getattr(agent, name).replace(
      params=jax.tree.map(jnp.asarray, value)) for name, value in params.items()})


def parse_int_list(text: str) -> List[int]:
  """'0..4' -> [0, 1, 2, 3, 4]; '2,3' -> [2, 3]; '1..3,7' -> [1, 2, 3, 7]. ValueError if bad."""
  values = []
  for part in text.split(','):
    part = part.strip()
    if not part:
      continue
    low, sep, high = part.partition('..')
    if sep:
      values.extend(range(int(low), int(high) + 1))
    else:
      values.append(int(part))
  if not values:
    raise ValueError(f'empty integer list {text!r}')
  return values
