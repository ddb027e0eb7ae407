"""Train an agent: `python -m lps_jax.main --config=experiments/configs/lps.py --workdir=runs/x`.

Config overrides: `--config.agent.lr=1e-4`, `--config.num_steps=2000`; variants:
`--config=experiments/configs/lps.py:ogbench_small`.

Run directories (lps_jax/rundir.py): a workdir that holds a run is only reused with
  --resume     continue from its last checkpoint; bit-identical to an uninterrupted run. The
               config and seed must be the same, except rundir.RESUMABLE_KEYS (num_steps, the
               log/eval/checkpoint intervals, eval_episodes). Also fine on an empty or new
               workdir (starts from step 0), so a preemptible job can always pass it.
  --overwrite  move the old run to <workdir>.old-<timestamp> and start afresh.

Exit codes:
  0   done (workdir/final.json written)
  2   bad input (flags, config, task, dataset, workdir): one line on stderr; nothing written
  3   a loss became NaN/Inf: the message names the last good checkpoint
  75  preempted (SIGTERM): a checkpoint was saved at the next step boundary, or, while the run
      was still starting up (building, restoring, compiling), it exits at once: nothing new to
      save (the message says which); rerun with --resume (lps_jax/preemption.py)

One writer per workdir: the run holds <workdir>.lock (pid + host) from before it writes
anything until it exits; a second run on the same workdir (--resume and --overwrite included)
is refused with exit 2 while the first is alive (rundir.RunLock).
"""
import os
import sys

from lps_jax import preemption

if __name__ == '__main__':
  preemption.install()    # before the heavy imports: a SIGTERM while starting up exits 75 at once

# pylint: disable=g-import-not-at-top,g-bad-import-order,wrong-import-position
import time

from absl import app, flags
from absl import logging as absl_logging
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jax.experimental import multihost_utils

from lps_jax import agents, checkpoint, cli, config_lib, engine, metrics_log, parallel, rundir, tasks
from lps_jax.data import dataset as dataset_lib
from lps_jax.data import ogbench_data
# pylint: enable=g-import-not-at-top,g-bad-import-order,wrong-import-position

EXIT_USAGE = cli.EXIT_USAGE
EXIT_DIVERGED = 3
EXIT_PREEMPTED = preemption.EXIT_PREEMPTED   # 75, sysexits EX_TEMPFAIL: "try again later"
FAULT_ENV = preemption.FAULT_ENV   # tests only: 'STEP:SIG' (KILL, TERM, STOP) or 'start:SIG'
DEFAULT_CONFIG = 'experiments/configs/lps.py'

FLAGS = flags.FLAGS
cli.define_config_file('config', DEFAULT_CONFIG, 'Run config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory (metrics, config, plots, checkpoints).')
flags.DEFINE_integer('seed', 0, 'Seed for parameters, sampling and evaluation.', lower_bound=0,
                     upper_bound=cli.MAX_SEED)
flags.DEFINE_integer('num_steps', None, 'Override config.num_steps.', lower_bound=1)
flags.DEFINE_integer('log_interval', None, 'Override config.log_interval.', lower_bound=1)
flags.DEFINE_integer('eval_interval', None, 'Override config.eval_interval.', lower_bound=1)
flags.DEFINE_bool('progress', True, 'Show a progress bar.')
flags.DEFINE_bool('resume', False, 'Continue the run in --workdir from its last checkpoint.')
flags.DEFINE_bool('overwrite', False, 'Move an existing run in --workdir aside and start afresh.')
flags.DEFINE_bool('tensorboard', True, 'Write TensorBoard event files to workdir/tensorboard.')
flags.DEFINE_bool('wandb', False, 'Log to Weights & Biases (needs `pip install wandb`).')
flags.DEFINE_string('wandb_project', 'lps_jax', 'Weights & Biases project.')

RUN_FLAGS = ('workdir', 'seed', 'num_steps', 'log_interval', 'eval_interval', 'progress', 'resume',
             'overwrite', 'tensorboard', 'wandb', 'wandb_project')


class UsageError(Exception):
  """Bad input from the command line: reported as one line, exit code 2."""


class Diverged(RuntimeError):
  """A NaN/Inf loss; training stopped without checkpointing the bad state."""


Preempted = preemption.Preempted      # SIGTERM received; a checkpoint of the step was saved


USAGE_ERRORS = (UsageError, config_lib.ConfigError, rundir.RunDirError, dataset_lib.DatasetError,
                ogbench_data.DatasetError, metrics_log.MissingDependencyError,
                checkpoint.CheckpointError, parallel.ShardingError)


def build(config, seed: int):
  """(task, agent, device dataset) for a validated config."""
  task = tasks.make_task(config)
  agent_cls = agents.get_agent_class(config.agent.agent_name)
  chunk_dim = config.agent.horizon * task.action_dim
  agent = agents.create_agent(agent_cls, seed, task.observation_dim, chunk_dim, config.agent)
  data = dataset_lib.to_device(task.transitions, config.agent.horizon, source=task.name)
  return task, agent, data


def make_policy_fn(agent, seed: int):
  """Numpy policy for evaluation; stochastic agents get a fresh key per call."""
  sample = jax.jit(lambda a, obs, key: a.sample_actions(obs, key))
  key = [jax.random.PRNGKey(seed + 1_000_003)]

  def policy_fn(observations):
    key[0], sub = jax.random.split(key[0])
    return np.asarray(sample(agent, jnp.asarray(observations, jnp.float32), sub))

  return policy_fn


def evaluate(task, agent, config, seed, step, logger, workdir):
  agent = parallel.local_replica(agent)
  policy_fn = make_policy_fn(agent, seed)
  metrics = tasks.run_evaluation(task, agent, policy_fn, config.eval_episodes, seed)
  logger.write('eval', step, metrics)
  if task.plot is not None:
    task.plot(policy_fn, os.path.join(workdir, f'actions_{step:08d}.png'))
  return metrics


StopSignal = preemption.StopSignal
_inject_fault = preemption.inject_fault


def _lock_workdir(workdir: str, main_process: bool) -> rundir.RunLock:
  """The main process takes the workdir lock; in a multi-host run the others learn whether it
  got it (so that a refused main process does not leave them waiting at a barrier)."""
  error, lock = None, None
  try:
    lock = rundir.RunLock.acquire(workdir, enabled=main_process)
  except rundir.RunDirError as e:
    error = e
  if jax.process_count() > 1:
    ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if error is None and not int(ok):
      error = rundir.RunDirError(f'the main process could not take the lock of workdir '
                                 f'{workdir} (see its error)')
  if error is not None:
    raise error
  return lock


def train_and_evaluate(config, workdir: str, seed: int = 0, progress: bool = False, *,
                       resume: bool = False, overwrite: bool = False, tensorboard: bool = True,
                       wandb: bool = False, wandb_project: str = 'lps_jax', flags_record=None):
  """The training loop. Returns (agent, last train metrics, last eval metrics).

  Everything is validated before the workdir is touched. Raises UsageError / ConfigError /
  RunDirError / DatasetError on bad input, Diverged on a NaN/Inf loss, Preempted on SIGTERM
  (after checkpointing).
  """
  start_time = time.time()
  config_lib.validate(config)
  tasks.check_config(config)
  if cli.seed_error(seed):
    raise UsageError(cli.seed_error(seed))
  if resume and overwrite:
    raise rundir.RunDirError('--resume and --overwrite are mutually exclusive')
  main_process = parallel.is_main_process()
  lock = _lock_workdir(workdir, main_process)   # the first write: <workdir>.lock, beside it
  preemption.add_cleanup(lock.release)           # a SIGTERM while starting up releases it too
  try:
    return _locked_train_and_evaluate(
        config, workdir, seed, progress, resume=resume, overwrite=overwrite,
        tensorboard=tensorboard, wandb=wandb, wandb_project=wandb_project,
        flags_record=flags_record, main_process=main_process, start_time=start_time)
  finally:
    preemption.remove_cleanup(lock.release)
    lock.release()


def _locked_train_and_evaluate(config, workdir, seed, progress, *, resume, overwrite, tensorboard,
                               wandb, wandb_project, flags_record, main_process, start_time):
  run = rundir.check(workdir, config, seed, resume=resume, overwrite=overwrite)
  checkpoint_dir = os.path.join(run.path, checkpoint.CHECKPOINT_DIR)
  if run.resuming:
    rundir.refuse_logs_without_checkpoints(
        run.path, checkpoint_dir, 'pass --overwrite to move this run aside and start afresh')
  on_disk = checkpoint.latest_step_on_disk(checkpoint_dir) if run.resuming else None
  if on_disk is not None and on_disk > config.num_steps:
    raise UsageError(f'the last checkpoint (step {on_disk}) is beyond config.num_steps='
                     f'{config.num_steps}; pass --num_steps >= {on_disk}')
  if wandb:
    metrics_log.check_wandb()
  task, agent, data = build(config, seed)
  _inject_fault('built')
  if preemption.seen() and not run.resuming:
    raise Preempted('SIGTERM before the run started: nothing to save (nothing was written); '
                    'rerun the same command')
  # ---- nothing above writes to disk (but the lock beside the workdir) ----
  if jax.process_count() > 1:       # every host checked the workdir before any host writes
    multihost_utils.sync_global_devices('rundir checked')
  run_id = rundir.run_id_of(run)
  if main_process:
    rundir.prepare(run, config, seed, flags_record, run_id=run_id)
  preemption.set_startup_message(
      f'SIGTERM while starting up {run.path}: nothing new to save'
      + (' (its checkpoints are as they were)' if run.resuming else '')
      + '; rerun the same command with --resume to continue')
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('rundir prepared')
  workdir = run.path
  ckpt = checkpoint.Checkpointer(checkpoint_dir, max_to_keep=config.checkpoint_max_to_keep)
  logger = None
  with StopSignal() as stop:          # from here on SIGTERM means: checkpoint, then exit 75
    try:
      step = 0
      if run.resuming:
        agent, restored = ckpt.restore(agent)
        step = restored or 0
      wandb_run = (metrics_log.init_wandb(workdir, config.to_dict(), wandb_project)
                   if wandb and main_process else None)
      logger = (metrics_log.MetricsLogger(workdir, resume_step=step if run.resuming else None,
                                          tensorboard=tensorboard, wandb_run=wandb_run,
                                          run_id=run_id)
                if main_process else metrics_log.NullLogger())
      # The fused update: 1 device -> engine.make_train_fn; more -> data-parallel on a mesh.
      agent, data, train_fn = parallel.data_parallel_setup(agent, data, config.steps_per_call)
      if run.resuming:
        print(f'resuming {workdir} from step {step}'
              + (f' (moved the {logger.dropped_rows} metric rows logged after it to '
                 f'{logger.set_aside})' if logger.dropped_rows else ''), file=sys.stderr)
      agent, train_metrics, eval_metrics = _train_loop(
          config, seed, progress and main_process, task, agent, data, train_fn, ckpt, logger,
          step, workdir, stop, main_process)
      ckpt.wait()
      if main_process:
        rundir.write_json(os.path.join(workdir, rundir.FINAL_FILE), {
            'step': config.num_steps, 'train': train_metrics, 'eval': eval_metrics,
            'checkpoint': ckpt.path(ckpt.latest_step()), 'seconds': time.time() - start_time})
      return agent, train_metrics, eval_metrics
    finally:
      ckpt.close()
      if logger is not None:
        logger.close()


def progress_postfix(metrics) -> dict:
  """The progress bar's fields: steps/s and the losses this agent actually reports
  ('critic/loss' -> critic, 'critic/q_loss' -> critic/q_loss; the total 'loss' only when the
  agent has no named parts)."""
  parts = sorted(k for k in metrics if k != 'loss' and k.split('/')[-1].endswith('loss'))
  names = parts or [k for k in ('loss',) if k in metrics]
  postfix = {'sps': f"{metrics['steps_per_second']:.0f}"}
  for name in names:
    postfix[name[:-len('/loss')] if name.endswith('/loss') else name] = f'{metrics[name]:.3g}'
  return postfix


def _last_step(workdir, stream) -> int:
  rows = metrics_log.read_rows(workdir, stream)
  return int(rows[-1]['step']) if rows else 0


def _train_loop(config, seed, progress, task, agent, data, train_fn, ckpt, logger, step, workdir,
                stop, main_process=True):
  """Calls of steps_per_call updates (the last may be shorter). Log, eval and checkpoint
  intervals fire at the first call boundary at or after they fall due, and at the end."""
  train_fns = {config.steps_per_call: train_fn}
  due = lambda previous, step, interval: (engine.falls_due(previous, step, interval)
                                          or step >= config.num_steps)
  can_evaluate = task.has_evaluation and main_process
  train_metrics = logger.last_row('train')
  eval_metrics = logger.last_row('eval')
  if (step and can_evaluate and not logger.has_row('eval', step)
      and due(_last_step(workdir, 'eval'), step, config.eval_interval)):
    eval_metrics = evaluate(task, agent, config, seed, step, logger, workdir)  # killed mid-eval
  bar = tqdm.tqdm(total=config.num_steps, initial=step, disable=not progress, unit='step',
                  dynamic_ncols=True)
  window_start, window_steps = time.perf_counter(), 0
  if stop.requested:             # SIGTERM while starting up: nothing new to save
    last = ckpt.latest_step()
    raise Preempted(f'SIGTERM before training resumed (step {step}): nothing new to save; '
                    + (f'last checkpoint {ckpt.path(last)}; ' if last is not None
                       else 'no checkpoint yet; ')
                    + 'rerun the same command with --resume to continue')
  for k in engine.call_lengths(step, config.num_steps, config.steps_per_call):
    if k not in train_fns:              # the shorter last call: compiled once
      train_fns[k] = parallel.make_agent_train_fn(k)
    agent, device_metrics = train_fns[k](agent, data)
    preemption.end_startup()     # compiled and running: from now on SIGTERM saves at a boundary
    previous, step = step, step + k
    window_steps += k
    _inject_fault(step)
    metrics = metrics_log.to_floats(jax.device_get(device_metrics))
    bad = metrics_log.first_nonfinite(metrics)
    if bad is not None:
      ckpt.wait()
      last = ckpt.latest_step()
      where = (f'last good checkpoint: {ckpt.path(last)} (step {last})' if last is not None
               else 'no checkpoint was saved yet')
      raise Diverged(f'{bad[0]} = {bad[1]} in the {k} updates ending at step {step}; training '
                     f'stopped; {where}')
    bar.update(k)
    if due(previous, step, config.log_interval):
      elapsed = time.perf_counter() - window_start
      metrics['steps_per_second'] = window_steps / max(elapsed, 1e-9)
      window_start, window_steps = time.perf_counter(), 0
      train_metrics = metrics
      logger.write('train', step, metrics)
      bar.set_postfix(progress_postfix(metrics))
    if due(previous, step, config.checkpoint_interval) or stop.requested:
      ckpt.save(step, agent)
    if stop.requested:
      ckpt.wait()
      logger.flush()
      raise Preempted(f'SIGTERM at step {step}: saved checkpoint {ckpt.path(step)}; rerun the '
                      f'same command with --resume to continue')
    if can_evaluate and due(previous, step, config.eval_interval):
      eval_metrics = evaluate(task, agent, config, seed, step, logger, workdir)
      bar.write(f'step {step}: '
                + ', '.join(f'{name}={v:.3f}' for name, v in eval_metrics.items()))
  ckpt.save(step, agent)       # no-op unless the loop did not run (already complete)
  bar.close()
  return agent, train_metrics, eval_metrics


# ---------------------------------------------------------------------------------- CLI
one_line, fail = cli.one_line, cli.fail


def parse_flags(argv):
  """absl flag parsing with every error (incl. config_flags' own) as one line, exit 2."""
  return cli.parse_flags(argv, FLAGS, default_config=DEFAULT_CONFIG)


def main(argv):
  absl_logging.set_verbosity(absl_logging.WARNING)   # no INFO noise (e.g. jax's TPU probe)
  _inject_fault('start')
  if preemption.seen():
    preemption.end_startup()      # (the watchdog may have exited already)
    fail('SIGTERM while starting up: nothing to save (nothing was written); rerun the same '
         'command', EXIT_PREEMPTED, prefix='preempted')
  if len(argv) > 1:
    fail(f'unexpected arguments: {argv[1:]}')
  config = FLAGS.config
  try:
    config.keys()                        # config_flags defers config-file errors to first use
  except Exception as e:  # pylint: disable=broad-except
    last = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    fail(f'cannot load --config={FLAGS["config"].config_filename}: {last[-1]}')
  try:
    parallel.maybe_initialize_distributed()   # multi-host flags / LPS_* env; no-op otherwise
    with config.unlocked():
      for name in ('num_steps', 'log_interval', 'eval_interval'):
        if getattr(FLAGS, name) is not None:
          config[name] = getattr(FLAGS, name)
    flags_record = {name: getattr(FLAGS, name) for name in RUN_FLAGS}
    flags_record['config_file'] = FLAGS['config'].config_filename
    train_and_evaluate(config, FLAGS.workdir, FLAGS.seed, FLAGS.progress, resume=FLAGS.resume,
                       overwrite=FLAGS.overwrite, tensorboard=FLAGS.tensorboard,
                       wandb=FLAGS.wandb, wandb_project=FLAGS.wandb_project,
                       flags_record=flags_record)
  except USAGE_ERRORS as e:
    fail(e, EXIT_USAGE)
  except Diverged as e:
    fail(e, EXIT_DIVERGED)
  except Preempted as e:
    preemption.end_startup()      # one line: never both this and a start-up exit
    fail(e, EXIT_PREEMPTED, prefix='preempted')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
