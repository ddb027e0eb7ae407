"""Subprocess worker for tests/test_parallel.py and tests/test_multihost.py.

Runs a tiny LPS agent on a synthetic chunked dataset twice: once with the 1-device engine
(engine.make_train_fn) and once data-parallel on a mesh of all (global) devices
(parallel.make_train_fn), and prints one JSON line comparing the two. The device count must be
forced before jax is imported, so the tests launch this file with XLA_FLAGS set.

  python tests/multihost_worker.py single_agent            # mesh 1 x all devices
  python tests/multihost_worker.py sweep                   # 2 members on mesh 2 x (n/2)
  python tests/multihost_worker.py single_agent ADDR N PID # multi-process (gloo on CPU)
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np

if len(sys.argv) > 2:                      # multi-process: initialise before any device use
  from lps_jax import parallel  # pylint: disable=g-import-not-at-top
  parallel.maybe_initialize_distributed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))

import jax  # pylint: disable=g-import-not-at-top,g-bad-import-order

from lps_jax import config_lib, engine, parallel, tasks  # pylint: disable=g-import-not-at-top
from lps_jax import vmap_sweep as sweep  # pylint: disable=g-import-not-at-top
from lps_jax.agents import lps  # pylint: disable=g-import-not-at-top
from lps_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top

OBS_DIM, ACTION_DIM, HORIZON = 4, 2, 2
STEPS_PER_CALL, CALLS = 3, 2


def make_run_config():
  """The 'test' run config (2x16 nets) with batch 32 and action chunks of 2."""
  run_config = config_lib.make_run_config(lps.get_config(), 'test')
  run_config.agent.batch_size = 32
  run_config.agent.horizon = HORIZON
  run_config.agent.lr = 1e-3
  return run_config


def make_data():
  """Random episodes of 10 steps with partial terminal masks: every batch field matters."""
  rng = np.random.default_rng(0)
  n = 200
  obs = rng.normal(size=(n + 1, OBS_DIM)).astype(np.float32)
  transitions = {
      'observations': obs[:-1], 'next_observations': obs[1:],
      'actions': rng.uniform(-1, 1, size=(n, ACTION_DIM)).astype(np.float32),
      'rewards': rng.normal(size=n).astype(np.float32),
      'masks': (rng.uniform(size=n) > 0.1).astype(np.float32),
      'terminals': (np.arange(n) % 10 == 9).astype(np.float32),
  }
  return dataset_lib.to_device(transitions, HORIZON, source='synthetic')


def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def max_abs(a):
  return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(a))


def run_single_agent(mesh, config, data):
  agent = lps.LPSAgent.create(0, OBS_DIM, ACTION_DIM * HORIZON, config)
  sharded_agent, sharded_data, train_fn = parallel.data_parallel_setup(
      agent, data, STEPS_PER_CALL, mesh)
  train_fn = train_fn.lower(sharded_agent, sharded_data).compile()
  hlo = train_fn.as_text()
  for _ in range(CALLS):
    sharded_agent, metrics = train_fn(sharded_agent, sharded_data)
  flow_kernel = jax.tree.leaves(sharded_agent.flow.params)[1]
  mesh_params = parallel.fetch(sharded_agent.params())
  mesh_loss = float(parallel.fetch(metrics)['critic/loss'])

  result = {
      'param_checksum': float(sum(np.abs(np.asarray(x, np.float64)).sum()
                                  for x in jax.tree.leaves(mesh_params))),
      'all_reduce_in_hlo': 'all-reduce' in hlo,
      'params_replicated': bool(flow_kernel.sharding.is_fully_replicated),
      'param_devices': len(flow_kernel.sharding.device_set),
  }
  if jax.process_index() != 0:       # the 1-device reference runs once, on process 0
    return result
  # The same agent with the 1-device engine (this process's first local device only).
  ref_fn = engine.make_train_fn(STEPS_PER_CALL)
  for _ in range(CALLS):
    agent, ref_metrics = ref_fn(agent, data)
  start = lps.LPSAgent.create(0, OBS_DIM, ACTION_DIM * HORIZON, config).params()
  result.update(
      max_param_diff=max_diff(mesh_params, agent.params()),
      max_param_change=max_diff(mesh_params, start),
      max_param_abs=max_abs(agent.params()),
      loss_diff=abs(mesh_loss - float(ref_metrics['critic/loss'])))
  return result


def run_sweep(mesh, run_config):
  """run_vmapped_sweep on the toy task with members split over 'sweep' vs the 1-device vmap."""
  run_config.agent.horizon = 1                       # the toy task is a bandit
  members = [{'seed': 0, 'agent.lr': 1e-3}, {'seed': 1, 'agent.lr': 3e-4, 'agent.tau': 0.05}]
  workdir = tempfile.mkdtemp()
  try:
    result = sweep.run_vmapped_sweep(run_config, members, workdir, mesh=mesh)
    logged = sorted(os.listdir(workdir))
  finally:
    shutil.rmtree(workdir)

  task = tasks.make_task(run_config)
  data = dataset_lib.to_device(task.transitions, 1)
  stacked, _ = sweep.create_stacked_agents(run_config, members, task.observation_dim,
                                           task.action_dim)
  lowered = parallel.make_train_fn(run_config.steps_per_call, mesh, stacked=True).lower(
      parallel.put_agent(stacked, mesh, stacked=True), parallel.put_dataset(data, mesh))
  ref_fn = sweep.make_vmapped_train_fn(run_config.steps_per_call)
  for _ in range(run_config.num_steps // run_config.steps_per_call):
    stacked, _ = ref_fn(stacked, data)
  sweep_size, data_size = mesh.shape['sweep'], mesh.shape['data']
  text = lowered.as_text()
  return {
      'max_param_diff': max_diff(result.agents.params(), stacked.params()),
      'max_param_abs': max_abs(stacked.params()),
      'members_differ': max_diff(jax.tree.map(lambda x: x[0], stacked.params()),
                                 jax.tree.map(lambda x: x[1], stacked.params())) > 1e-4,
      # Shardy text of the batch constraint inside the vmapped, scanned step.
      'batch_constrained_to_sweep_and_data':
          'sharding_constraint' in text and '[{"sweep"}, {"data"}' in text,
      'mesh_shape': [sweep_size, data_size],
      'logged': logged,
      'eval_keys': sorted(result.eval_metrics[1]),
  }


def main():
  mode = sys.argv[1]
  run_config, data = make_run_config(), make_data()
  sizes_error = ''
  try:
    parallel.check_sizes(parallel.make_mesh(), 12)
  except parallel.ShardingError as e:
    sizes_error = str(e)
  if mode == 'single_agent':
    result = run_single_agent(parallel.make_mesh(), run_config.agent, data)
  elif mode == 'sweep':
    result = run_sweep(parallel.make_mesh(sweep_size=2), run_config)
  else:
    raise ValueError(f'unknown mode {mode!r}')
  result.update(process=jax.process_index(), num_processes=jax.process_count(),
                devices=jax.device_count(), local_devices=jax.local_device_count(),
                sizes_error=sizes_error)
  print('RESULT ' + json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
