"""Gradient isolation of the baselines' fused losses (LPS and DSRL have theirs in test_lps.py /
test_baselines.py): each loss term reaches only the networks the method says it trains.

One jax.grad of each reported loss term over agent.params(); a term must give exactly zero
gradient to every other network, and a non-zero one to its own.
"""
import functools

import jax
import numpy as np
import pytest

from conftest import random_transitions
from lps_jax import agents, config_lib
from lps_jax.agents import fql, lawr, qcmfql, rebrac
from lps_jax.data import dataset as dataset_lib

HORIZON = 2
# agent -> {loss term in info: the networks it must reach}; every other network gets zero.
ISOLATION = {
    'fql': {'flow/loss': {'flow'}, 'critic/loss': {'critic'}, 'actor/loss': {'onestep'},
            # FQL's distillation target is the BC flow's action, fully stopped.
            'actor/distill_loss': {'onestep'}},
    # QC-MFQL: the same split on a MeanFlow BC policy; its Q term alone also reaches only mu.
    'qcmfql': {'flow/loss': {'flow'}, 'critic/loss': {'critic'}, 'actor/loss': {'onestep'},
               'actor/distill_loss': {'onestep'}, 'actor/q_loss': {'onestep'}},
    'rebrac': {'critic/loss': {'critic'}, 'actor/loss': {'actor'}},
    'lawr': {'flow/loss': {'flow'}, 'critic/v_loss': {'value'}, 'critic/q_loss': {'qvalue'},
             'planner/loss': {'planner'}},
}
MODULES = {'fql': fql, 'qcmfql': qcmfql, 'rebrac': rebrac, 'lawr': lawr}


def tiny_agent(name):
  config = config_lib.make_run_config(MODULES[name].get_config(), 'test').agent
  config.flow_hidden_dims = config.critic_hidden_dims = config.actor_hidden_dims = (16,)
  config.horizon = HORIZON
  if name == 'lawr':
    config.v_min, config.v_max, config.num_bins = -5.0, 5.0, 21
  return agents.get_agent_class(name).create(0, 3, HORIZON * 2, config)


@functools.lru_cache(maxsize=None)
def loss_gradients(name):
  """{loss term: {network: grads}} for a fresh agent and one chunked batch."""
  agent = tiny_agent(name)
  data = dataset_lib.to_device(random_transitions(), HORIZON)
  batch = dataset_lib.sample_batch(data, jax.random.PRNGKey(1), 32, HORIZON, 0.99)

  @jax.jit
  def grads(agent, batch):
    key = jax.random.PRNGKey(2)
    return {term: jax.grad(lambda p, term=term: agent.loss(p, batch, key)[1][term])(
        agent.params()) for term in ISOLATION[name]}

  return grads(agent, batch)


def is_zero(tree):
  return all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('name, term', [(n, t) for n in ISOLATION for t in ISOLATION[n]])
def test_loss_term_reaches_only_its_own_networks(name, term):
  grads = loss_gradients(name)[term]
  owners = ISOLATION[name][term]
  for network, grad in grads.items():
    if network in owners:
      assert not is_zero(grad), f'{name}: {term} does not reach {network}'
    else:
      assert is_zero(grad), f'{name}: {term} leaks a gradient into {network}'
