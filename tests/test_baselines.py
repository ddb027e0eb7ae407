"""Baseline agents (FQL, QC-MFQL, ReBRAC, DSRL, L-AWR) on the toy dataset, tiny networks.

Every agent trains under engine.make_train_fn (one fused lax.scan). One compiled train
function per agent is shared by the tests of this file (see `_Runner`).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lps_jax import agents, config_lib, engine, hl_gauss, tasks
from lps_jax.agents import dsrl, fql, lawr, qcmfql, rebrac
from lps_jax.data import dataset as dataset_lib

MODULES = {'fql': fql, 'qcmfql': qcmfql, 'rebrac': rebrac, 'dsrl': dsrl, 'lawr': lawr}
STEPS_PER_CALL = 50
LAWR_FLOW_STEPS = 120          # not a multiple of STEPS_PER_CALL: the switch happens mid-scan


def tiny_config(name):
  config = config_lib.make_run_config(MODULES[name].get_config(), 'test').agent
  config.batch_size = 64
  config.flow_hidden_dims = config.critic_hidden_dims = config.actor_hidden_dims = (32,)
  config.lr = 1e-3
  if name == 'lawr':
    config.flow_steps = LAWR_FLOW_STEPS
    config.v_min, config.v_max, config.num_bins = -0.25, 1.25, 21
    config.temperature = 0.1
  return config


@functools.lru_cache(maxsize=None)
def toy_data():
  return dataset_lib.to_device(tasks.make_toy_rings_task(2_000).transitions, 1)  # one dummy state


class _Runner:
  """Creates agents with one jitted `create`, so every agent shares one tree structure
  (same static optimiser/apply closures) and the jitted train / loss fns compile once."""

  def __init__(self, name):
    self.config = tiny_config(name)
    cls = agents.get_agent_class(name)
    self.create = jax.jit(lambda seed: cls.create(seed, 1, 2, self.config))
    self.template = self.create(0)
    self.train_fn = engine.make_train_fn(STEPS_PER_CALL)
  def fresh(self, seed=0, **hparams):
    agent = self.create(seed)
    if hparams:
      agent = agent.replace(hparams={**agent.hparams,
                                     **{k: jnp.float32(v) for k, v in hparams.items()}})
    return agent

  def train(self, agent, num_steps, infos=None):
    """num_steps fused updates; appends each call's mean metrics to `infos` if given."""
    for _ in range(num_steps // STEPS_PER_CALL):
      agent, info = self.train_fn(agent, toy_data())
      if infos is not None:
        infos.append({k: float(v) for k, v in info.items()})
    return agent


@functools.lru_cache(maxsize=None)
def runner(name):
  return _Runner(name)


def fixed_batches(num=4, size=128):
  """A stack of `num` fixed batches: every array has a leading [num] axis."""
  keys = jax.random.split(jax.random.PRNGKey(123), num)
  return jax.vmap(lambda k: dataset_lib.sample_batch(toy_data(), k, size, 1, 0.99))(keys)


def first(batches):
  return jax.tree.map(lambda x: x[0], batches)


def tree_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def snapshot(tree):
  return jax.tree.map(np.array, tree)


# ------------------------------------------------------------------------------ all agents
def falls(values, fraction):
  return values[-1] < values[0] - fraction * abs(values[0])


@pytest.mark.parametrize('name', ['fql', 'qcmfql', 'rebrac', 'dsrl', 'lawr'])
def test_update_lowers_own_loss(name):
  """info['loss'] is the agent's own loss(params, batch) on each step's fresh batch.

  Means over each fused call of 50 steps. ReBRAC's total is not monotone on the bandit (its
  actor trades BC error for Q as the critic sharpens), so there the critic loss must fall
  and the actor must find actions the critic values above the behaviour's.
  """
  r = runner(name)
  infos = []
  agent = r.train(r.fresh(seed=1), 400, infos)
  series = {k: [i[k] for i in infos] for k in infos[0]}
  assert all(np.all(np.isfinite(v)) for v in series.values())
  if name == 'rebrac':
    assert falls(series['critic/loss'], 0.5), series['critic/loss']
    # The actor climbs the critic: Q(s, pi(s)) beats Q on the behaviour's actions.
    assert series['actor/q'][-1] > series['critic/q_mean'][-1] + 0.01, series
  elif name == 'lawr':
    # The phase switch at step 120 falls inside the third call; compare within phase 2.
    np.testing.assert_allclose(series['lawr/phase2'][:4], [0.0, 0.0, 0.6, 1.0], atol=1e-6)
    assert falls(series['loss'][3:], 0.1), series['loss']
  else:
    assert falls(series['loss'], 0.1), series['loss']
  actions = np.asarray(agent.sample_actions(jnp.ones((8, 1)), jax.random.PRNGKey(0)))
  assert actions.shape == (8, 2) and np.all(np.abs(actions) <= 1.0)


# ------------------------------------------------------------------------------ FQL
def test_fql_large_alpha_reproduces_bc():
  """alpha = 1e4 makes the one-step policy a distillation of the BC flow; alpha = 0 does not."""
  r = runner('fql')
  obs = jnp.ones((512, 1))
  noises = jax.random.normal(jax.random.PRNGKey(7), (512, 2))
  gaps = {}
  for alpha in (1e4, 0.0):
    agent = r.train(r.fresh(seed=2, alpha=alpha), 600)
    flow = np.asarray(agent.flow_actions(obs, noises))
    onestep = np.asarray(jnp.clip(agent.onestep_actions(obs, noises), -1, 1))
    gaps[alpha] = np.mean(np.sum((onestep - flow) ** 2, -1)) / np.mean(
        np.sum((flow - flow.mean(0)) ** 2, -1))
  assert gaps[1e4] < 0.05, gaps          # within 5% of the flow's own spread
  assert gaps[0.0] > 10 * gaps[1e4], gaps


def test_fql_euler_convention():
  """flow_actions integrates from noise at t=0 to data at t=1: a constant field v = c moves z by c."""
  r = runner('fql')
  agent = r.template
  const = jnp.array([0.3, -0.2])
  agent = agent.replace(flow=agent.flow.replace(apply_fn=lambda p, o, x, t, h: jnp.broadcast_to(
      const * jnp.ones_like(t), x.shape)))
  z = jnp.array([[0.1, 0.1]])
  np.testing.assert_allclose(agent.flow_actions(jnp.ones((1, 1)), z), z + const, atol=1e-6)


# ------------------------------------------------------------------------------ ReBRAC
def test_rebrac_critic_penalty_uses_next_actions():
  """y drops by ~alpha_critic * ||a~' - a'||^2 when the dataset's a' moves away from pi'(s')."""
  r = runner('rebrac')
  batch = first(fixed_batches(1))
  batch = {**batch, 'masks': jnp.ones_like(batch['masks'])}

  @jax.jit
  def target_gap(agent, batch):
    target_mean = lambda b: agent.critic_loss(agent.params(), b, jax.random.PRNGKey(0))[1][
        'critic/target_mean']
    near = agent.policy_actions(batch['next_observations'], agent.actor.target_params)
    far = jnp.where(near > 0, -1.0, 1.0)                   # >= 1 away in every dimension
    return (target_mean({**batch, 'next_actions': near}) -
            target_mean({**batch, 'next_actions': far}))

  for alpha_critic in (10.0, 0.0):
    gap = float(target_gap(r.fresh(seed=3, alpha_critic=alpha_critic), batch))
    if alpha_critic:
      # E[gap] = alpha * sum_i |near_i - far_i|^2 >= 2 alpha (the zero-mean noise averages out).
      assert gap > 1.5 * alpha_critic, gap
    else:
      assert gap == 0.0, gap


# ------------------------------------------------------------------------------ DSRL
def test_dsrl_distillation_does_not_touch_action_critic_or_flow():
  agent = runner('dsrl').fresh(seed=4)
  batch = first(fixed_batches(1))

  @jax.jit
  def grads(agent, batch):
    key = jax.random.PRNGKey(0)
    return (jax.grad(lambda p: agent.latent_critic_loss(p, batch, key)[0])(agent.params()),
            jax.grad(lambda p: agent.actor_loss(p, batch)[0])(agent.params()))

  distill, actor = grads(agent, batch)
  is_zero = lambda tree: all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(tree))
  # Distillation reaches Q^W only: exactly zero gradient for Q^A, the flow and the actor.
  for name in ('critic', 'flow', 'latent_actor'):
    assert is_zero(distill[name]), name
  assert not is_zero(distill['latent_critic'])
  # The latent actor's loss reaches the latent actor only.
  for name in ('critic', 'flow', 'latent_critic'):
    assert is_zero(actor[name]), name
  assert not is_zero(actor['latent_actor'])


def test_dsrl_actor_scale_multiplies_only_the_actor_loss():
  """actor_scale (the reference DSRL's alpha, vmappable) scales the latent actor's loss only."""
  r = runner('dsrl')
  batch = first(fixed_batches(1))
  loss = jax.jit(lambda a: a.loss(a.params(), batch, jax.random.PRNGKey(0))[1])
  base, info = loss(r.fresh(seed=4)), loss(r.fresh(seed=4, actor_scale=0.1))
  np.testing.assert_allclose(info['actor/loss'], 0.1 * base['actor/loss'], rtol=1e-6)
  for key in ('flow/loss', 'critic/loss', 'latent_critic/loss', 'actor/q_w'):
    np.testing.assert_array_equal(info[key], base[key])


# ------------------------------------------------------------------------------ L-AWR
def test_lawr_freezes_flow_exactly_after_phase1():
  r = runner('lawr')
  agent = r.fresh(seed=5)
  init_flow = snapshot(agent.flow)
  init_rest = snapshot((agent.planner, agent.value, agent.qvalue))
  agent = r.train(agent, 100)                       # all phase 1
  assert int(agent.flow.step) == 100
  assert not tree_equal(init_flow.params, agent.flow.params)        # the flow learns
  assert tree_equal(init_rest, (agent.planner, agent.value, agent.qvalue))
  agent = r.train(agent, 50)                        # switch at step 120, inside this scan
  assert int(agent.step) == 150 and int(agent.flow.step) == LAWR_FLOW_STEPS
  frozen = snapshot(agent.flow)
  planner = snapshot(agent.planner.params)
  agent = r.train(agent, 100)                       # phase 2 only
  assert tree_equal(frozen, agent.flow)             # params AND optimiser state, bit for bit
  assert int(agent.flow.step) == LAWR_FLOW_STEPS
  assert not tree_equal(planner, agent.planner.params)


# ------------------------------------------------------------------------------ HL-Gauss
def test_hl_gauss_histogram():
  support = hl_gauss.make_support(-1.0, 1.0, 41)
  values = jnp.array([-0.5, 0.0, 0.33, 0.9])

  @jax.jit
  def compute(values):
    probs = hl_gauss.target_probs(values, support)
    logits = jnp.log(probs + 1e-12)
    return (probs, hl_gauss.expected_value(logits, support), hl_gauss.loss(logits, values, support),
            hl_gauss.loss(jnp.zeros_like(probs), values, support))

  probs, expected, best, worse = compute(values)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(expected, values, atol=0.02)
  assert np.all(best < worse)                 # the CE is minimised by the target histogram
  assert abs(support.sigma - 0.75 * 2.0 / 41) < 1e-7


# ------------------------------------------------------------------------------ data
def test_batch_next_actions_are_the_following_chunk():
  """batch['next_actions'] (ReBRAC's a') is a_{t+h} .. a_{t+2h-1}, flattened."""
  n, horizon = 40, 2
  actions = np.linspace(-1, 1, n * 2, dtype=np.float32).reshape(n, 2)
  transitions = {'observations': np.arange(n, dtype=np.float32)[:, None],
                 'actions': actions, 'next_observations': np.arange(1, n + 1, dtype=np.float32)[:, None],
                 'rewards': np.zeros(n, np.float32), 'masks': np.ones(n, np.float32),
                 'terminals': np.zeros(n, np.float32)}
  data = dataset_lib.to_device(transitions, horizon)
  batch = jax.jit(lambda k: dataset_lib.sample_batch(data, k, 32, horizon, 0.99))(
      jax.random.PRNGKey(0))
  starts = np.asarray(batch['observations'][:, 0]).astype(int)
  expected = np.stack([actions[np.minimum(np.arange(s + horizon, s + 2 * horizon), n - 1)]
                       .reshape(-1) for s in starts])
  np.testing.assert_array_equal(np.asarray(batch['next_actions']), expected)
  np.testing.assert_array_equal(np.asarray(batch['actions']),
                                np.stack([actions[s:s + horizon].reshape(-1) for s in starts]))
