"""LPS agent: gradient isolation of the three losses, the fused scan, learning on the toy task."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import random_transitions, tiny_lps_config
from lps_jax import engine
from lps_jax.agents import lps
from lps_jax.data import dataset as dataset_lib


def _agent_and_batch(horizon=2):
  config = tiny_lps_config(horizon=horizon)
  transitions = random_transitions()
  data = dataset_lib.to_device(transitions, horizon)
  agent = lps.LPSAgent.create(0, 3, horizon * 2, config)
  batch = dataset_lib.sample_batch(data, jax.random.PRNGKey(1), 16, horizon, config.discount)
  return agent, batch, data


@functools.lru_cache(maxsize=None)
def _loss_gradients():
  """{metric: grads over agent.params()} for the three LPS losses, in one compiled program."""
  agent, batch, _ = _agent_and_batch()

  @jax.jit
  def grads(agent, batch):
    return {metric: jax.grad(lambda p, m=metric: agent.loss(p, batch, jax.random.PRNGKey(2))[1][m])(
        agent.params()) for metric in ('actor/loss', 'flow/loss', 'critic/loss')}

  return grads(agent, batch)


def _grad_of(metric):
  return _loss_gradients()[metric]


def _is_zero(tree):
  return all(bool(jnp.all(leaf == 0)) for leaf in jax.tree.leaves(tree))


def test_actor_loss_reaches_only_the_latent_actor():
  grads = _grad_of('actor/loss')
  assert _is_zero(grads['flow']), 'actor loss must not train the base policy'
  assert _is_zero(grads['critic']), 'actor loss must not train the critic'
  assert not _is_zero(grads['latent_actor'])


def test_flow_and_critic_losses_reach_only_their_networks():
  flow_grads = _grad_of('flow/loss')
  assert _is_zero(flow_grads['latent_actor']) and _is_zero(flow_grads['critic'])
  assert not _is_zero(flow_grads['flow'])
  critic_grads = _grad_of('critic/loss')
  assert _is_zero(critic_grads['latent_actor']) and _is_zero(critic_grads['flow'])
  assert not _is_zero(critic_grads['critic'])


def test_update_moves_every_network_and_the_polyak_target():
  agent, batch, _ = _agent_and_batch()
  new, info = jax.jit(lambda a, b: a.update(b))(agent, batch)
  for name in ('flow', 'latent_actor', 'critic'):
    before, after = getattr(agent, name).params, getattr(new, name).params
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
  tau = float(agent.hparams['tau'])
  expected = jax.tree.map(lambda p, t: tau * p + (1 - tau) * t, new.critic.params, agent.critic.target_params)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(new.critic.target_params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert np.isfinite(float(info['critic/loss']))


def test_scanned_steps_equal_repeated_single_steps():
  agent, _, data = _agent_and_batch()
  copy = jax.tree.map(jnp.copy, agent)
  scanned, _ = engine.make_train_fn(4)(agent, data)
  single = engine.make_train_fn(1)
  for _ in range(4):
    copy, _ = single(copy, data)
  for a, b in zip(jax.tree.leaves(scanned), jax.tree.leaves(copy)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sample_actions_shape_and_bounds():
  agent, batch, _ = _agent_and_batch(horizon=3)
  actions = jax.jit(lambda a, o: a.sample_actions(o))(agent, batch['observations'])
  assert actions.shape == (16, 6)
  assert float(jnp.abs(actions).max()) <= 1.0


def test_actor_scale_multiplies_only_the_actor_loss():
  """actor_scale (the reference's alpha, a vmappable hparam) scales L_actor and nothing else."""
  agent, batch, _ = _agent_and_batch()
  scaled = agent.replace(hparams={**agent.hparams, 'actor_scale': jnp.float32(2.5)})
  loss = jax.jit(lambda a: a.loss(a.params(), batch, jax.random.PRNGKey(2))[1])
  base, info = loss(agent), loss(scaled)
  np.testing.assert_allclose(info['actor/loss'], 2.5 * base['actor/loss'], rtol=1e-6)
  for key in ('flow/loss', 'critic/loss', 'actor/q'):
    np.testing.assert_array_equal(info[key], base[key])
