"""Data-parallel sharding: an 8-device run equals the 1-device run with the same global batch.

The device count must be forced before jax is imported, so the 8-device checks run
tests/multihost_worker.py in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8.
"""
import json
import os
import subprocess
import sys

import jax
import pytest

from lps_jax import parallel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, 'tests', 'multihost_worker.py')
TOLERANCE = 1e-5          # params are O(1); observed differences are ~3e-8 (summation order)


def run_worker(mode: str, num_devices: int, timeout: float = 150.0) -> dict:
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': (os.environ.get('XLA_FLAGS', '') +
                       f' --xla_force_host_platform_device_count={num_devices}').strip()}
  result = subprocess.run([sys.executable, WORKER, mode], cwd=REPO, env=env, timeout=timeout,
                          capture_output=True, text=True)
  lines = [l for l in result.stdout.splitlines() if l.startswith('RESULT ')]
  assert result.returncode == 0 and lines, result.stdout[-2000:] + result.stderr[-3000:]
  return json.loads(lines[-1][len('RESULT '):])


def test_eight_device_data_parallel_matches_one_device():
  out = run_worker('single_agent', 8)
  assert out['devices'] == 8 and out['param_devices'] == 8 and out['params_replicated']
  assert out['all_reduce_in_hlo']                   # gradients really are reduced over 'data'
  assert out['max_param_change'] > 1e-3             # the agent trained
  assert out['max_param_diff'] < TOLERANCE * max(1.0, out['max_param_abs']), out
  assert out['loss_diff'] < 1e-4
  assert out['sizes_error'].startswith('batch_size=12 is not divisible by the data axis size 8')


def test_sweep_split_over_mesh_matches_vmapped_one_device():
  # Mesh 2 (sweep) x 4 (data): each member on its own 4 devices, its batch split 4 ways.
  out = run_worker('sweep', 8)
  assert out['mesh_shape'] == [2, 4]
  assert out['batch_constrained_to_sweep_and_data']
  assert out['members_differ']
  assert out['max_param_diff'] < TOLERANCE * max(1.0, out['max_param_abs']), out
  assert out['logged'] == ['checkpoints', 'member_000', 'member_001', 'sweep.json']
  assert 'reward' in out['eval_keys']


def test_mesh_and_size_checks_in_process():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ('sweep', 'data')
  assert mesh.devices.size == jax.device_count()
  parallel.check_sizes(mesh, batch_size=16, num_members=3)
  with pytest.raises(parallel.ShardingError, match='sweep axis size 3 must divide'):
    parallel.make_mesh(sweep_size=3, devices=jax.devices() * 2)


def test_distributed_initialize_is_a_no_op_without_settings(monkeypatch):
  for var in ('LPS_COORDINATOR_ADDRESS', 'LPS_NUM_PROCESSES', 'LPS_PROCESS_ID'):
    monkeypatch.delenv(var, raising=False)
  assert parallel.maybe_initialize_distributed() is False
  assert parallel.distributed_settings() == (None, None, None)
  monkeypatch.setenv('LPS_COORDINATOR_ADDRESS', '10.0.0.1:1234')
  monkeypatch.setenv('LPS_NUM_PROCESSES', '4')
  monkeypatch.setenv('LPS_PROCESS_ID', '2')
  assert parallel.distributed_settings() == ('10.0.0.1:1234', 4, 2)
  assert parallel.distributed_settings(process_id=3) == ('10.0.0.1:1234', 4, 3)
  with pytest.raises(parallel.ShardingError, match=r'process_id=5 must be in \[0, num_processes=4\)'):
    parallel.maybe_initialize_distributed(process_id=5)
  monkeypatch.delenv('LPS_COORDINATOR_ADDRESS')
  with pytest.raises(parallel.ShardingError, match='without a coordinator address'):
    parallel.maybe_initialize_distributed()


def test_data_parallel_setup_keeps_the_engine_path_on_one_device():
  if jax.device_count() != 1:
    pytest.skip('needs a single-device process')
  agent, data = object(), object()
  same_agent, same_data, train_fn = parallel.data_parallel_setup(agent, data, 3)
  assert same_agent is agent and same_data is data and callable(train_fn)
