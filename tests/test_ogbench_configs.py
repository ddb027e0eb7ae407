"""The OGBench configs match the papers: reward type per domain, alpha / h / sizes per agent."""
import os

import pytest

from lps_jax import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAINS = ('cube-single', 'cube-double', 'scene', 'puzzle-3x3', 'puzzle-4x4')


def _config(agent, domain, variant='ogbench'):
  path = os.path.join(REPO, 'experiments', 'configs', f'{agent}.py')
  return config_lib.load_config_file(f'{path}:{variant},domain={domain},task=2')


def test_sparse_reward_only_for_scene_and_puzzle_3x3():
  assert config_lib.OGBENCH_DOMAINS == {'cube-single': False, 'cube-double': False,
                                        'scene': True, 'puzzle-3x3': True, 'puzzle-4x4': False}
  for domain in DOMAINS:
    for agent in ('lps', 'qcfql', 'fql', 'qcmfql', 'dsrl'):
      assert _config(agent, domain).sparse_reward == (domain in ('scene', 'puzzle-3x3'))


@pytest.mark.parametrize('domain,alpha', [('cube-single', 30.0), ('cube-double', 3.0),
                                          ('scene', 1.0), ('puzzle-3x3', 3.0),
                                          ('puzzle-4x4', 10.0)])
def test_qcfql(domain, alpha):
  for variant in ('ogbench', 'ogbench_small'):
    agent = _config('qcfql', domain, variant).agent
    assert agent.agent_name == 'fql' and agent.alpha == alpha and agent.horizon == 5
    assert agent.normalize_q_loss and agent.q_agg == 'mean'
  agent = _config('qcfql', domain).agent
  assert agent.critic_hidden_dims == (256,) * 4 and agent.flow_hidden_dims == (512,) * 4
  assert agent.batch_size == 256


@pytest.mark.parametrize('domain,alpha', [('cube-single', 30.0), ('cube-double', 3.0),
                                          ('scene', 1.0), ('puzzle-3x3', 3.0),
                                          ('puzzle-4x4', 10.0)])
def test_qcmfql(domain, alpha):
  """jellyho/LPS agents/qcmfql.py defaults (h = 5, q_agg min, Gaussian prior, critic 4x256, flow
  and actor 4x512); alpha: the authors' README's QC-FQL values (no QC-MFQL line there)."""
  for variant in ('ogbench', 'ogbench_small'):
    agent = _config('qcmfql', domain, variant).agent
    assert agent.agent_name == 'qcmfql' and agent.alpha == alpha and agent.horizon == 5
    assert agent.q_agg == 'min' and agent.latent_prior == 'gaussian'
  agent = _config('qcmfql', domain).agent
  assert agent.critic_hidden_dims == (256,) * 4 and agent.critic_layer_norm
  assert agent.flow_hidden_dims == agent.actor_hidden_dims == (512,) * 4
  assert agent.batch_size == 256 and agent.lr == 3e-4


@pytest.mark.parametrize('domain,alpha', [('cube-single', 300.0), ('cube-double', 300.0),
                                          ('scene', 300.0), ('puzzle-3x3', 1000.0),
                                          ('puzzle-4x4', 1000.0)])
def test_fql_is_the_original(domain, alpha):
  for variant in ('ogbench', 'ogbench_small'):
    agent = _config('fql', domain, variant).agent
    assert agent.alpha == alpha and agent.horizon == 1
    assert not agent.normalize_q_loss and agent.q_agg == 'mean'
  agent = _config('fql', domain).agent
  assert agent.flow_hidden_dims == agent.critic_hidden_dims == agent.actor_hidden_dims == (512,) * 4


@pytest.mark.parametrize('domain', DOMAINS)
def test_lps_sizes(domain):
  config = _config('lps', domain)
  agent = config.agent
  assert agent.horizon == 5 and agent.batch_size == 256 and agent.q_agg == 'min'
  assert agent.flow_hidden_dims == (512,) * 4 and not agent.flow_layer_norm
  assert agent.critic_hidden_dims == (256,) * 4 and agent.critic_layer_norm
  assert agent.actor_hidden_dims == (256, 256) and agent.actor_scale == 1.0
  assert config.num_steps == 1_000_000 and config.eval_episodes == 50
  assert config.task == f'{domain}-play-singletask-task2-v0'


@pytest.mark.parametrize('agent', ['lps', 'qcfql', 'fql', 'rebrac', 'dsrl', 'lawr'])
def test_shared_optimisation_values(agent):
  """Polyak rate, discount and Adam lr of every agent (LPS / FQL papers; the toy keeps tau, gamma)."""
  for variant in ('ogbench', 'ogbench_small'):
    config = _config(agent, 'cube-single', variant).agent
    assert config.tau == 0.005 and config.discount == 0.99 and config.lr == 3e-4, variant
  toy = _config(agent, 'cube-single', 'toy').agent
  assert toy.tau == 0.005 and toy.discount == 0.99
