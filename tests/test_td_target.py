"""The TD target of every agent: y = sum_k gamma^k r_k + gamma^h * mask * agg_k Q'_k(s_{t+h}, a').

Q' must be the *target* network (the Polyak copy), and a' must come from the target actor where
the agent has one (ReBRAC). At initialisation the target is a copy of the online network, so
these tests first train a few fused steps until the two differ.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import random_transitions
from lps_jax import agents, config_lib, critic as critic_lib, engine, train_state
from lps_jax.agents import dsrl, fql, lawr, lps, qcmfql, rebrac
from lps_jax.data import dataset as dataset_lib

MODULES = {'lps': lps, 'fql': fql, 'qcmfql': qcmfql, 'rebrac': rebrac, 'dsrl': dsrl,
           'lawr': lawr}
# The train state whose Polyak target bootstraps y, and every other state with a target
# network that the TD target must read through its target params.
TARGET_STATES = {'lps': ('critic',), 'fql': ('critic',), 'qcmfql': ('critic',),
                 'rebrac': ('critic', 'actor'), 'dsrl': ('critic',), 'lawr': ('value',)}
HORIZON = 2
TRAIN_STEPS = 40
KEY = jax.random.PRNGKey(7)


def tiny_config(name):
  config = config_lib.make_run_config(MODULES[name].get_config(), 'test').agent
  config.flow_hidden_dims = config.critic_hidden_dims = config.actor_hidden_dims = (16,)
  config.horizon, config.batch_size, config.lr = HORIZON, 32, 3e-3
  if name == 'lawr':
    config.flow_steps = 10                      # phase 2 (the critic's TD) from step 10
    config.v_min, config.v_max, config.num_bins = -5.0, 5.0, 21
  return config


@functools.lru_cache(maxsize=None)
def trained(name):
  """(agent after TRAIN_STEPS fused updates, a fixed batch); targets now lag the online nets."""
  config = tiny_config(name)
  transitions = random_transitions()
  data = dataset_lib.to_device(transitions, HORIZON)
  agent = agents.get_agent_class(name).create(0, 3, HORIZON * 2, config)
  agent, _ = engine.make_train_fn(TRAIN_STEPS)(agent, data)
  batch = dataset_lib.sample_batch(data, jax.random.PRNGKey(1), 64, HORIZON, config.discount)
  return agent, batch


@jax.jit
def _target_mean(agent, batch):
  return agent.loss(agent.params(), batch, KEY)[1]['critic/target_mean']


def target_mean(agent, batch):
  """mean_B y as the agent's own loss reports it."""
  return float(_target_mean(agent, batch))


def perturbed(params, seed=3, scale=0.5):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape, p.dtype)
                                   for p, k in zip(leaves, keys)])


def with_state(agent, name, **fields):
  return agent.replace(**{name: getattr(agent, name).replace(**fields)})


@pytest.mark.parametrize('name', sorted(MODULES))
def test_td_target_reads_the_target_networks_not_the_online_ones(name):
  agent, batch = trained(name)
  y = target_mean(agent, batch)
  for state_name in TARGET_STATES[name]:
    state = getattr(agent, state_name)
    # The targets have lagged behind after training (else this test could not tell them apart).
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(state.params), jax.tree.leaves(state.target_params))), state_name
    # Moving the online network (the state's params and so agent.params()) leaves y unchanged...
    moved = with_state(agent, state_name, params=perturbed(state.params))
    np.testing.assert_allclose(target_mean(moved, batch), y, rtol=1e-6, atol=1e-6,
                               err_msg=f'{name}: y depends on the online {state_name}')
    # ... while syncing the target to the online network changes it.
    synced = with_state(agent, state_name, target_params=state.params)
    assert abs(target_mean(synced, batch) - y) > 1e-4 * max(1.0, abs(y)), (
        name, state_name, y, target_mean(synced, batch))


def _reference_y(agent, batch, next_q):
  cfg = agent.config
  return (batch['rewards'] + cfg.discount ** cfg.horizon * batch['masks']
          * critic_lib.aggregate(next_q, cfg.q_agg)).mean()


@pytest.mark.parametrize('name', ['lps', 'dsrl', 'lawr'])
def test_td_target_equals_the_formula_with_the_target_critic(name):
  """Agents with a deterministic a' (or none): y recomputed from public pieces."""
  agent, batch = trained(name)
  next_obs = batch['next_observations']
  if name == 'lawr':
    next_q = agent.values(next_obs, agent.value.target_params)
  else:
    next_q = agent.critic(next_obs, agent.sample_actions(next_obs), params=agent.critic.target_params)
  np.testing.assert_allclose(target_mean(agent, batch), float(_reference_y(agent, batch, next_q)),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['qcmfql', 'fql'])
def test_td_target_equals_the_formula_with_sampled_next_actions(name):
  """Agents with a stochastic a' = sample_actions(s', key): the critic loss with `key` bootstraps
  from the target critic at exactly that policy sample (chunks of h = 2, gamma^h, q_agg)."""
  agent, batch = trained(name)
  next_obs = batch['next_observations']
  y = jax.jit(lambda a, b: a.critic_loss(a.params(), b, KEY)[1]['critic/target_mean'])(
      agent, batch)
  next_q = agent.critic(next_obs, agent.sample_actions(next_obs, KEY),
                        params=agent.critic.target_params)
  np.testing.assert_allclose(float(y), float(_reference_y(agent, batch, next_q)), rtol=1e-5,
                             atol=1e-5)


# ------------------------------------------------------------------------------ chunks
def _hand_made_episode():
  """One episode of 6 rows; rewards 1, 2, 4, ...; s_3 is terminal (masks[2] = 0).

  observations[i] = i, next_observations[i] = i + 1, so a batch row names its chunk start.
  """
  n = 6
  return {'observations': np.arange(n, dtype=np.float32)[:, None],
          'next_observations': np.arange(1, n + 1, dtype=np.float32)[:, None],
          'actions': np.zeros((n, 1), np.float32),
          'rewards': 2.0 ** np.arange(n, dtype=np.float32),
          'masks': np.array([1, 1, 0, 1, 1, 1], np.float32),
          'terminals': np.array([0, 0, 0, 0, 0, 1], np.float32)}


# Horizon 3, gamma 0.5 (exact in float32), Q'_k(s', a') = s' + k (min over k: s' = start + 3).
#   start 0: 1 + .5*2 + .25*4 = 3,           mask 0 (s_3 terminal, last row)   -> y = 3
#   start 1: 2 + .5*4 + 0 (after terminal),  mask 0 (mid-chunk)                -> y = 4
#   start 2: 4 + 0 + 0,                      mask 0 (first row)                -> y = 4
#   start 3: 8 + .5*16 + .25*32 = 24,        mask 1, + .125 * Q'(s_6) = .75    -> y = 24.75
EXPECTED_REWARDS = {0: 3.0, 1: 4.0, 2: 4.0, 3: 24.0}
EXPECTED_MASKS = {0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0}
EXPECTED_Y = {0: 3.0, 1: 4.0, 2: 4.0, 3: 24.75}


def _constant_critic(num_critics=2):
  """A 'critic' with Q_k(s, a) = s + k: a TargetTrainState whose params are unused offsets."""
  apply_fn = lambda params, obs, actions: obs[None, :, 0] + params['offsets'][:, None]
  params = {'offsets': jnp.arange(num_critics, dtype=jnp.float32)}
  return train_state.TargetTrainState.create(apply_fn, params, train_state.make_optimizer(1e-3))


def test_chunked_batch_and_td_target_by_hand():
  horizon, discount = 3, 0.5
  data = dataset_lib.to_device(_hand_made_episode(), horizon)
  np.testing.assert_array_equal(np.asarray(data.starts), [0, 1, 2, 3])
  batch = jax.jit(dataset_lib.sample_batch, static_argnums=(2, 3, 4))(
      data, jax.random.PRNGKey(0), 64, horizon, discount)
  starts = np.asarray(batch['observations'][:, 0]).astype(int)
  assert set(starts) == {0, 1, 2, 3}               # every chunk appears in 64 draws
  np.testing.assert_array_equal(batch['rewards'], [EXPECTED_REWARDS[s] for s in starts])
  np.testing.assert_array_equal(batch['masks'], [EXPECTED_MASKS[s] for s in starts])
  np.testing.assert_array_equal(batch['next_observations'][:, 0], starts + horizon)

  critic = _constant_critic()
  next_q = critic(batch['next_observations'], batch['actions'], params=critic.target_params)
  y = critic_lib.td_target(batch['rewards'], batch['masks'], next_q, discount ** horizon, 'min')
  np.testing.assert_array_equal(y, [EXPECTED_Y[s] for s in starts])

  # The shared critic loss raises gamma to the horizon itself (config.discount ** config.horizon).
  config = lps.get_config()
  config.horizon, config.discount, config.q_agg = horizon, discount, 'min'
  _, info = critic_lib.td_critic_loss(critic, critic.params, batch, batch['actions'], config)
  np.testing.assert_allclose(float(info['critic/target_mean']),
                             np.mean([EXPECTED_Y[s] for s in starts]), rtol=1e-6)
