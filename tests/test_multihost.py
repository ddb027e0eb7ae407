"""Multi-host for real on localhost: 2 processes x 2 CPU devices, gloo collectives.

Each process runs tests/multihost_worker.py with jax.distributed.initialize('127.0.0.1:PORT',
2, pid): the dataset and agent become global arrays over the 4 devices of both processes,
each batch is split over the 4 devices, and process 0 also trains the same agent on one
local device. Results must agree to float tolerance, and both processes must agree exactly.
"""
import json
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, 'tests', 'multihost_worker.py')
TIMEOUT_S = 150


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_device(tmp_path):
  address = f'127.0.0.1:{free_port()}'
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': (os.environ.get('XLA_FLAGS', '') +
                       ' --xla_force_host_platform_device_count=2').strip()}
  procs, logs = [], []
  try:
    for pid in range(2):
      log = open(tmp_path / f'process_{pid}.log', 'w+')
      logs.append(log)
      procs.append(subprocess.Popen(
          [sys.executable, WORKER, 'single_agent', address, '2', str(pid)],
          cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + TIMEOUT_S
    for proc in procs:
      proc.wait(timeout=max(deadline - time.monotonic(), 1))
  finally:
    for proc in procs:                       # never leave a worker behind on failure
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  outputs = []
  for proc, log in zip(procs, logs):
    log.seek(0)
    text = log.read()
    log.close()
    lines = [l for l in text.splitlines() if l.startswith('RESULT ')]
    assert proc.returncode == 0 and lines, text[-3000:]
    outputs.append(json.loads(lines[-1][len('RESULT '):]))

  first, second = outputs
  assert [o['process'] for o in outputs] == [0, 1]
  for out in outputs:
    assert out['num_processes'] == 2 and out['devices'] == 4 and out['local_devices'] == 2
    assert out['param_devices'] == 4 and out['params_replicated'] and out['all_reduce_in_hlo']
  assert first['param_checksum'] == second['param_checksum']     # one global state
  assert first['max_param_change'] > 1e-3
  assert first['max_param_diff'] < 1e-5 * max(1.0, first['max_param_abs']), first
  assert first['loss_diff'] < 1e-4
