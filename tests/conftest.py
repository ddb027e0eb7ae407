"""Shared fixtures (tiny LPS configs and datasets) and the order the suite's modules start in."""
import os
import signal
import subprocess
import sys
import tempfile

# Tests compile at XLA's lowest backend optimisation level, with XLA's older CPU emitters
# (`--xla_cpu_use_fusion_emitters=false`). Their programs are tiny and run for milliseconds, so
# compiling them dominates the suite: the six agents' 2-step updates compile in 15-17 s by
# default at level 0 and in 7.7-8.3 s with the older emitters (measured; a tiny FQL update:
# 5.2 s -> 2.4 s at level 0 alone). Programs that train for minutes (the learning gates)
# compile with FULL_OPTIMIZATION, XLA's defaults: the older emitters at level 3 run the toy
# gates' update at about half the speed. Set before jax starts a backend; subprocesses inherit
# it. A jax whose XLA does not know the emitter flag (XLA aborts on unknown flags) keeps level 0
# alone.
EMITTER_FLAG = '--xla_cpu_use_fusion_emitters=false'


def _xla_knows(flag: str) -> bool:
  """Whether this jax's XLA accepts `flag` in XLA_FLAGS (a probe process; ~0.7 s)."""
  env = {**os.environ, 'XLA_FLAGS': flag, 'JAX_PLATFORMS': 'cpu'}
  probe = subprocess.run([sys.executable, '-c', 'import jax; jax.jit(lambda x: x + 1)(1.0)'],
                         env=env, capture_output=True, timeout=120, check=False)
  return probe.returncode == 0


if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  _flags = ['--xla_backend_optimization_level=0'] + ([EMITTER_FLAG] if _xla_knows(EMITTER_FLAG)
                                                     else [])
  os.environ['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', '')] + _flags).strip()
FULL_OPTIMIZATION = {'xla_backend_optimization_level': 3}    # XLA's defaults
if EMITTER_FLAG in os.environ['XLA_FLAGS']:
  FULL_OPTIMIZATION['xla_cpu_use_fusion_emitters'] = True

import numpy as np  # pylint: disable=g-import-not-at-top,g-bad-import-order
import pytest  # pylint: disable=g-import-not-at-top

from lps_jax.agents import lps  # pylint: disable=g-import-not-at-top
from lps_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top


# The longest modules, longest first. Under `-n 2 --dist loadfile` a module runs whole on one
# worker, so a long module that starts last leaves the other core idle at the end; started
# first, the other worker works through the short modules meanwhile.
LONGEST_MODULES = ('test_toy_gates.py', 'test_bench.py', 'test_parallel.py',
                   'test_ogbench_grid.py', 'test_sweep_resume.py', 'test_rundir_errors.py',
                   'test_multitask.py',
                   'test_checkpoint.py', 'test_launch.py', 'test_multihost.py')


def pytest_configure(config):
  """Keep the module order below (pytest-xdist would otherwise order modules by test count)."""
  if hasattr(config.option, 'loadscopereorder'):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  """Items of LONGEST_MODULES first, in that order; the rest keep their collected order."""
  def rank(item):
    name = os.path.basename(str(item.fspath))
    return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)
  items.sort(key=rank)      # stable: the order inside a module is kept


def tiny_lps_config(horizon: int = 1, batch_size: int = 16):
  config = lps.get_config()
  config.flow_hidden_dims = config.critic_hidden_dims = (16, 16)
  config.actor_hidden_dims = (16,)
  config.horizon, config.batch_size = horizon, batch_size
  return config


def random_transitions(num_episodes=6, episode_length=10, obs_dim=3, action_dim=2, seed=0):
  rng = np.random.default_rng(seed)
  n = num_episodes * episode_length
  terminals = np.zeros(n, np.float32)
  terminals[episode_length - 1::episode_length] = 1.0
  obs = rng.standard_normal((n, obs_dim)).astype(np.float32)
  return {
      'observations': obs,
      'next_observations': np.roll(obs, -1, axis=0),
      'actions': rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
      'rewards': rng.standard_normal(n).astype(np.float32),
      'masks': (rng.uniform(size=n) > 0.1).astype(np.float32),
      'terminals': terminals,
  }


def cli_env(**extra):
  """Env for CLI subprocess tests: CPU, a persistent compile cache they share, no fault injection."""
  env = dict(os.environ)
  env.pop('LPS_JAX_FAULT_AT_STEP', None)
  env.update(JAX_PLATFORMS='cpu',
             JAX_COMPILATION_CACHE_DIR=os.path.join(tempfile.gettempdir(), 'lps_jax_test_jit_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')
  if 'XLA_FLAGS' in extra:     # added to the inherited flags (the optimisation level above)
    extra = {**extra, 'XLA_FLAGS': f"{env.get('XLA_FLAGS', '')} {extra['XLA_FLAGS']}".strip()}
  env.update(extra)
  return env


def run_at_once(commands, timeout: float):
  """Start every command at once, each `python ARGV` in a session of its own, then collect.

  commands {key: (argv, cwd, env)} -> {key: (returncode, stderr)}. A process still running after
  `timeout` s is killed with its children and reads (None, 'still running after ... s').
  """
  procs = {key: subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
           for key, (argv, cwd, env) in commands.items()}
  results = {}
  try:
    for key, proc in procs.items():
      try:
        _, err = proc.communicate(timeout=timeout)
        results[key] = (proc.returncode, err)
      except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        results[key] = (None, f'still running after {timeout} s')
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
  return results


@pytest.fixture
def transitions():
  return random_transitions()


@pytest.fixture
def tiny_config():
  return tiny_lps_config()
