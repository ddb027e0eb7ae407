"""Train an agent: `python -m lps_jax.main --config=experiments/configs/lps.py --workdir=runs/x`.

Config overrides: `--config.agent.lr=1e-4`, `--config.num_steps=2000`; variants:
`--config=experiments/configs/lps.py:ogbench_small`.
"""
import json
import os
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags
import tqdm

from lps_jax import agents, config_lib, engine, metrics_log, tasks
from lps_jax.data import dataset as dataset_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'experiments/configs/lps.py', 'Run config file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory (metrics, config, plots, checkpoints).')
flags.DEFINE_integer('seed', 0, 'Seed for parameters, sampling and evaluation.')
flags.DEFINE_integer('num_steps', None, 'Override config.num_steps.')
flags.DEFINE_integer('log_interval', None, 'Override config.log_interval.')
flags.DEFINE_integer('eval_interval', None, 'Override config.eval_interval.')
flags.DEFINE_bool('progress', True, 'Show a progress bar.')


class UsageError(Exception):
  """Bad input from the command line: reported as one line, exit code 2."""


def build(config, seed: int):
  """(task, agent, device dataset) for a validated config."""
  task = tasks.make_task(config)
  agent_cls = agents.get_agent_class(config.agent.agent_name)
  chunk_dim = config.agent.horizon * task.action_dim
  agent = agent_cls.create(seed, task.observation_dim, chunk_dim, config.agent)
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
  policy_fn = make_policy_fn(agent, seed)
  metrics = task.evaluate(policy_fn, config.eval_episodes, seed)
  logger.write('eval', step, metrics)
  if task.plot is not None:
    task.plot(policy_fn, os.path.join(workdir, f'actions_{step:08d}.png'))
  return metrics


def train_and_evaluate(config, workdir: str, seed: int = 0, progress: bool = False):
  """The training loop. Returns (agent, last train metrics, last eval metrics)."""
  config_lib.validate(config)
  task, agent, data = build(config, seed)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump({'config': config.to_dict(), 'seed': seed}, f, indent=2, default=str)
  logger = metrics_log.MetricsLogger(workdir)
  train_fn = engine.make_train_fn(config.steps_per_call)

  step, train_metrics, eval_metrics = 0, {}, {}
  bar = tqdm.tqdm(total=config.num_steps, disable=not progress, unit='step', dynamic_ncols=True)
  window_start, window_steps = time.perf_counter(), 0
  while step < config.num_steps:
    agent, train_metrics = train_fn(agent, data)
    step += config.steps_per_call
    window_steps += config.steps_per_call
    bar.update(config.steps_per_call)
    if step % config.log_interval == 0 or step >= config.num_steps:
      train_metrics = metrics_log.to_floats(train_metrics)
      elapsed = time.perf_counter() - window_start
      train_metrics['steps_per_second'] = window_steps / max(elapsed, 1e-9)
      window_start, window_steps = time.perf_counter(), 0
      logger.write('train', step, train_metrics)
      bar.set_postfix({'sps': f"{train_metrics['steps_per_second']:.0f}",
                       'critic': f"{train_metrics['critic/loss']:.3g}"})
    if step % config.eval_interval == 0 or step >= config.num_steps:
      eval_metrics = evaluate(task, agent, config, seed, step, logger, workdir)
      bar.write(f'step {step}: ' + ', '.join(f'{k}={v:.3f}' for k, v in eval_metrics.items()))
  bar.close()
  logger.close()
  return agent, train_metrics, eval_metrics


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = FLAGS.config
  with config.unlocked():
    for name in ('num_steps', 'log_interval', 'eval_interval'):
      if getattr(FLAGS, name) is not None:
        config[name] = getattr(FLAGS, name)
  try:
    if not FLAGS.workdir:
      raise UsageError('--workdir is required')
    if os.path.exists(os.path.join(FLAGS.workdir, 'config.json')):
      raise UsageError(f'workdir {FLAGS.workdir} already holds a run; choose another --workdir')
    train_and_evaluate(config, FLAGS.workdir, FLAGS.seed, FLAGS.progress)
  except (UsageError, config_lib.ConfigError, dataset_lib.DatasetError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
