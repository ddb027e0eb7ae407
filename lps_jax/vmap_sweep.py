"""Vmapped sweeps: N agents (seeds x vmappable hyperparameters) trained in ONE compiled program.

    members  [{'seed': 0, 'agent.lr': 1e-4}, {'seed': 1, 'agent.lr': 1e-4}, ...]
    agents   create(seed_i, member config_i) for each member, leaves stacked -> [N, ...]
             (lr lands in every TrainState's opt_state.hyperparams['learning_rate'],
              other keys in agent.hparams: both are array leaves, so they vmap)
    train    jit(vmap(engine.train_steps, in_axes=(agents: 0, dataset: None)))
             the dataset is shared (not copied N times); each member's own rng draws its
             own batches, so member i follows exactly the run `create(seed_i)` would alone
    logs     workdir/sweep.json                       the members and the base config
             workdir/member_###/config.json          that member's config (a normal run dir)
             workdir/member_###/{train,eval}.csv, metrics.jsonl

Only leaves can vary: keys that change shapes or static structure (hidden dims, horizon,
batch_size, num_critics, activation, discount, ...) raise SweepError.

CLI (grid x seeds):
  python -m lps_jax.vmap_sweep --config=experiments/configs/lps.py:toy --workdir=runs/sweep \
      --seeds=0,1,2 --sweep='{"agent.lr": [1e-4, 3e-4]}'
"""
import copy
import dataclasses
import functools
import itertools
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lps_jax import agents as agents_lib
from lps_jax import config_lib, engine, metrics_log, parallel, rundir, tasks
from lps_jax.data import dataset as dataset_lib

LR_KEY = 'lr'
DEFAULT_CONFIG = 'experiments/configs/lps.py'


class SweepError(ValueError):
  """A sweep that cannot run as one vmapped program; the message is one line."""


# ------------------------------------------------------------------------------ members
def normalize_key(key: str, config) -> str:
  """'agent.lr' / 'config.agent.lr' / 'lr' -> 'lr'; run-level keys are rejected."""
  name = key[len('config.'):] if key.startswith('config.') else key
  if name.startswith('agent.'):
    name = name[len('agent.'):]
  elif name in config and name not in config.agent:
    raise SweepError(f'config.{name} is a run-level setting shared by all members of a '
                     'vmapped sweep; sweep agent hyperparameters (agent.<key>) instead')
  if '.' in name or name not in config.agent:
    raise SweepError(f'unknown agent hyperparameter {key!r} for agent '
                     f'{config.agent.agent_name!r}')
  return name


def make_members(sweep: Optional[Dict[str, Sequence[Any]]], seeds: Sequence[int]) -> List[dict]:
  """Grid over `sweep` (key -> list of values) crossed with `seeds`: [{'seed', key: value}]."""
  sweep = sweep or {}
  for key, values in sweep.items():
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
      raise SweepError(f'sweep values for {key!r} must be a non-empty list, got {values!r}')
  keys = list(sweep)
  members = []
  for values in itertools.product(*(sweep[k] for k in keys)):
    for seed in seeds:
      members.append({'seed': int(seed), **dict(zip(keys, values))})
  if not members:
    raise SweepError('the sweep has no members (empty --seeds?)')
  return members


def vmappable_keys(agent) -> List[str]:
  """Keys a vmapped sweep may vary for this agent: lr and the agent's hparams."""
  return [LR_KEY] + sorted(k for k in agent.hparams if k != LR_KEY)


def _learning_rates(agent) -> List[jax.Array]:
  """Every opt_state.hyperparams['learning_rate'] leaf of the agent's train states."""
  found = []

  def visit(path, leaf):
    names = [getattr(p, 'name', getattr(p, 'key', None)) for p in path]
    if names and names[-1] == 'learning_rate' and 'hyperparams' in names:
      found.append(leaf)

  jax.tree_util.tree_map_with_path(visit, agent)
  return found


def member_config(config, member: dict):
  """A copy of the run config with the member's agent hyperparameters set and validated."""
  config = copy.deepcopy(config)
  with config.unlocked():
    for key, value in member.items():
      if key == 'seed':
        continue
      name = normalize_key(key, config)
      default = config.agent[name]
      if isinstance(default, bool) or not isinstance(default, (int, float)):
        raise SweepError(f'agent.{name} = {default!r} is not a number, so it is static '
                         'structure and cannot be swept in one vmapped program')
      config.agent[name] = float(value) if isinstance(default, float) else value
  config_lib.validate(config)
  return config


def _check_member(agent, names: Sequence[str], config, index: int) -> None:
  """The member's created agent must hold every swept value in a vmappable leaf."""
  for name in names:
    want = np.float32(config.agent[name])
    if name == LR_KEY:
      rates = _learning_rates(agent)
      if not rates:
        raise SweepError('agent has no opt_state.hyperparams learning_rate leaf to sweep lr')
      got = [np.float32(r) for r in rates]
    else:
      got = [np.float32(agent.hparams[name])]
    if not all(g == want for g in got):
      raise SweepError(f'member {index}: agent.{name}={want} did not reach the agent '
                       f'(found {got}); the agent must read it from hparams')


def stack(trees: Sequence[Any], template=None):
  """Stack same-shaped pytrees leaf-wise -> [N, ...] leaves, static fields from `template`.

  Only leaves are compared (static fields such as optimisers and configs are taken from
  `template`, default trees[0]), so the members' swept values must all live in leaves.
  """
  template = trees[0] if template is None else template
  treedef = jax.tree.structure(template)
  shapes = [(l.shape, l.dtype) for l in jax.tree.leaves(template)]
  columns = []
  for i, tree in enumerate(trees):
    leaves = jax.tree.leaves(tree)
    if [(l.shape, l.dtype) for l in leaves] != shapes:
      raise SweepError(f'member {i} has different parameter shapes from the template; '
                       'shape-changing hyperparameters cannot share one vmapped program')
    columns.append(leaves)
  return jax.tree.unflatten(treedef, [jnp.stack(ls) for ls in zip(*columns)])


def unstack(tree, index: int):
  """Member `index` of a stacked tree."""
  return jax.tree.map(lambda x: x[index], tree)


def create_stacked_agents(config, members: Sequence[dict], observation_dim: int,
                          action_dim: int):
  """(stacked agents [N, ...], member configs). Raises SweepError on non-vmappable keys.

  Each member is created exactly as a solo run would create it (its own seed and config),
  then the leaves are stacked; static fields come from an agent built with `config`.
  """
  if not members:
    raise SweepError('a sweep needs at least one member')
  agent_cls = agents_lib.get_agent_class(config.agent.agent_name)
  create = lambda seed, cfg: agent_cls.create(seed, observation_dim, action_dim, cfg.agent)
  # Shapes only (no compute): which hparams does this agent expose?
  allowed = vmappable_keys(jax.eval_shape(lambda: create(0, config)))
  names = []
  for member in members:
    for key in member:
      if key == 'seed':
        continue
      name = normalize_key(key, config)
      if name not in allowed:
        raise SweepError(f'agent.{name} cannot vary inside one vmapped program (it changes '
                         f'shapes or static structure); vmappable keys: {", ".join(allowed)}')
      if name not in names:
        names.append(name)
  configs = [member_config(config, member) for member in members]
  created = []
  for i, (member, member_cfg) in enumerate(zip(members, configs)):
    agent = create(int(member.get('seed', 0)), member_cfg)
    _check_member(agent, names, member_cfg, i)
    created.append(agent)
  template = created[0].replace(config=config.agent)
  return stack(created, template), configs


@functools.lru_cache(maxsize=None)
def make_vmapped_train_fn(num_steps: int, step_fn=engine.train_step):
  """jit(vmap(K scanned updates)) over stacked agents, dataset shared; donates the agents.

  A one-member sweep runs the plain engine on the squeezed member (vmap of one member is
  ~20% slower on a CPU); its inputs and outputs keep the leading [1] axis.
  """
  scan = lambda agent, data: engine.train_steps(agent, data, num_steps, step_fn)
  vmapped = jax.vmap(scan, in_axes=(0, None))

  def train(agents, data):
    if jax.tree.leaves(agents)[0].shape[0] != 1:
      return vmapped(agents, data)
    agent, metrics = scan(unstack(agents, 0), data)
    return jax.tree.map(lambda x: x[None], (agent, metrics))

  return jax.jit(train, donate_argnums=(0,))


# ------------------------------------------------------------------------------ running
@dataclasses.dataclass
class SweepResult:
  agents: Any                        # stacked [N, ...] (numpy leaves when run on a mesh)
  members: List[dict]
  train_metrics: List[Dict[str, float]]
  eval_metrics: List[Dict[str, float]]


def member_dir(workdir: str, index: int) -> str:
  return os.path.join(workdir, f'member_{index:03d}')


@jax.jit
def _sample_actions(agent, observations, key):
  return agent.sample_actions(observations, key)


def _policy_fn(agent, seed: int):
  """Numpy policy of one member for task.evaluate (one compilation shared by all members)."""
  key = [jax.random.PRNGKey(seed + 1_000_003)]

  def policy_fn(observations):
    key[0], sub = jax.random.split(key[0])
    return np.asarray(_sample_actions(agent, jnp.asarray(observations, jnp.float32), sub))

  return policy_fn


def run_vmapped_sweep(config, members: Sequence[dict], workdir: str, seed: int = 0,
                      progress: bool = False, mesh=None, evaluate: bool = True) -> SweepResult:
  """Train every member in one vmapped program; log each to workdir/member_###/.

  config   run config (experiments/configs/<agent>.py:get_config(variant)); its
           num_steps / steps_per_call / intervals are shared by all members
  members  [{'seed': int (default `seed`), 'agent.<key>': value, ...}]
  mesh     optional parallel.make_mesh(...): members split over 'sweep', batches over 'data'
  """
  members = [{'seed': int(m.get('seed', seed)), **{k: v for k, v in m.items() if k != 'seed'}}
             for m in members]
  config_lib.validate(config)
  tasks.check_config(config)
  task = tasks.make_task(config)
  chunk_dim = config.agent.horizon * task.action_dim
  agents, configs = create_stacked_agents(config, members, task.observation_dim, chunk_dim)
  data = dataset_lib.to_device(task.transitions, config.agent.horizon, source=task.name)
  num_members = len(members)
  if mesh is None:
    make_train_fn = make_vmapped_train_fn
  else:
    parallel.check_sizes(mesh, config.agent.batch_size, num_members)
    agents = parallel.put_agent(agents, mesh, stacked=True)
    data = parallel.put_dataset(data, mesh)
    make_train_fn = lambda k: parallel.make_train_fn(k, mesh, stacked=True)
  train_fns = {}                    # updates per call -> jitted fn (K, and a shorter last call)

  writer = mesh is None or parallel.is_main_process()
  loggers = []
  if writer:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
      json.dump({'members': members, 'config': config.to_dict()}, f, indent=2, default=str)
    for i, (member, member_cfg) in enumerate(zip(members, configs)):
      path = member_dir(workdir, i)
      os.makedirs(path, exist_ok=True)
      run_id = rundir.new_run_id()
      with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump({'run_id': run_id, 'config': member_cfg.to_dict(), 'seed': member['seed'],
                   'member': member, 'sweep_index': i}, f, indent=2, default=str)
      loggers.append(metrics_log.MetricsLogger(path, run_id=run_id))

  step = 0
  train_rows = [{} for _ in members]
  eval_rows = [{} for _ in members]
  window_start, window_steps = time.perf_counter(), 0
  for k in engine.call_lengths(0, config.num_steps, config.steps_per_call):
    if k not in train_fns:
      train_fns[k] = make_train_fn(k)
    agents, metrics = train_fns[k](agents, data)
    previous, step = step, step + k
    window_steps += k
    last = step >= config.num_steps
    if engine.falls_due(previous, step, config.log_interval) or last:
      metrics = parallel.fetch(metrics) if mesh is not None else jax.device_get(metrics)
      rate = window_steps / max(time.perf_counter() - window_start, 1e-9)
      window_start, window_steps = time.perf_counter(), 0
      for i in range(num_members):
        train_rows[i] = {k: float(v[i]) for k, v in metrics.items()}
        train_rows[i]['steps_per_second'] = rate
        if writer:
          loggers[i].write('train', step, train_rows[i])
      if progress:
        print(f'step {step}: {rate:.0f} steps/s per member, {rate * num_members:.0f} '
              'agent-steps/s', file=sys.stderr)
    if (evaluate and task.has_evaluation
        and (engine.falls_due(previous, step, config.eval_interval) or last)):
      host_agents = parallel.fetch(agents) if mesh is not None else agents
      for i in range(num_members):
        member_agent = unstack(host_agents, i)
        eval_rows[i] = tasks.run_evaluation(
            task, member_agent, _policy_fn(member_agent, members[i]['seed']),
            config.eval_episodes, members[i]['seed'])
        if writer:
          loggers[i].write('eval', step, eval_rows[i])
      if progress:
        print(f'step {step}: ' + '; '.join(
            f'm{i} ' + ', '.join(f'{k}={v:.3f}' for k, v in row.items())
            for i, row in enumerate(eval_rows)), file=sys.stderr)
  for logger in loggers:
    logger.close()
  if mesh is not None:
    agents = parallel.fetch(agents)
  return SweepResult(agents, members, train_rows, eval_rows)


# ------------------------------------------------------------------------------ CLI
def members_from_strings(seeds: str, sweep_json: str) -> List[dict]:
  """--seeds='0,1,2' and --sweep='{"agent.lr": [1e-4, 3e-4]}' -> make_members(grid, seeds)."""
  try:
    grid = json.loads(sweep_json or '{}')
  except json.JSONDecodeError as e:
    raise SweepError(f'--sweep is not valid JSON: {e}') from None
  if not isinstance(grid, dict):
    raise SweepError('--sweep must be a JSON object {"agent.<key>": [values, ...]}')
  try:
    seed_list = [int(s) for s in seeds.split(',') if s.strip()]
  except ValueError:
    raise SweepError(f'--seeds must be comma-separated integers, got {seeds!r}') from None
  if any(s < 0 for s in seed_list):
    raise SweepError(f'--seeds must be integers >= 0, got {seeds!r}')
  return make_members(grid, seed_list)


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  cli.define_config_file('config', DEFAULT_CONFIG, 'Run config file.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Sweep directory (one member_### run dir per member).')
  flags.DEFINE_string('seeds', '0', 'Comma-separated seeds, crossed with the --sweep grid.')
  flags.DEFINE_string('sweep', '{}', 'JSON dict agent.<key> -> list of values (a grid).')
  flags.DEFINE_integer('num_steps', None, 'Override config.num_steps.', lower_bound=1)
  flags.DEFINE_integer('sweep_axis', 0, 'Devices on the mesh sweep axis (0: no mesh when one '
                       'device, else 1 sweep x all-devices data).', lower_bound=0)
  flags.DEFINE_bool('progress', True, 'Print throughput and eval lines.')
  return flags.FLAGS


def main(argv):
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  flags_ = FLAGS
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {argv[1:]}')
  try:
    members_from_strings(flags_.seeds, flags_.sweep)     # bad --seeds/--sweep: before any work
    parallel.maybe_initialize_distributed()
    config = flags_.config
    if flags_.num_steps is not None:
      with config.unlocked():
        config.num_steps = flags_.num_steps
    if not flags_.workdir:
      raise SweepError('--workdir is required')
    # One writer per sweep directory (see rundir.RunLock), taken before anything is written.
    with rundir.RunLock.acquire(flags_.workdir, enabled=parallel.is_main_process()):
      if os.path.exists(os.path.join(flags_.workdir, 'sweep.json')):
        raise SweepError(f'workdir {flags_.workdir} already holds a sweep; choose another '
                         f'--workdir')
      members = members_from_strings(flags_.seeds, flags_.sweep)
      mesh = None
      if flags_.sweep_axis or jax.device_count() > 1:
        mesh = parallel.make_mesh(max(flags_.sweep_axis, 1))
      result = run_vmapped_sweep(config, members, flags_.workdir, progress=flags_.progress,
                                 mesh=mesh)
    summary = [{'member': i, **m, **{f'eval/{k}': v for k, v in e.items()}}
               for i, (m, e) in enumerate(zip(result.members, result.eval_metrics))]
    print(json.dumps(summary))
  except (SweepError, parallel.ShardingError, config_lib.ConfigError,
          dataset_lib.DatasetError, rundir.RunDirError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  FLAGS = _define_flags()
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, FLAGS,
                                                          default_config=DEFAULT_CONFIG))
