"""Shared fixtures: tiny LPS configs and datasets."""
import os
import tempfile

import numpy as np
import pytest

from lps_jax.agents import lps
from lps_jax.data import dataset as dataset_lib


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
  env.update(extra)
  return env


@pytest.fixture
def transitions():
  return random_transitions()


@pytest.fixture
def tiny_config():
  return tiny_lps_config()
