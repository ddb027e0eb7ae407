"""Vmapped sweeps: N agents (seeds x vmappable hyperparameters) trained in ONE compiled program.

    members  [{'seed': 0, 'agent.lr': 1e-4}, {'seed': 1, 'agent.lr': 1e-4}, ...]
    agents   create(seed_i, member config_i) for each member, leaves stacked -> [N, ...]
             (lr lands in every TrainState's opt_state.hyperparams['learning_rate'],
              other keys in agent.hparams: both are array leaves, so they vmap)
    train    jit(vmap(engine.train_steps, in_axes=(agents: 0, dataset: None)))
             the dataset is shared (not copied N times); each member's own rng draws its
             own batches, so member i follows exactly the run `create(seed_i)` would alone
    logs     workdir/sweep.json                       the members and the base config
             workdir/member_###/config.json          that member's config and sweep_index
             workdir/member_###/{train,eval}.csv, metrics.jsonl, final.json
    resume   workdir/checkpoints/<step>: the stacked agents, every checkpoint_interval, at the
             end and on SIGTERM (exit 75); --resume continues bit-identically, on any device
             count (lps_jax/sweep_checkpoint.py). A member directory is not a run of its own:
             lps_jax.main refuses it and names the command that resumes the sweep.

Only leaves can vary: keys that change shapes or static structure (hidden dims, horizon,
batch_size, num_critics, activation, discount, ...) raise SweepError.

CLI (grid x seeds; add --resume to continue it after a preemption, exit 75 on SIGTERM):
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

if __name__ == '__main__':
  from lps_jax import preemption as _preemption  # pylint: disable=g-import-not-at-top
  _preemption.install()   # before the heavy imports: a SIGTERM while starting up exits 75 at once

# pylint: disable=g-import-not-at-top,g-bad-import-order,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np

from jax.experimental import multihost_utils

from lps_jax import agents as agents_lib
from lps_jax import checkpoint, config_lib, engine, metrics_log, parallel, preemption, rundir
from lps_jax import sweep_checkpoint, tasks
from lps_jax.data import dataset as dataset_lib
# pylint: enable=g-import-not-at-top,g-bad-import-order,wrong-import-position

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
    for value in values:        # only numbers can vary inside one program (member_config)
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SweepError(f'sweep value {value!r} for {key!r} is not a number '
                         f'({type(value).__name__}); a vmapped sweep varies numbers only')
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
  create = lambda seed, cfg: agents_lib.create_agent(agent_cls, seed, observation_dim, action_dim,
                                                     cfg.agent)
  # Shapes only (no compute): which hparams does this agent expose?
  allowed = vmappable_keys(jax.eval_shape(
      lambda: agent_cls.create(0, observation_dim, action_dim, config.agent)))
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
def make_vmapped_train_fn(num_steps: int, step_fn=engine.train_step, unroll: int = 1):
  """jit(vmap(K scanned updates)) over stacked agents, dataset shared; donates the agents.

  A one-member sweep runs the plain engine on the squeezed member (vmap of one member is
  ~20% slower on a CPU); its inputs and outputs keep the leading [1] axis. unroll: as in
  engine.train_steps.
  """
  scan = lambda agent, data: engine.train_steps(agent, data, num_steps, step_fn, unroll)
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


member_dir = sweep_checkpoint.member_dir     # workdir/member_###


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
                      progress: bool = False, mesh=None, evaluate: bool = True,
                      resume: bool = False, resume_command: Optional[str] = None) -> SweepResult:
  """Train every member in one vmapped program; log each to workdir/member_###/.

  config   run config (experiments/configs/<agent>.py:get_config(variant)); its
           num_steps / steps_per_call / intervals are shared by all members
  members  [{'seed': int (default `seed`), 'agent.<key>': value, ...}]
  mesh     optional parallel.make_mesh(...): members split over 'sweep', batches over 'data'
  resume   continue the sweep in `workdir` from its latest checkpoint (fine on a new or empty
           workdir too); without it a workdir that holds a sweep is refused (RunDirError)
  resume_command  the command line that continues this sweep (stored in sweep.json, named
           in messages)

  Holds <workdir>.lock throughout; checkpoints the stacked agents every
  config.checkpoint_interval steps and at the end (lps_jax/sweep_checkpoint.py). A SIGTERM
  (under preemption.StopSignal) saves a checkpoint at the next call boundary and raises
  preemption.Preempted.
  """
  members = [{'seed': int(m.get('seed', seed)), **{k: v for k, v in m.items() if k != 'seed'}}
             for m in members]
  config_lib.validate(config)
  tasks.check_config(config)
  if mesh is not None:
    parallel.check_sizes(mesh, config.agent.batch_size, len(members))
  writer = mesh is None or parallel.is_main_process()
  lock = rundir.RunLock.acquire(workdir, enabled=writer)   # before anything is written
  preemption.add_cleanup(lock.release)
  try:
    sweep = sweep_checkpoint.check_dir(workdir, config, members, resume)
    task = tasks.make_task(config)
    chunk_dim = config.agent.horizon * task.action_dim
    agents, configs = create_stacked_agents(config, members, task.observation_dim, chunk_dim)
    data = dataset_lib.to_device(task.transitions, config.agent.horizon, source=task.name)
    if mesh is None:
      make_train_fn = make_vmapped_train_fn
    else:
      agents = parallel.put_agent(agents, mesh, stacked=True)
      data = parallel.put_dataset(data, mesh)
      make_train_fn = lambda k: parallel.make_train_fn(k, mesh, stacked=True)
    preemption.inject_fault('built')
    # ---- nothing above writes to disk (but the lock beside the workdir) ----
    _sync('sweep checked')
    run_ids = (sweep_checkpoint.prepare_dir(sweep, config, members, configs, resume_command)
               if writer else None)
    _sync('sweep prepared')
    preemption.set_startup_message(
        f'SIGTERM while starting up the sweep {sweep.path}: nothing new to save; continue '
        f'with: {resume_command or "the same call with resume=True"}')
    ckpt = checkpoint.Checkpointer(sweep.checkpoint_dir,
                                   max_to_keep=config.checkpoint_max_to_keep)
    loggers = []
    try:
      step = 0
      if sweep.resuming:
        agents, restored = ckpt.restore(agents)    # laid out like `agents` (this mesh)
        step = restored or 0
      if writer:
        loggers, moved, where = sweep_checkpoint.open_member_logs(sweep, run_ids, step)
        if sweep.resuming:
          print(f'resuming the sweep {sweep.path} from step {step}'
                + (f' (moved the {moved} member metric rows logged after it to '
                   f'set_aside/{os.path.basename(where)}/ in the member directories)'
                   if moved else ''),
                file=sys.stderr)
      return _train_members(config, task, members, agents, data, make_train_fn, ckpt,
                            loggers, step, sweep, mesh, progress, evaluate, resume_command)
    finally:
      ckpt.close()
      for logger in loggers:
        logger.close()
  finally:
    preemption.remove_cleanup(lock.release)
    lock.release()


def _sync(name: str) -> None:
  if jax.process_count() > 1:       # every host checked the workdir before any host writes
    multihost_utils.sync_global_devices(name)


def _evaluate_member(task, host_agents, members, index, config):
  member_agent = unstack(host_agents, index)
  return tasks.run_evaluation(task, member_agent, _policy_fn(member_agent, members[index]['seed']),
                              config.eval_episodes, members[index]['seed'])


def _train_members(config, task, members, agents, data, make_train_fn, ckpt, loggers, step,
                   sweep, mesh, progress, evaluate, resume_command) -> SweepResult:
  """The sweep's loop from `step`: calls of steps_per_call updates (the last may be shorter);
  log, checkpoint and eval intervals fire at the first call boundary at or after they fall
  due, and at the end (as lps_jax.main does for a run)."""
  num_members = len(members)
  train_fns = {}                    # updates per call -> jitted fn (K, and a shorter last call)
  due = lambda previous, step, interval: (engine.falls_due(previous, step, interval)
                                          or step >= config.num_steps)
  to_host = parallel.fetch if mesh is not None else jax.device_get
  can_evaluate = evaluate and task.has_evaluation
  train_rows = [logger.last_row('train') for logger in loggers] or [{} for _ in members]
  eval_rows = [logger.last_row('eval') for logger in loggers] or [{} for _ in members]
  hint = (f'continue with: {resume_command}' if resume_command
          else 'call it again with resume=True to continue')
  with preemption.StopSignal() as stop:
    if step and can_evaluate:                  # killed while evaluating at the restored step?
      missing = [i for i, logger in enumerate(loggers) if not logger.has_row('eval', step) and
                 due(int(max([0] + [r['step'] for r in metrics_log.read_rows(
                     logger.workdir, 'eval')])), step, config.eval_interval)]
      # (every process fetches on multi-host: the gather is collective)
      host_agents = to_host(agents) if missing or jax.process_count() > 1 else None
      for i in missing:
        eval_rows[i] = _evaluate_member(task, host_agents, members, i, config)
        loggers[i].write('eval', step, eval_rows[i])
    if stop.requested:                          # SIGTERM while starting up: nothing new to save
      preemption.end_startup()
      raise preemption.Preempted(f'SIGTERM before the sweep resumed training (step {step}): '
                                 f'nothing new to save; {hint}')
    window_start, window_steps = time.perf_counter(), 0
    for k in engine.call_lengths(step, config.num_steps, config.steps_per_call):
      if k not in train_fns:
        train_fns[k] = make_train_fn(k)
      agents, metrics = train_fns[k](agents, data)
      preemption.end_startup()   # compiled and running: from now on SIGTERM saves at a boundary
      previous, step = step, step + k
      window_steps += k
      preemption.inject_fault(step)
      if due(previous, step, config.log_interval):
        metrics = to_host(metrics)
        rate = window_steps / max(time.perf_counter() - window_start, 1e-9)
        window_start, window_steps = time.perf_counter(), 0
        for i in range(num_members):
          train_rows[i] = {k: float(v[i]) for k, v in metrics.items()}
          train_rows[i]['steps_per_second'] = rate
          if loggers:
            loggers[i].write('train', step, train_rows[i])
        if progress:
          print(f'step {step}: {rate:.0f} steps/s per member, {rate * num_members:.0f} '
                'agent-steps/s', file=sys.stderr)
      if due(previous, step, config.checkpoint_interval) or stop.requested:
        ckpt.save(step, agents)
      if stop.requested:
        ckpt.wait()
        raise preemption.Preempted(f'SIGTERM at step {step}: saved the sweep checkpoint '
                                   f'{ckpt.path(step)}; {hint}')
      if can_evaluate and due(previous, step, config.eval_interval):
        host_agents = to_host(agents)
        for i in range(num_members):
          eval_rows[i] = _evaluate_member(task, host_agents, members, i, config)
          if loggers:
            loggers[i].write('eval', step, eval_rows[i])
        if progress:
          print(f'step {step}: ' + '; '.join(
              f'm{i} ' + ', '.join(f'{k}={v:.3f}' for k, v in row.items())
              for i, row in enumerate(eval_rows)), file=sys.stderr)
    ckpt.save(step, agents)         # no-op unless the loop did not run (already complete)
    ckpt.wait()
  if loggers:
    sweep_checkpoint.write_member_finals(sweep, step, train_rows, eval_rows,
                                         ckpt.path(ckpt.latest_step()))
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
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  error = cli.seeds_error(seed_list)
  if error:
    raise SweepError(error)
  return make_members(grid, seed_list)


def check_sweep_workdir(workdir: str) -> None:
  """SweepError unless `workdir` can hold a sweep: given, creatable, and neither a single
  run's directory (config.json) nor a non-empty directory that holds no sweep. Reads only."""
  if not workdir:
    raise SweepError('--workdir is required')
  reason = rundir.unwritable_reason(workdir)
  if reason:
    raise SweepError(f'workdir {workdir}: {reason}')
  if os.path.exists(os.path.join(workdir, rundir.CONFIG_FILE)):
    raise SweepError(f'workdir {workdir} holds a single run ({rundir.CONFIG_FILE}), not a '
                     f'sweep; choose another --workdir')
  if os.path.isdir(workdir) and not os.path.exists(os.path.join(workdir, 'sweep.json')):
    others = [n for n in os.listdir(workdir) if not n.endswith(rundir.IGNORED_ENTRIES_SUFFIX)]
    if others:
      raise SweepError(f'workdir {workdir} is not empty and holds no sweep (found '
                       f'{sorted(others)[:3]}); choose another --workdir')


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
  flags.DEFINE_bool('resume', False, 'Continue the sweep in --workdir from its last checkpoint '
                    '(fine on a new or empty workdir too, so a preemptible job can always pass '
                    'it).')
  return flags.FLAGS


def main(argv):
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  flags_ = FLAGS
  absl_logging.set_verbosity(absl_logging.WARNING)   # no INFO noise (jax, orbax)
  preemption.inject_fault('start')
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {argv[1:]}')
  try:
    members_from_strings(flags_.seeds, flags_.sweep)     # bad --seeds/--sweep: before any work
    check_sweep_workdir(flags_.workdir)
    parallel.maybe_initialize_distributed()
    config = flags_.config
    if flags_.num_steps is not None:
      with config.unlocked():
        config.num_steps = flags_.num_steps
    if not flags_.workdir:
      raise SweepError('--workdir is required')
    members = members_from_strings(flags_.seeds, flags_.sweep)
    mesh = None
    if flags_.sweep_axis or jax.device_count() > 1:
      mesh = parallel.make_mesh(max(flags_.sweep_axis, 1))
    # One writer per sweep directory: run_vmapped_sweep holds <workdir>.lock (rundir.RunLock).
    result = run_vmapped_sweep(
        config, members, flags_.workdir, progress=flags_.progress, mesh=mesh,
        resume=flags_.resume,
        resume_command=sweep_checkpoint.resume_command('lps_jax.vmap_sweep', sys.argv))
    summary = [{'member': i, **m, **{f'eval/{k}': v for k, v in e.items()}}
               for i, (m, e) in enumerate(zip(result.members, result.eval_metrics))]
    print(json.dumps(summary))
  except (SweepError, parallel.ShardingError, config_lib.ConfigError,
          dataset_lib.DatasetError, rundir.RunDirError, checkpoint.CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except preemption.Preempted as e:
    preemption.exit_preempted(e)


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  FLAGS = _define_flags()
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, FLAGS,
                                                          default_config=DEFAULT_CONFIG))
