"""Shared fixtures (tiny LPS configs and datasets) and the order the suite's modules start in."""
import os
import tempfile

# Tests compile at XLA's lowest backend optimisation level. Their programs are tiny and run for
# milliseconds, so compiling them dominates the suite (a tiny FQL update: 5.2 s -> 2.4 s of
# compile, measured); programs that train for minutes (the learning gates) ask for the default
# level with FULL_OPTIMIZATION. Set before jax starts a backend; subprocesses inherit it.
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_backend_optimization_level=0').strip()
FULL_OPTIMIZATION = {'xla_backend_optimization_level': 3}    # XLA's default

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


@pytest.fixture
def transitions():
  return random_transitions()


@pytest.fixture
def tiny_config():
  return tiny_lps_config()
