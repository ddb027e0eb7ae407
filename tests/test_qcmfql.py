"""QC-MFQL: the actor objective rebuilt from public pieces, and one actor step climbs Q.

(Gradient isolation, the TD target and loss descent are in test_gradient_isolation.py,
test_td_target.py and test_baselines.py with the other agents; the alpha gate on the toy is in
test_toy_gates.py.)
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from conftest import random_transitions
from lps_jax import config_lib, train_state
from lps_jax.agents import qcmfql
from lps_jax.data import dataset as dataset_lib

HORIZON = 2
ALPHA = 3.0


def tiny_agent(alpha=ALPHA):
  config = config_lib.make_run_config(qcmfql.get_config(), 'test').agent
  config.flow_hidden_dims = config.critic_hidden_dims = config.actor_hidden_dims = (16,)
  config.horizon, config.alpha = HORIZON, alpha
  return qcmfql.QCMFQLAgent.create(0, 3, HORIZON * 2, config)


@functools.lru_cache(maxsize=None)
def batch_and_noises():
  data = dataset_lib.to_device(random_transitions(), HORIZON)
  batch = dataset_lib.sample_batch(data, jax.random.PRNGKey(1), 32, HORIZON, 0.99)
  return batch, tiny_agent().noises(jax.random.PRNGKey(5), (32,))


def hand_made_critic():
  """Q_0(s, a) = 3 sum(a) + 0.5, Q_1(s, a) = -sum(a) - 0.2: min != mean, and the mean changes
  sign across a batch, so mean |mean_k Q_k| != |mean_B mean_k Q_k|."""
  def apply_fn(params, observations, actions):
    del observations
    total = actions.sum(-1)
    return params['scale'][:, None] * total[None] + params['shift'][:, None]

  params = {'scale': jnp.array([3.0, -1.0]), 'shift': jnp.array([0.5, -0.2])}
  return train_state.TargetTrainState.create(apply_fn, params, train_state.make_optimizer(1e-3))


def test_actor_objective_equals_the_formula_with_a_hand_made_critic():
  agent = tiny_agent()
  agent = agent.replace(critic=hand_made_critic())
  batch, noises = batch_and_noises()
  _, info = agent.actor_loss(agent.params(), batch, noises)

  obs = batch['observations']
  actions = agent.onestep_actions(obs, noises)                     # mu(s, z)
  q = agent.critic(obs, actions)                                    # [2, B]
  q_bar = np.asarray(q).mean(axis=0)
  assert np.any(q_bar > 0) and np.any(q_bar < 0)                    # the test can tell
  assert not np.allclose(np.asarray(q).min(axis=0), q_bar)          # min from mean
  q_loss = -q_bar.mean() / np.abs(q_bar).mean()
  distill = np.mean((np.asarray(actions) - np.asarray(agent.bc_actions(obs, noises))) ** 2)
  np.testing.assert_allclose(float(info['actor/q_loss']), q_loss, rtol=1e-5)
  np.testing.assert_allclose(float(info['actor/q']), q_bar.mean(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(info['actor/distill_loss']), distill, rtol=1e-5)
  np.testing.assert_allclose(float(info['actor/loss']), q_loss + ALPHA * distill, rtol=1e-5)


def test_one_actor_step_under_a_frozen_critic_raises_q():
  agent = tiny_agent(alpha=0.0)
  batch, noises = batch_and_noises()
  obs = batch['observations']

  @jax.jit
  def step(agent):
    grads = jax.grad(lambda p: agent.actor_loss(p, batch, noises)[0])(agent.params())
    return agent.replace(onestep=agent.onestep.apply_gradients(grads['onestep']))

  mean_q = lambda a: float(a.critic(obs, a.onestep_actions(obs, noises)).mean())
  moved = step(agent)
  assert mean_q(moved) > mean_q(agent) + 1e-6, (mean_q(agent), mean_q(moved))
  for a, b in zip(jax.tree.leaves(agent.critic), jax.tree.leaves(moved.critic)):
    np.testing.assert_array_equal(a, b)                            # the critic is frozen
