"""The actor's objective, read off each agent's own loss and rebuilt from public pieces; and the
static parts of agents built alike, which decide whether they share one compiled program.

  Q term      actor/loss and actor/q equal -lam * mean_B agg_k Q_k(s, pi(s)), lam =
              stop_grad(1 / mean_B |agg_k Q_k|) (or 1), and so do their gradients into the actor.
              The critic is hand-made (Q_k linear in (s, a), members far apart), so min, mean and
              a flipped sign all give different numbers. pi(s) is the *acting* policy
              (agent.sample_actions), so the trained policy is the one that acts.
  ascent      one actor-only gradient step under the frozen (network) critic raises mean Q.
  critic      the critic's parameter tree has LayerNorm exactly when critic_layer_norm is set.
  sphere      the latent agents act with pi_beta(s, l(s)), l(s) on the sphere of radius sqrt(D).

`assert_actor_q_objective` is the reusable check: an agent, the name of its actor's train
state, the function giving the actions its Q term is evaluated at, and the expected ensemble
aggregation and normalisation.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import random_transitions
from lps_jax import agents, config_lib, critic as critic_lib, meanflow, train_state
from lps_jax.data import dataset as dataset_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACTION_DIM, HORIZON = 3, 2, 2
CHUNK_DIM = HORIZON * ACTION_DIM
KEY = jax.random.PRNGKey(2)
sg = jax.lax.stop_gradient


def tiny_config(config_file, variant='test'):
  """An agent config from experiments/configs/<config_file>.py at `variant`, 2x16 nets, h = 2."""
  config = config_lib.load_config_file(
      os.path.join(REPO, 'experiments', 'configs', f'{config_file}.py:{variant}')).agent
  config.flow_hidden_dims = config.critic_hidden_dims = config.actor_hidden_dims = (16, 16)
  config.horizon, config.batch_size = HORIZON, 32
  if config.agent_name == 'lawr':
    config.v_min, config.v_max, config.num_bins = -5.0, 5.0, 21
  return config


def tiny_agent(config_file, **hparams):
  """A fresh agent (seed 0) with `hparams` overriding its vmappable scalars (e.g. alpha=0)."""
  config = tiny_config(config_file)
  agent = agents.get_agent_class(config.agent_name).create(0, OBS_DIM, CHUNK_DIM, config)
  return agent.replace(hparams={**agent.hparams, **{k: jnp.float32(v) for k, v in hparams.items()}})


@functools.lru_cache(maxsize=None)
def batch():
  data = dataset_lib.to_device(random_transitions(obs_dim=OBS_DIM, action_dim=ACTION_DIM), HORIZON)
  return dataset_lib.sample_batch(data, jax.random.PRNGKey(1), 32, HORIZON, 0.99)


# ------------------------------------------------------------------ a hand-made critic
def handmade_q(params, observations, inputs):
  """Q_k(s, x) = w_k . x + v_k . s + b_k: [B, O], [B, X] -> [E, B]."""
  return (jnp.einsum('ex,bx->eb', params['w'], inputs)
          + jnp.einsum('eo,bo->eb', params['v'], observations) + params['b'][:, None])


def handmade_critic(input_dim):
  """Two members with different slopes and offsets 1.5 apart: min != mean, mixed signs."""
  kw, kv = jax.random.split(jax.random.PRNGKey(11))
  params = {'w': jax.random.normal(kw, (2, input_dim)) * jnp.array([[1.0], [-2.0]]),
            'v': 0.3 * jax.random.normal(kv, (2, OBS_DIM)),
            'b': jnp.array([-0.5, 1.0])}
  return train_state.TargetTrainState.create(handmade_q, params, train_state.make_optimizer(1e-3))


def with_params(agent, name, params):
  return agent.replace(**{name: getattr(agent, name).replace(params=params)})


# ------------------------------------------------------------------ actor-action functions
def acting_actions(agent, batch, key):
  """The acting policy at the batch's states: agent.sample_actions (deterministic agents)."""
  del key
  return agent.sample_actions(batch['observations'])


def fql_actor_actions(agent, batch, key):
  """FQL's acting policy clip(mu(s, z)) with the noise its actor loss draws from `key`."""
  _, _, key_actor = jax.random.split(key, 3)
  return agent.sample_actions(batch['observations'], key_actor)


def qcmfql_actor_actions(agent, batch, key):
  """QC-MFQL's Q term reads mu(s, z) unclipped, z from its actor loss's key."""
  _, _, key_actor = jax.random.split(key, 3)
  observations = batch['observations']
  return agent.onestep_actions(observations, agent.noises(key_actor, observations.shape[:-1]))


def dsrl_latents(agent, batch, key):
  """DSRL's actor maximises Q^W at its latents l(s)."""
  del key
  return agent.latents(batch['observations'])


def assert_actor_q_objective(agent, actor_name, actor_inputs, aggregation, normalize,
                             critic_name='critic', q_metric='actor/q'):
  """agent.loss's actor/loss and q_metric (and d actor/loss / d actor) == the rebuilt Q term.

  actor_inputs(agent, batch, key) -> [B, X], where the actor's Q term evaluates the critic
  named critic_name, which is replaced by a hand-made one. Give the agent zero BC / distillation
  weight, so that actor/loss is its Q term alone.
  """
  observations = batch()['observations']
  critic = handmade_critic(actor_inputs(agent, batch(), KEY).shape[-1])
  agent = agent.replace(**{critic_name: critic})
  params = agent.params()

  def expected(actor_params):
    inputs = actor_inputs(with_params(agent, actor_name, actor_params), batch(), KEY)
    q_k = handmade_q(critic.params, observations, inputs)
    q = q_k.min(axis=0) if aggregation == 'min' else q_k.mean(axis=0)
    lam = sg(1.0 / jnp.abs(q).mean()) if normalize else 1.0
    return -lam * q.mean(), q.mean()

  def reported(actor_params):
    info = agent.loss({**params, actor_name: actor_params}, batch(), KEY)[1]
    return info['actor/loss'], info[q_metric]

  @jax.jit
  def both(actor_params):
    return [jax.value_and_grad(f, has_aux=True)(actor_params) for f in (expected, reported)]

  ((want_loss, want_q), want_grad), ((got_loss, got_q), got_grad) = both(params[actor_name])
  # The hand-made critic really tells the aggregations and the sign apart.
  q_k = handmade_q(critic.params, observations, actor_inputs(agent, batch(), KEY))
  assert abs(float(q_k.min(axis=0).mean() - q_k.mean(axis=0).mean())) > 0.3
  np.testing.assert_allclose(got_q, want_q, rtol=1e-5, atol=1e-6, err_msg=q_metric)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-6, err_msg='actor/loss')
  assert abs(float(want_loss)) > 0.05                   # a flipped sign cannot pass
  for a, b in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# (config file, hparams zeroing the BC term, actor state, actor-action fn, aggregation,
#  normalised, critic state, reported Q metric)
Q_OBJECTIVES = {
    'lps': ('lps', {}, 'latent_actor', acting_actions, 'mean', True, 'critic', 'actor/q'),
    'fql': ('fql', {'alpha': 0.0}, 'onestep', fql_actor_actions, 'mean', False, 'critic',
            'actor/q'),
    'qcfql': ('qcfql', {'alpha': 0.0}, 'onestep', fql_actor_actions, 'mean', True, 'critic',
              'actor/q'),
    'qcmfql': ('qcmfql', {'alpha': 0.0}, 'onestep', qcmfql_actor_actions, 'mean', True,
               'critic', 'actor/q'),
    'rebrac': ('rebrac', {'alpha_actor': 0.0}, 'actor', acting_actions, 'min', True, 'critic',
               'actor/q'),
    'dsrl': ('dsrl', {}, 'latent_actor', dsrl_latents, 'mean', True, 'latent_critic',
             'actor/q_w'),
}


@pytest.mark.parametrize('name', sorted(Q_OBJECTIVES))
def test_actor_loss_is_the_q_term_rebuilt_from_public_pieces(name):
  config_file, hparams, actor, inputs, aggregation, normalize, critic, metric = Q_OBJECTIVES[name]
  agent = tiny_agent(config_file, **hparams)
  if name == 'rebrac':
    assert agent.config.q_agg == aggregation
  assert_actor_q_objective(agent, actor, inputs, aggregation, normalize, critic, metric)


@pytest.mark.parametrize('name', sorted(Q_OBJECTIVES))
def test_one_actor_step_under_a_frozen_critic_raises_q(name):
  """A small step along -d actor/loss / d actor, nothing else moved: mean_k,B Q_k rises.

  L-AWR is not here: its planner regresses onto advantage-weighted actions and has no Q term.
  """
  config_file, hparams, actor, inputs_fn, _, _, critic_name, _ = Q_OBJECTIVES[name]
  agent = tiny_agent(config_file, **hparams)
  critic, params = getattr(agent, critic_name), agent.params()

  def mean_q(actor_params):
    inputs = inputs_fn(with_params(agent, actor, actor_params), batch(), KEY)
    return critic(batch()['observations'], inputs).mean()

  @jax.jit
  def q_before_and_after(actor_params):
    grad = jax.grad(lambda p: agent.loss({**params, actor: p}, batch(), KEY)[1]['actor/loss'])(
        actor_params)
    norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grad)))
    stepped = jax.tree.map(lambda p, g: p - 1e-2 * g / norm, actor_params, grad)
    return mean_q(actor_params), mean_q(stepped)

  before, after = q_before_and_after(params[actor])
  assert float(after) > float(before) + 1e-4, (name, float(before), float(after))


# ------------------------------------------------------------------ the critic's LayerNorm
def _layer_norms(params):
  """Paths of LayerNorm scale leaves in a params tree."""
  paths = jax.tree_util.tree_flatten_with_path(params)[0]
  return [jax.tree_util.keystr(p) for p, _ in paths
          if 'LayerNorm' in jax.tree_util.keystr(p) and jax.tree_util.keystr(p).endswith("['scale']")]


CRITICS = {'lps': ('critic',), 'fql': ('critic',), 'qcfql': ('critic',), 'qcmfql': ('critic',),
           'rebrac': ('critic',),
           'dsrl': ('critic', 'latent_critic'), 'lawr': ('value', 'qvalue')}


@pytest.mark.parametrize('name', sorted(CRITICS))
@pytest.mark.parametrize('layer_norm', [True, False])
def test_critic_has_layer_norm_exactly_when_configured(name, layer_norm):
  config = tiny_config(name)
  assert config.critic_layer_norm                       # the default, as in the papers
  config.critic_layer_norm = layer_norm
  agent = jax.eval_shape(     # the tree of shapes only: nothing is initialised
      lambda: agents.get_agent_class(config.agent_name).create(0, OBS_DIM, CHUNK_DIM, config))
  for critic in CRITICS[name]:
    found = _layer_norms(getattr(agent, critic).params)
    # One LayerNorm per hidden layer (2x16 here), inside the ensemble.
    assert len(found) == (len(config.critic_hidden_dims) if layer_norm else 0), (critic, found)
  for other in set(agent.params()) - set(CRITICS[name]):
    assert not _layer_norms(agent.params()[other]), other     # flow / actors: no LayerNorm


def test_make_critic_follows_the_flag():
  config = tiny_config('lps')
  for layer_norm in (True, False):
    config.critic_layer_norm = layer_norm
    critic = jax.eval_shape(
        lambda: critic_lib.make_critic(config, OBS_DIM, CHUNK_DIM, jax.random.PRNGKey(0)))
    assert bool(_layer_norms(critic.params)) == layer_norm


# ------------------------------------------------------------------ acting policy, sphere
@pytest.mark.parametrize('name, actor', [('lps', 'latent_actor'), ('dsrl', 'latent_actor'),
                                         ('lawr', 'planner')])
def test_acting_policy_is_the_decoder_at_latents_on_the_sphere(name, actor):
  agent = tiny_agent(name)
  observations = 10.0 * batch()['observations']           # far from the data's scale too
  latents = meanflow.project_to_sphere(getattr(agent, actor)(observations))
  np.testing.assert_allclose(np.linalg.norm(latents, axis=-1), np.sqrt(CHUNK_DIM), rtol=1e-5)
  np.testing.assert_allclose(agent.latents(observations), latents, rtol=1e-6, atol=1e-6)
  ones = jnp.ones((observations.shape[0], 1))
  want = jnp.clip(agent.flow(observations, latents, ones, ones), -1.0, 1.0)
  got = agent.sample_actions(observations, jax.random.PRNGKey(5))
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # Deterministic: the acting policy draws no noise.
  np.testing.assert_array_equal(got, agent.sample_actions(observations, jax.random.PRNGKey(6)))


# ------------------------------------------------------------------ one compiled program
@pytest.mark.parametrize('name', sorted(CRITICS))
def test_agents_built_apart_share_one_compiled_program(name):
  """jit's cache key holds an agent's static parts (module.apply, the optimiser): two agents
  created apart from equal configs must have one tree structure, else every new agent
  recompiles the same update."""
  make = lambda seed: jax.eval_shape(lambda: agents.get_agent_class(
      tiny_config(name).agent_name).create(seed, OBS_DIM, CHUNK_DIM, tiny_config(name)))
  assert jax.tree.structure(make(0)) == jax.tree.structure(make(1))


@pytest.mark.parametrize('name', sorted(CRITICS))
def test_compiled_create_is_the_eager_create_bit_for_bit(name):
  """agents.create_agent (one compiled program) gives the eager create's agent, any seed."""
  config = tiny_config(name)
  cls = agents.get_agent_class(config.agent_name)
  for seed in (3, agents.MAX_SEED):
    eager = cls.create(seed, OBS_DIM, CHUNK_DIM, config)
    compiled = agents.create_agent(cls, seed, OBS_DIM, CHUNK_DIM, config)
    assert jax.tree.structure(compiled) == jax.tree.structure(eager) and compiled.config is config
    for got, want in zip(jax.tree.leaves(compiled), jax.tree.leaves(eager)):
      assert got.dtype == want.dtype and np.array_equal(got, want)


def test_compiled_create_compiles_once_per_config():
  """Another seed reuses the program; a config edited afterwards gets a program of its own."""
  config = tiny_config('lps')
  cls = agents.get_agent_class('lps')
  programs = lambda: len(agents._CREATE_FNS)  # pylint: disable=protected-access
  agents.create_agent(cls, 0, OBS_DIM, CHUNK_DIM, config)
  before = programs()
  agents.create_agent(cls, 1, OBS_DIM, CHUNK_DIM, config)
  assert programs() == before
  config.critic_hidden_dims = (8,)
  edited = agents.create_agent(cls, 1, OBS_DIM, CHUNK_DIM, config)
  assert programs() == before + 1
  assert jax.tree.leaves(edited.critic.params)[0].shape == (2, 8)     # Dense_0's bias
