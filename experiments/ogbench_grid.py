"""OGBench agents x tasks x seeds: one vmapped program per agent, parallel env evaluation.

    dataset   <dataset_dir>/<domain>-play-v0.npz (generated with lps_jax.data.generate if
              missing), relabelled per task; tasks share observations / actions, so the
              rewards / masks get a task axis (lps_jax.multitask)
    train     per agent: members = tasks x seeds in ONE jit(vmap(vmap(scan))) program, until
              --num_steps or --time_budget_s (checked at call boundaries)
    evaluate  at each --eval_at step (and the last step reached): every member's params go to
              a pool of CPU worker processes (lockstep chunked rollouts), overlapping with
              training
    outputs   <workdir>/success.csv   agent, task, seed, step, success, return, episode_length
              <workdir>/train.csv     agent, task, seed, step, losses at each eval point
              <workdir>/curves.png    success vs steps, mean and a min..max band over seeds
              <workdir>/table.md      mean +- std beside the paper's numbers
              <workdir>/summary.json  steps reached, agent-steps/s, compile / wall time

  python experiments/ogbench_grid.py --agents=lps,qcfql,fql --tasks=2,3 --seeds=0..4 \
      --size=cpu --num_steps=100000 --eval_at=50000,100000 --eval_episodes=50 \
      --dataset_dir=/tmp/ogdata100 --dataset_episodes=100 --workdir=runs/ogbench_cpu

Train on one machine, evaluate on another (--save_params writes params_<agent>_<step>.npz, every
member's network params, at each eval point; --noevaluate skips the env rollouts there):

  python experiments/ogbench_grid.py --agents=lps ... --noevaluate --save_params --workdir=runs/lps
  python experiments/ogbench_grid.py --evaluate_saved=runs/lps,runs/fql --workdir=runs/eval

Several runs (e.g. one process per agent sharing a GPU) are combined into one table and plot:

  python experiments/ogbench_grid.py --merge=runs/lps,runs/qcfql,runs/fql --workdir=runs/all

Preemption: the grid holds <workdir>.lock, checkpoints each agent's [tasks x seeds] program in
<workdir>/checkpoints/<agent>/ (every --checkpoint_interval steps, at each eval point, at the end
and on SIGTERM, which then exits 75; grid.json records the flags and the finished agents), and
continues with the same command plus --resume: training from the last checkpoint, evaluation
points already done kept (success.csv / train.csv rows are never rewritten or duplicated),
evaluations that were still pending redone from the checkpoint of their step.

Sizes: cpu = 2x128 every network, batch 128; paper = the agent's ogbench config (LPS: flow
4x512, critic 4x256, latent actor 2x256; QC-FQL: flow / one-step 4x512, critic 4x256; FQL:
4x512), batch 256; tiny = 2x16, batch 16 (tests).
"""
import csv
import json
import os
import signal
import sys
import time

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

# Paper numbers (5-task average success, 1M steps, official 1M-transition data): LPS paper
# table for LPS and QC-FQL, FQL paper for FQL.
PAPER_SUCCESS = {
    'cube-single': {'lps': 0.95, 'qcfql': 0.99, 'fql': 0.96},
    'cube-double': {'lps': 0.41, 'qcfql': 0.39, 'fql': 0.29},
    'scene': {'lps': 0.79, 'qcfql': 0.49, 'fql': 0.56},
    'puzzle-3x3': {'lps': 1.00, 'qcfql': 0.40, 'fql': 0.30},
    'puzzle-4x4': {'lps': 0.22, 'qcfql': 0.22, 'fql': 0.17},
}
SIZES = {
    'cpu': {'hidden': (128, 128), 'batch_size': 128},
    'tiny': {'hidden': (16, 16), 'batch_size': 16},
    'paper': None,
}

FLAGS = flags.FLAGS
flags.DEFINE_list('agents', ['lps', 'qcfql', 'fql'], 'Config names in experiments/configs/.')
flags.DEFINE_string('domain', 'cube-single', 'OGBench manipulation domain.')
flags.DEFINE_string('tasks', '2,3', "Task numbers, e.g. '1..5' or '2,3'.")
flags.DEFINE_string('seeds', '0..4', "Seeds, e.g. '0..4' or '0,1'.")
flags.DEFINE_enum('size', 'cpu', list(SIZES), 'Network / batch size preset.')
flags.DEFINE_float('alpha', None, "Override the agents' alpha (FQL / QC-FQL distillation "
                   'weight, ReBRAC BC weight); an agent without one is an error.')
flags.DEFINE_multi_string('set', [], "A config override for every agent, applied after --size "
                          "and --alpha: --set=agent.KEY=VALUE (a Python literal), repeatable, "
                          "e.g. --set=agent.lr=1e-4 --set=agent.flow_steps=50000.")
flags.DEFINE_enum('compute_dtype', 'float32', ['float32', 'bfloat16'], 'Matmul precision of '
                  'every network (params, optimiser state and losses stay float32).')
flags.DEFINE_integer('num_steps', 100_000, 'Training steps per member.')
flags.DEFINE_integer('steps_per_call', 1_000, 'Updates fused into one jit call.')
flags.DEFINE_string('eval_at', '50000,100000', 'Steps to evaluate at (multiples of '
                    'steps_per_call); the last step reached is always evaluated.')
flags.DEFINE_integer('eval_episodes', 50, 'Episodes per (agent, task, seed) and eval point.')
flags.DEFINE_integer('eval_workers', 2, 'CPU evaluation processes (0: evaluate inline).')
flags.DEFINE_float('time_budget_s', 0.0, 'Per-agent training budget in seconds (0: none); '
                   'training stops at the first call boundary after it.')
flags.DEFINE_string('dataset_dir', '/tmp/ogdata100', 'Folder of <domain>-play-v0.npz.')
flags.DEFINE_integer('dataset_episodes', 100, 'Episodes to generate if the dataset is missing.')
flags.DEFINE_integer('dataset_steps_per_episode', 1001, 'Steps per generated episode.')
flags.DEFINE_integer('workers', 2, 'Processes generating the dataset.')
flags.DEFINE_string('workdir', None, 'Output folder.')
flags.DEFINE_bool('save_params', False, "Write every member's network params at each eval "
                  'point to <workdir>/params_<agent>_<step>.npz.')
flags.DEFINE_bool('evaluate', True, 'Evaluate at the eval points (--noevaluate: train only, '
                  'e.g. with --save_params on a machine whose CPUs are better used elsewhere).')
flags.DEFINE_list('evaluate_saved', [], 'Folders with the params_*.npz of --save_params runs: '
                  'evaluate them here into --workdir (no training).')
flags.DEFINE_list('merge', [], 'Workdirs of earlier runs: combine their success.csv / '
                  'train.csv / summary.json into --workdir (no training).')
flags.DEFINE_bool('resume', False, 'Continue the grid in --workdir (after a preemption): '
                  'training from the last checkpoints, evaluation points already done kept.')
flags.DEFINE_integer('checkpoint_interval', 10_000, 'Checkpoint every N steps (at the first '
                     'call boundary after), besides the eval points, the end and SIGTERM; 0: '
                     'only those.', lower_bound=0)

GRID_FILE = 'grid.json'
CHECKPOINT_DIR = 'checkpoints'
GRID_OUTPUTS = (GRID_FILE, 'success.csv', 'train.csv', 'summary.json', 'table.md', CHECKPOINT_DIR)
# Flags a resumed grid must share with the run it continues (the others, e.g. --num_steps,
# --eval_at, --time_budget_s, --eval_workers, --evaluate, may change).
SAME_ON_RESUME = ('agents', 'domain', 'tasks', 'seeds', 'size', 'alpha', 'set', 'steps_per_call',
                  'eval_episodes', 'dataset_episodes', 'dataset_steps_per_episode')


class GridError(ValueError):
  """Bad flags or data; reported as one line on stderr, exit status 2."""


def parse_flags():
  from lps_jax import multitask  # pylint: disable=g-import-not-at-top
  try:
    tasks = multitask.parse_int_list(FLAGS.tasks)
    seeds = multitask.parse_int_list(FLAGS.seeds)
    eval_at = multitask.parse_int_list(FLAGS.eval_at)
  except ValueError as e:
    raise GridError(f'--tasks / --seeds / --eval_at: {e}') from None
  if not FLAGS.workdir:
    raise GridError('--workdir is required')
  for agent in FLAGS.agents:
    if not os.path.exists(config_path(agent)):
      raise GridError(f'--agents: no config {config_path(agent)}')
  if FLAGS.num_steps < 1 or FLAGS.steps_per_call < 1 or FLAGS.eval_episodes < 1:
    raise GridError('--num_steps, --steps_per_call and --eval_episodes must be >= 1')
  if FLAGS.num_steps % FLAGS.steps_per_call:
    raise GridError(f'--num_steps={FLAGS.num_steps} must be a multiple of --steps_per_call='
                    f'{FLAGS.steps_per_call}')
  bad = [s for s in eval_at if s % FLAGS.steps_per_call or s < 1]
  if bad:
    raise GridError(f'--eval_at {bad} must be positive multiples of --steps_per_call='
                    f'{FLAGS.steps_per_call}')
  check_grid_inputs(tasks, seeds)
  return tasks, seeds, sorted(s for s in eval_at if s <= FLAGS.num_steps)


def check_grid_inputs(tasks, seeds):
  """The rest of the refusable inputs, before the workdir, the dataset or any output is made:
  domain, task numbers (OGBench's registered single-task envs), seeds, num_steps, every
  agent's config, the workdir, and the dataset (its headers, or what generating it needs)."""
  import re  # pylint: disable=g-import-not-at-top
  from lps_jax import cli, config_lib  # pylint: disable=g-import-not-at-top
  if FLAGS.domain not in config_lib.OGBENCH_DOMAINS:
    raise GridError(f'--domain={FLAGS.domain}: choose from {sorted(config_lib.OGBENCH_DOMAINS)}')
  error = cli.seeds_error(seeds)
  if error:
    raise GridError(error)
  if FLAGS.num_steps > config_lib.MAX_STEPS:
    raise GridError(f'--num_steps must be <= {config_lib.MAX_STEPS} (the step counters are '
                    f'int32), got {FLAGS.num_steps}')
  for name, minimum in (('dataset_episodes', 1), ('dataset_steps_per_episode', 2),
                        ('workers', 1), ('eval_workers', 0)):
    if FLAGS[name].value < minimum:
      raise GridError(f'--{name} must be >= {minimum}, got {FLAGS[name].value}')
  reason = cli.workdir_error(FLAGS.workdir)
  if reason:
    raise GridError(reason)
  import gymnasium  # pylint: disable=g-import-not-at-top
  import ogbench  # pylint: disable=g-import-not-at-top,unused-import  (registers the envs)
  pattern = re.compile(rf'{re.escape(FLAGS.domain)}-singletask-task(\d+)-v0')
  known = sorted(int(m.group(1)) for m in map(pattern.fullmatch, gymnasium.registry) if m)
  unknown = [task for task in tasks if task not in known]
  if unknown:
    raise GridError(f'--tasks: {FLAGS.domain} has no task {unknown[0]} (OGBench tasks: '
                    f"{','.join(map(str, known))})")
  for agent in FLAGS.agents:
    for task in tasks:
      try:
        config_lib.validate(run_config(agent, task))
      except config_lib.ConfigError as e:
        raise GridError(f'{agent}: {e}') from None
  check_dataset(FLAGS.domain, FLAGS.dataset_dir)


def check_dataset(domain: str, dataset_dir: str):
  """The domain's data in dataset_dir: a readable OGBench file, or a folder it can be generated
  in. Raises GridError / DatasetError; writes nothing."""
  from lps_jax import rundir  # pylint: disable=g-import-not-at-top
  from lps_jax.data import generate, ogbench_data  # pylint: disable=g-import-not-at-top
  dataset = f'{domain}-play-v0'
  train_path, _ = generate.output_paths(dataset, dataset_dir)
  if os.path.exists(train_path):
    ogbench_data.validate_ogbench_file(train_path)
    return
  reason = rundir.unwritable_reason(dataset_dir)
  if reason:
    raise GridError(f'--dataset_dir={dataset_dir}: cannot generate {dataset} there: {reason}')


def config_path(agent: str) -> str:
  return os.path.join(REPO, 'experiments', 'configs', f'{agent}.py')


def parse_overrides(items):
  """--set items ['agent.lr=1e-4', ...] -> {'agent.lr': 1e-4} (a value that is no Python
  literal stays a string), or GridError."""
  import ast  # pylint: disable=g-import-not-at-top
  overrides = {}
  for item in items:
    key, sep, text = item.partition('=')
    if not sep or not key.strip() or not text.strip():
      raise GridError(f'--set: expected agent.KEY=VALUE, got {item!r}')
    try:
      overrides[key.strip()] = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
      overrides[key.strip()] = text.strip()
  return overrides


def run_config(agent: str, task: int, size_name=None, domain=None, overrides=None):
  """The agent's ogbench run config for one task, resized by --size (or size_name), with
  --set (or overrides, a list of its items) applied last."""
  from lps_jax import config_lib  # pylint: disable=g-import-not-at-top
  size_name, domain = size_name or FLAGS.size, domain or FLAGS.domain
  config = config_lib.load_config_file(
      f'{config_path(agent)}:ogbench,domain={domain},task={task}')
  size = SIZES[size_name]
  if size is not None:
    agent_cfg = config.agent
    agent_cfg.flow_hidden_dims = agent_cfg.critic_hidden_dims = size['hidden']
    agent_cfg.actor_hidden_dims = size['hidden']
    agent_cfg.batch_size = size['batch_size']
  if FLAGS.alpha is not None:
    if 'alpha' not in config.agent:
      raise GridError(f'--alpha: {agent} has no alpha')
    config.agent.alpha = FLAGS.alpha
  config.agent.compute_dtype = FLAGS.compute_dtype
  if 'flow_steps' in config.agent and size_name == 'tiny':
    config.agent.flow_steps = 2
  config.dataset_dir = FLAGS.dataset_dir
  try:
    config_lib.apply_overrides(config, parse_overrides(
        FLAGS.set if overrides is None else overrides))
  except config_lib.ConfigError as e:
    raise GridError(f'--set: {agent}: {e}') from None
  return config


def ensure_dataset(domain=None):
  """Generate <domain>-play-v0 into --dataset_dir unless it is there -> seconds spent."""
  from lps_jax.data import generate  # pylint: disable=g-import-not-at-top
  dataset = f'{domain or FLAGS.domain}-play-v0'
  train_path, _ = generate.output_paths(dataset, FLAGS.dataset_dir)
  if os.path.exists(train_path):
    print(f'reusing {train_path}', flush=True)
    return {'generated': False, 'path': train_path}
  stats = generate.generate_dataset(
      dataset, FLAGS.dataset_episodes, FLAGS.dataset_dir, workers=FLAGS.workers,
      steps_per_episode=FLAGS.dataset_steps_per_episode, progress=False)
  print(f"generated {train_path}: {stats['total_steps']} steps in {stats['seconds']:.1f} s "
        f"({stats['steps_per_second']:.0f} transitions/s, {FLAGS.workers} workers)", flush=True)
  return {'generated': True, 'path': train_path, **stats}


def load_tasks(tasks, sparse: bool, domain=None, pool=None):
  """Per-task transitions (relabelled) and the dataset info of the first task. The env each
  dataset is loaded with is handed to `pool` (an inline EvalPool reuses it)."""
  from lps_jax.data import ogbench_data  # pylint: disable=g-import-not-at-top
  from lps_jax.envs import ogbench_env  # pylint: disable=g-import-not-at-top
  from lps_jax import config_lib  # pylint: disable=g-import-not-at-top
  per_task, info = [], None
  for task in tasks:
    name = config_lib.ogbench_task_name(domain or FLAGS.domain, task)
    env = ogbench_env.make_env(name)
    transitions, task_info = ogbench_data.load_ogbench_dataset(
        name, FLAGS.dataset_dir, sparse=sparse, env=env)
    if pool is not None:
      pool.keep_env(name, env)
    per_task.append(transitions)
    info = info or task_info
  return per_task, info


def train_agent(agent, tasks, seeds, eval_at, per_task, info, pool, log, results, train=True,
                domain=None, members=None, ident=None, time_budget_s=None, on_trained=None,
                checkpoints=True):
  """Train one agent's tasks x members program, submitting evaluations -> its summary.

  Resumes from the agent's last checkpoint when there is one (--resume); first resubmits the
  evaluations of earlier eval points that have no success rows (a preemption lost them).
  train=False (an agent whose training finished before): only that.

  members  vmap_sweep members [{'seed': s, 'agent.<key>': value}] on the program's member axis
           (default: one per seed); swept keys must be vmappable (lr, agent.hparams)
  ident    ident(task, member, step) -> the fields naming an evaluation (its tag, in order) and
           a train row (default: agent, task, seed, step)
  time_budget_s  this program's training budget (default --time_budget_s; 0: none)
  on_trained     on_trained(agents [T, M, ...], step) after the last call (e.g. more metrics)
  checkpoints    False: no checkpoints and no resume (a driver that reruns whole programs);
                 SIGTERM then exits 143 at the next call boundary
  """
  import jax  # pylint: disable=g-import-not-at-top
  from lps_jax import checkpoint, config_lib, engine, multitask  # pylint: disable=g-import-not-at-top
  from lps_jax import preemption, vmap_sweep  # pylint: disable=g-import-not-at-top
  configs = [run_config(agent, task, domain=domain) for task in tasks]
  config = configs[0]
  members = members or [{'seed': seed} for seed in seeds]
  ident = ident or (lambda task, member, step: {'agent': agent, 'task': task,
                                                'seed': member['seed'], 'step': step})
  action_dim, obs_dim = info['act_dim'], info['obs_dim']
  agent_cfg = config.agent
  try:
    config_lib.validate(config)
    agents = multitask.create_member_agents(config, members, len(tasks), obs_dim,
                                            agent_cfg.horizon * action_dim)
  except (config_lib.ConfigError, vmap_sweep.SweepError) as e:
    raise GridError(f'{agent}: {e}') from None
  data = multitask.stack_task_datasets(per_task, agent_cfg.horizon, source=info['path'])
  train_fn = multitask.make_train_fn(FLAGS.steps_per_call, data)
  num_members = len(tasks) * len(members)
  budget = FLAGS.time_budget_s if time_budget_s is None else time_budget_s
  pieces = max(1, (FLAGS.eval_workers or 1) // num_members)
  ckpt = (checkpoint.Checkpointer(os.path.join(FLAGS.workdir, CHECKPOINT_DIR, agent),
                                  max_to_keep=2, keep_steps=list(eval_at) + [FLAGS.num_steps])
          if checkpoints else None)
  meta = {'agent': agent, 'domain': domain or FLAGS.domain, 'size': FLAGS.size, 'tasks': tasks,
          'seeds': seeds, 'obs_dim': obs_dim, 'action_dim': action_dim, 'set': list(FLAGS.set)}

  def record_eval_point(step, metrics):
    """The train rows (once) and --save_params file of an eval point -> all params (numpy)."""
    host = jax.device_get(metrics)
    all_params = multitask.host_params(agents)
    for t, task in enumerate(tasks):
      for m, member in enumerate(members):
        results.add_train_row({**ident(task, member, step),
                               **{k: float(v[t, m]) for k, v in host.items()}})
    results.write(plot=False)       # the rows are on disk before the checkpoint of `step`
    preemption.inject_fault(f'rows{step}')
    if FLAGS.save_params:
      multitask.save_params(os.path.join(FLAGS.workdir, f'params_{agent}_{step}.npz'),
                            all_params, {**meta, 'step': step})
    return all_params

  def submit_point(step, all_params):
    """Evaluations of the members of eval point `step` that have no success row yet."""
    if not FLAGS.evaluate:
      return
    for t, task in enumerate(tasks):
      for m, member in enumerate(members):
        tag = tuple(ident(task, member, step).values())
        if not results.has_success(tag):
          submit_member(pool, results, agent_cfg, obs_dim, action_dim,
                        multitask.member_params(all_params, t, m), configs[t].task, pieces, tag,
                        seed=member['seed'])

  try:
    step = 0
    if ckpt is not None and FLAGS.resume:
      agents, restored = ckpt.restore(agents)
      step = restored or 0
      if step:
        log(f'{agent}: resumed from the checkpoint at step {step}')
    if ckpt is not None:
      redo_evaluations(agent, tasks, seeds, step, agents, ckpt, results, submit_point, meta,
                       log)
    start = time.perf_counter()
    first_step, compile_s, steady_start, steady_from = step, None, None, step
    with preemption.StopSignal() as stop:
      while train and step < FLAGS.num_steps:
        agents, metrics = train_fn(agents, data)
        preemption.end_startup()   # compiled and running: SIGTERM now saves at a boundary
        previous, step = step, step + FLAGS.steps_per_call
        preemption.inject_fault(step)
        jax.block_until_ready(metrics)   # no run-ahead dispatch: the budget check sees real time
        if compile_s is None:
          compile_s = time.perf_counter() - start
          steady_start, steady_from = time.perf_counter(), step
        elapsed = time.perf_counter() - start
        over_budget = budget > 0 and elapsed >= budget
        at_eval = step in eval_at or over_budget or step >= FLAGS.num_steps
        all_params = record_eval_point(step, metrics) if at_eval else None
        if ckpt is not None and (at_eval or stop.requested
                                 or engine.falls_due(previous, step, FLAGS.checkpoint_interval)):
          ckpt.save(step, agents)      # after the rows it stands for are on disk
        if stop.requested:
          if ckpt is None:
            raise SystemExit(128 + signal.SIGTERM)
          ckpt.wait()
          raise preemption.Preempted(
              f'SIGTERM at step {step} of {agent}: saved the checkpoint {ckpt.path(step)}; '
              f'pending evaluations are redone on resume; continue with: '
              f'{grid_resume_command()}')
        if at_eval:
          submit_point(step, all_params)
        # Progress so far, written with every output (a run stopped mid-training still says it).
        results.summary['training'] = {'agent': agent, 'step': step, 'seconds': elapsed,
                                       'first_call_seconds': compile_s}
        if step % (10 * FLAGS.steps_per_call) == 0 or over_budget:
          log(f'{agent}: step {step} ({elapsed:.0f} s)')
        if results.collect():
          results.write()
        if over_budget:
          break
    jax.block_until_ready(agents)
    if ckpt is not None:
      ckpt.wait()
  finally:
    if ckpt is not None:
      ckpt.close()
  train_s = time.perf_counter() - start
  steady_steps = step - steady_from
  rate = (steady_steps / (time.perf_counter() - steady_start) if steady_steps
          else float('nan'))
  if on_trained is not None:
    on_trained(agents, step)
  summary = {
      'agent': agent, 'horizon': agent_cfg.horizon, 'alpha': agent_cfg.get('alpha'),
      'set': list(FLAGS.set), 'batch_size': agent_cfg.batch_size,
      'flow_hidden_dims': list(agent_cfg.flow_hidden_dims),
      'critic_hidden_dims': list(agent_cfg.critic_hidden_dims),
      'actor_hidden_dims': list(agent_cfg.actor_hidden_dims),
      'members': num_members, 'steps_reached': step, 'train_seconds': train_s,
      'first_call_seconds': compile_s, 'steps_per_second': rate,   # after the first call
      'agent_steps_per_second': rate * num_members,
      'agent_steps_per_second_with_compile': (step - first_step) * num_members / train_s,
      'eval_steps': results.train_steps(agent),
  }
  if first_step:
    summary['resumed_from_step'] = first_step
  log(f"{agent}: {step} steps x {num_members} members in {train_s:.0f} s (first call "
      f"{compile_s or 0:.0f} s); {summary['agent_steps_per_second']:.0f} agent-steps/s")
  return summary


def redo_evaluations(agent, tasks, seeds, step, agents, ckpt, results, submit_point, meta,
                     log):
  """Eval points up to the restored `step` whose members lack success rows (their evaluations
  were pending when the grid stopped), or whose --save_params file is missing: their params
  come from the checkpoint of that point (kept for it) and are evaluated / saved again."""
  from lps_jax import checkpoint, multitask  # pylint: disable=g-import-not-at-top
  for point in results.train_steps(agent):
    if point > step:
      continue          # recomputed by training (its rows are kept, not written twice)
    npz = os.path.join(FLAGS.workdir, f'params_{agent}_{point}.npz')
    missing = FLAGS.evaluate and any(not results.has_success((agent, task, seed, point))
                                     for task in tasks for seed in seeds)
    need_npz = FLAGS.save_params and not os.path.exists(npz)
    if not (missing or need_npz):
      continue
    if point == step:
      params = multitask.host_params(agents)
    elif point in ckpt.steps:
      try:
        params = multitask.host_params(ckpt.restore(agents, step=point)[0])
      except checkpoint.CheckpointError as e:
        log(f'{agent}: cannot redo the evaluations of step {point}: {e}')
        continue
    else:
      log(f'{agent}: cannot redo the evaluations of step {point}: no checkpoint of it')
      continue
    if need_npz:
      multitask.save_params(npz, params, {**meta, 'step': point})
    log(f'{agent}: redoing the evaluations of step {point} that were pending')
    submit_point(point, params)


def submit_member(pool, results, agent_cfg, obs_dim, action_dim, params, env_name, pieces,
                  tag, seed=None):
  """--eval_episodes of one member, in `pieces` jobs; tag = (agent, task, seed, step) unless
  `seed` (the episodes' reset seed base) is given."""
  from lps_jax.envs import eval_pool  # pylint: disable=g-import-not-at-top
  jobs = eval_pool.split_episodes(FLAGS.eval_episodes, pieces)
  results.expected[tag] = len(jobs)        # its success row is written once all are done
  for episodes in jobs:
    results.pending.append(pool.submit(eval_pool.EvalJob(
        agent_cfg, obs_dim, action_dim, params, env_name, episodes.start, len(episodes),
        tag[2] if seed is None else seed, tag)))


def write_csv(path, rows):
  if not rows:
    return
  keys = list(dict.fromkeys(k for row in rows for k in row))
  with open(path + '.tmp', 'w', newline='') as f:     # atomic: a kill never truncates it
    writer = csv.DictWriter(f, keys)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(path + '.tmp', path)


def write_text(path, text):
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def success_rows(results, kept=()):
  """The rows of success.csv: `kept` (those of the run a resumed grid continues) and one per
  member evaluation in `results` (episode-weighted means of its pieces), sorted by (agent,
  task, seed, step)."""
  from lps_jax.envs import eval_pool  # pylint: disable=g-import-not-at-top
  rows = list(kept)
  for (agent, task, seed, step), m in eval_pool.merge(results).items():
    rows.append({'agent': agent, 'task': task, 'seed': seed, 'step': step,
                 'success': m['success'], 'return': m['return'],
                 'episode_length': m['episode_length'], 'episodes': m['num_episodes']})
  return sorted(rows, key=row_key)


def row_key(row):
  return (row['agent'], int(row['task']), int(row['seed']), int(row['step']))


def table_markdown(rows, agents, domain=None, size=None):
  """mean +- std over seeds per (agent, task, step), and over tasks; paper numbers beside."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  domain, size = domain or FLAGS.domain, size or FLAGS.size
  paper = PAPER_SUCCESS.get(domain, {})
  lines = [f'Success on {domain} ({size} size; mean ± std over seeds; '
           f'paper: 5-task mean at 1M steps on the official data)', '',
           '| agent | task | step | seeds | success | paper |', '|---|---|---|---|---|---|']
  for agent in agents:
    mine = [r for r in rows if r['agent'] == agent]
    for step in sorted({r['step'] for r in mine}):
      at = [r for r in mine if r['step'] == step]
      tasks = sorted({r['task'] for r in at})
      for task in tasks:
        values = [r['success'] for r in at if r['task'] == task]
        lines.append(f'| {agent} | {task} | {step} | {len(values)} | '
                     f'{np.mean(values):.2f} ± {np.std(values):.2f} | |')
      if len(tasks) > 1:
        seeds = sorted({r['seed'] for r in at})
        per_seed = [np.mean([r['success'] for r in at if r['seed'] == s]) for s in seeds]
        lines.append(f"| {agent} | all ({','.join(map(str, tasks))}) | {step} | {len(seeds)} | "
                     f'{np.mean(per_seed):.2f} ± {np.std(per_seed):.2f} | '
                     f"{paper.get(agent, '')} |")
      elif tasks:
        lines[-1] = lines[-1][:-2] + f" {paper.get(agent, '')} |"
  return '\n'.join(lines) + '\n'


def plot_curves(path, rows, agents, domain=None):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  tasks = sorted({r['task'] for r in rows})
  if not tasks:
    return
  fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    for agent in agents:
      mine = [r for r in rows if r['agent'] == agent and r['task'] == task]
      steps = sorted({r['step'] for r in mine})
      if not steps:
        continue
      values = [[r['success'] for r in mine if r['step'] == s] for s in steps]
      mean = [np.mean(v) for v in values]
      line, = ax.plot(steps, mean, marker='o', label=agent)
      ax.fill_between(steps, [np.min(v) for v in values], [np.max(v) for v in values],
                      color=line.get_color(), alpha=0.2)
    ax.set_title(f'{domain or FLAGS.domain} task {task}')
    ax.set_xlabel('training steps')
    ax.set_ylim(-0.02, 1.02)
  axes[0][0].set_ylabel('success (mean, min..max over seeds)')
  axes[0][-1].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_outputs(workdir, agents, rows, train_rows, summary, domain=None, size=None,
                  plot=True):
  """success.csv, train.csv, table.md, summary.json and curves.png (if plot) into workdir."""
  write_csv(os.path.join(workdir, 'success.csv'), rows)
  write_csv(os.path.join(workdir, 'train.csv'), train_rows)
  write_text(os.path.join(workdir, 'table.md'), table_markdown(rows, agents, domain, size))
  write_text(os.path.join(workdir, 'summary.json'), json.dumps(summary, indent=2, default=str))
  try:
    if plot:
      plot_curves(os.path.join(workdir, 'curves.png'), rows, agents, domain)
  except Exception as e:  # pylint: disable=broad-except  (a plot must not lose the numbers)
    print(f'plot failed: {e}', file=sys.stderr)
  return rows


class Results:
  """Evaluations in flight and done; done ones are written out as soon as they arrive."""
  step_column = 'step'        # the column of train.csv that names a row's step

  def __init__(self, workdir, summary, agents, domain=None, size=None):
    self.workdir, self.summary, self.agents = workdir, summary, agents
    self.domain, self.size = domain, size
    self.pending, self.done, self.train_rows = [], [], []
    self.failed = 0
    self.kept = []            # success rows of the run this one resumes
    self.expected = {}        # tag -> evaluation jobs submitted for it

  def load(self):
    """Resume: the success / train rows already in workdir (kept as they are)."""
    for name, rows in (('success.csv', self.kept), ('train.csv', self.train_rows)):
      path = os.path.join(self.workdir, name)
      if os.path.exists(path):
        rows += read_csv(path, numeric=('task', 'seed', 'step', 'episodes'))

  def complete(self):
    """self.done without the pieces of members whose other pieces are still running."""
    count = {}
    for tag, _, _ in self.done:
      count[tag] = count.get(tag, 0) + 1
    return [r for r in self.done if count[r[0]] >= self.expected.get(r[0], 1)]

  def has_success(self, tag) -> bool:
    """Whether member evaluation `tag` (agent, task, seed, step) has its success row."""
    return (any(row_key(r) == tag for r in self.kept)
            or any(t == tag for t, _, _ in self.complete()))

  def row_key(self, row):
    """What names a train / success row: (agent, task, seed, step)."""
    return row_key(row)

  def add_train_row(self, row) -> None:
    """A train row, unless one with its key is there (a resumed grid recomputes the same
    values)."""
    if not any(self.row_key(r) == self.row_key(row) for r in self.train_rows):
      self.train_rows.append(row)

  def train_steps(self, agent):
    """The eval points recorded for `agent` (its train rows)."""
    return sorted({int(r[self.step_column]) for r in self.train_rows if r['agent'] == agent})

  def collect(self, block: bool = False) -> bool:
    """Move finished evaluations to done (all of them if block) -> whether any arrived."""
    arrived = False
    for item in list(self.pending):
      if block or item.ready():
        self.pending.remove(item)
        try:
          self.done.append(item.get())
          arrived = True
        except Exception as e:  # pylint: disable=broad-except  (keep the other results)
          self.failed += 1
          print(f'evaluation failed: {type(e).__name__}: {e}', file=sys.stderr, flush=True)
    return arrived

  def write(self, plot=True):
    self.collect()          # every evaluation finished by now gets its row
    self.summary['evaluations_done'] = len(self.done)
    self.summary['evaluations_pending'] = len(self.pending)
    self.summary['evaluations_failed'] = self.failed
    return write_outputs(self.workdir, self.agents, success_rows(self.complete(), self.kept),
                         self.train_rows, self.summary, self.domain, self.size, plot)

  def drain(self, log):
    """Wait for every pending evaluation, writing the outputs as they arrive."""
    while self.pending:
      self.pending[0].wait()
      if self.collect() or not self.pending:
        log(f'evaluations done: {len(self.done)}, pending: {len(self.pending)}')
        self.write()


def make_log():
  """A print that prefixes the seconds since this call, flushed."""
  start = time.perf_counter()
  return lambda message: print(f'[{time.perf_counter() - start:6.0f} s] {message}', flush=True)


def grid_resume_command():
  from lps_jax import sweep_checkpoint  # pylint: disable=g-import-not-at-top
  return sweep_checkpoint.resume_command(sys.argv[0], sys.argv)


def check_grid_dir(workdir, resume, tasks, seeds):
  """The grid.json of the grid `workdir` holds when resuming it (None: start afresh); GridError
  if the workdir cannot be used as asked (a grid without --resume, other flags, outputs of a
  grid that kept no record). Reads only."""
  found = [n for n in GRID_OUTPUTS if n != GRID_FILE and os.path.exists(os.path.join(workdir, n))]
  path = os.path.join(workdir, GRID_FILE)
  if not found:
    return None        # nothing logged yet (at most a grid.json): start afresh
  if not os.path.exists(path):
    raise GridError(f'workdir {workdir} holds grid outputs ({", ".join(found)}) but no '
                    f'{GRID_FILE} to resume them from; choose another --workdir')
  if not resume:
    raise GridError(f'workdir {workdir} already holds a grid; pass --resume to continue it, '
                    f'or choose another --workdir')
  try:
    with open(path) as f:
      saved = json.load(f)
    before = saved['flags']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise GridError(f'{path} is unreadable ({type(e).__name__}); choose another '
                    f'--workdir') from None
  now = grid_flags(tasks, seeds)
  diffs = [f'--{k}: {before.get(k)} -> {now[k]}' for k in SAME_ON_RESUME if before.get(k) != now[k]]
  if diffs:
    raise GridError(f'--resume: the grid in {workdir} was started with other flags: '
                    + '; '.join(diffs) + ' (use the same flags, or another --workdir)')
  return saved


def grid_flags(tasks, seeds):
  """The SAME_ON_RESUME flags as stored in grid.json (tasks and seeds as lists)."""
  values = {k: FLAGS[k].value for k in SAME_ON_RESUME}
  values.update(tasks=list(tasks), seeds=list(seeds))
  return json.loads(json.dumps(values))


class GridState:
  """A training grid's <workdir>.lock (held while it runs) and <workdir>/grid.json: the flags,
  the command that resumes it, and the summaries of the agents whose training finished."""

  def __init__(self, tasks, seeds):
    self.workdir, self.tasks, self.seeds = FLAGS.workdir, tasks, seeds
    self.saved, self._lock = None, None

  @property
  def resuming(self):
    return self.saved is not None

  def __enter__(self):
    import datetime  # pylint: disable=g-import-not-at-top
    from lps_jax import preemption, rundir  # pylint: disable=g-import-not-at-top
    try:
      self._lock = rundir.RunLock.acquire(self.workdir)
    except rundir.RunDirError as e:
      raise GridError(str(e)) from None
    preemption.add_cleanup(self._lock.release)
    try:
      self.saved = check_grid_dir(self.workdir, FLAGS.resume, self.tasks, self.seeds)
    except GridError:
      self.__exit__()
      raise
    now = datetime.datetime.now().isoformat(timespec='seconds')
    saved = self.saved or {}
    self.record = {'flags': grid_flags(self.tasks, self.seeds), 'argv': sys.argv,
                   'resume_command': grid_resume_command(),
                   'created': saved.get('created', now),
                   'resumes': saved.get('resumes', []) + ([now] if self.resuming else []),
                   'finished': saved.get('finished', {})}
    preemption.set_startup_message(f'SIGTERM while starting up the grid {self.workdir}: '
                                   f'nothing new to save; continue with: '
                                   f'{self.record["resume_command"]}')
    return self

  def __exit__(self, *exc):
    from lps_jax import preemption  # pylint: disable=g-import-not-at-top
    if self._lock is not None:
      preemption.remove_cleanup(self._lock.release)
      self._lock.release()

  def write(self):
    """grid.json: written once the inputs are checked and loaded, before any row or
    checkpoint, and again as each agent's training finishes."""
    from lps_jax import rundir  # pylint: disable=g-import-not-at-top
    rundir.write_json(os.path.join(self.workdir, GRID_FILE), self.record)

  def finished(self, agent):
    """The summary of `agent` if its training finished in a run this one resumes."""
    return self.record['finished'].get(agent)

  def finish(self, agent, summary):
    self.record['finished'][agent] = summary
    self.write()


def run(tasks, seeds, eval_at, state=None):
  import jax  # pylint: disable=g-import-not-at-top
  from lps_jax import preemption  # pylint: disable=g-import-not-at-top
  from lps_jax.envs import eval_pool  # pylint: disable=g-import-not-at-top
  workdir = FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  wall_start = time.perf_counter()
  log = make_log()
  summary = {'flags': {k: FLAGS[k].value for k in (
      'agents', 'domain', 'tasks', 'seeds', 'size', 'alpha', 'compute_dtype', 'num_steps',
      'steps_per_call',
      'eval_at',
      'eval_episodes', 'eval_workers', 'time_budget_s', 'dataset_dir', 'dataset_episodes',
      'workers')}, 'devices': [str(d) for d in jax.devices()], 'agents': []}
  results = Results(workdir, summary, FLAGS.agents)
  if state is not None and state.resuming:
    results.load()           # rows already logged are kept as they are, never written twice
  pool = None
  try:
    summary['dataset'] = ensure_dataset()
    sparse = run_config(FLAGS.agents[0], tasks[0]).sparse_reward
    pool = eval_pool.EvalPool(FLAGS.eval_workers if FLAGS.evaluate else 0)
    load_start = time.perf_counter()
    per_task, info = load_tasks(tasks, sparse, pool=pool if FLAGS.evaluate else None)
    summary['dataset'].update(transitions=info['num_transitions'],
                              load_seconds=time.perf_counter() - load_start)
    log(f"loaded {len(tasks)} tasks x {info['num_transitions']} transitions")
    if state is not None:
      state.write()
    for agent in FLAGS.agents:
      finished = state.finished(agent) if state is not None else None
      trained = train_agent(agent, tasks, seeds, eval_at, per_task, info, pool, log, results,
                            train=finished is None)
      summary['agents'].append(finished or trained)
      if state is not None and finished is None:
        state.finish(agent, trained)
      results.write()
      preemption.arm(f'SIGTERM after training {agent}: its checkpoints are saved; continue '
                     f'with: {grid_resume_command()}')   # the next agent's start-up
    preemption.arm(f'SIGTERM while evaluating: training is saved; the {len(results.pending)} '
                   f'evaluations still running are redone with: {grid_resume_command()}')
    eval_start = time.perf_counter()
    results.drain(log)
    summary['eval_tail_seconds'] = time.perf_counter() - eval_start
  finally:
    if pool is not None:
      pool.terminate()
    summary['wall_seconds'] = time.perf_counter() - wall_start
    rows = results.write() if results.train_rows else []   # nothing trained: no outputs
  log(f'done in {summary["wall_seconds"]:.0f} s; {len(rows)} success rows in {workdir}')
  print(table_markdown(rows, FLAGS.agents))


def read_csv(path, numeric=('task', 'seed', 'step')):
  """Rows of a csv this driver wrote; ids to int, every other column but 'agent' to float."""
  rows = []
  with open(path, newline='') as f:
    for row in csv.DictReader(f):
      rows.append({k: (v if k == 'agent' else int(v) if k in numeric else float(v))
                   for k, v in row.items() if v != ''})
  return rows


def merge_runs(run_dirs, workdir):
  """Combine earlier runs' outputs (no training) -> the merged success rows."""
  if not workdir:
    raise GridError('--workdir is required')
  rows, train_rows, agents, domain, size = [], [], [], None, None
  summary = {'merged_from': list(run_dirs), 'agents': [], 'runs': []}
  for run_dir in run_dirs:
    paths = {name: os.path.join(run_dir, name)
             for name in ('success.csv', 'train.csv', 'summary.json')}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
      raise GridError(f'--merge: {missing[0]} does not exist')
    run_rows = read_csv(paths['success.csv'])
    rows += run_rows
    train_rows += read_csv(paths['train.csv'])
    with open(paths['summary.json']) as f:
      run_summary = json.load(f)
    summary['agents'] += run_summary.get('agents', [])
    summary['runs'].append({k: v for k, v in run_summary.items() if k != 'agents'})
    agents += [a for a in dict.fromkeys(r['agent'] for r in run_rows) if a not in agents]
    run_flags = run_summary.get('flags', {})
    domain, size = run_flags.get('domain', FLAGS.domain), run_flags.get('size', FLAGS.size)
  keys = [(r['agent'], r['task'], r['seed'], r['step']) for r in rows]
  if len(set(keys)) != len(keys):
    raise GridError('--merge: the runs share (agent, task, seed, step) rows')
  os.makedirs(workdir, exist_ok=True)
  write_outputs(workdir, agents, rows, train_rows, summary, domain, size)
  print(table_markdown(rows, agents, domain, size))
  return rows


def evaluate_saved(params_dirs, workdir):
  """Evaluate every params_*.npz of --save_params runs into workdir (no training)."""
  import glob  # pylint: disable=g-import-not-at-top
  from lps_jax import multitask  # pylint: disable=g-import-not-at-top
  from lps_jax.envs import eval_pool  # pylint: disable=g-import-not-at-top
  if not workdir:
    raise GridError('--workdir is required')
  paths = [path for params_dir in params_dirs
           for path in sorted(glob.glob(os.path.join(params_dir, 'params_*.npz')))]
  if not paths:
    raise GridError(f"--evaluate_saved: no params_*.npz in {','.join(params_dirs)}")
  wall_start = time.perf_counter()
  log = make_log()
  saved = [multitask.load_params(path) for path in paths]
  metas = [meta for _, meta in saved]
  summary = {'evaluated_from': list(params_dirs), 'eval_episodes': FLAGS.eval_episodes,
             'agents': []}
  os.makedirs(workdir, exist_ok=True)
  results = Results(workdir, summary, list(dict.fromkeys(m['agent'] for m in metas)),
                    metas[0]['domain'], metas[0]['size'])
  for params_dir in params_dirs:   # the training runs' own summaries and losses
    saved_summary = os.path.join(params_dir, 'summary.json')
    if os.path.exists(saved_summary):
      with open(saved_summary) as f:
        summary['agents'] += json.load(f).get('agents', [])
    saved_train = os.path.join(params_dir, 'train.csv')
    if os.path.exists(saved_train):
      results.train_rows += read_csv(saved_train)
  members = sum(len(m['tasks']) * len(m['seeds']) for m in metas)
  pool = eval_pool.EvalPool(FLAGS.eval_workers)
  try:
    for host, meta in saved:
      for t, task in enumerate(meta['tasks']):
        config = run_config(meta['agent'], task, meta['size'], meta['domain'],
                            meta.get('set', []))
        for s, seed in enumerate(meta['seeds']):
          submit_member(pool, results, config.agent, meta['obs_dim'], meta['action_dim'],
                        multitask.member_params(host, t, s), config.task,
                        max(1, FLAGS.eval_workers // members),
                        (meta['agent'], task, seed, meta['step']))
    log(f'{len(results.pending)} evaluation jobs from {len(paths)} files')
    results.drain(log)
  finally:
    pool.terminate()
    summary['wall_seconds'] = time.perf_counter() - wall_start
    rows = results.write()
  print(table_markdown(rows, results.agents, results.domain, results.size))


def main(argv):
  from lps_jax import preemption  # pylint: disable=g-import-not-at-top
  preemption.install()   # a SIGTERM while starting up exits 75 at once; in training: checkpoint
  preemption.inject_fault('start')
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.WARNING)   # no INFO noise (orbax, jax)
  del argv   # cli.run refuses positional arguments
  import warnings  # pylint: disable=g-import-not-at-top
  warnings.simplefilter('ignore')
  from lps_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top
  from lps_jax.data import generate  # pylint: disable=g-import-not-at-top
  from lps_jax import checkpoint  # pylint: disable=g-import-not-at-top
  try:
    if FLAGS.merge:
      merge_runs(FLAGS.merge, FLAGS.workdir)
    elif FLAGS.evaluate_saved:
      evaluate_saved(FLAGS.evaluate_saved, FLAGS.workdir)
    else:
      tasks, seeds, eval_at = parse_flags()
      with GridState(tasks, seeds) as state:     # <workdir>.lock, grid.json; --resume
        run(tasks, seeds, eval_at, state)
  except (GridError, dataset_lib.DatasetError, generate.GenerateError,
          checkpoint.CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except preemption.Preempted as e:
    preemption.exit_preempted(e)


if __name__ == '__main__':
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main, FLAGS)
