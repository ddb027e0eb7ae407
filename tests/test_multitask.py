"""Tasks x seeds in one vmapped program == each (task, seed) trained alone."""
import jax
import numpy as np
import pytest

from conftest import random_transitions, tiny_lps_config
from lps_jax import engine, multitask
from lps_jax.agents import fql
from lps_jax.data import dataset as dataset_lib

SEEDS = (3, 7)
STEPS = 3


def _task_transitions(num_tasks=3):
  """Tasks sharing observations / actions / boundaries, with their own rewards and masks."""
  base = random_transitions(seed=0)
  tasks = []
  for t in range(num_tasks):
    rng = np.random.default_rng(100 + t)
    tasks.append({**base, 'rewards': rng.standard_normal(len(base['rewards'])).astype(np.float32),
                  'masks': (rng.uniform(size=len(base['masks'])) > 0.3).astype(np.float32)})
  return tasks


def _tiny_fql_config():
  config = fql.get_config()
  config.flow_hidden_dims = config.critic_hidden_dims = config.actor_hidden_dims = (16, 16)
  config.horizon, config.batch_size, config.flow_steps = 2, 16, 2
  config.normalize_q_loss = True
  return config


@pytest.mark.parametrize('make_config', [lambda: tiny_lps_config(horizon=2), _tiny_fql_config],
                         ids=['lps', 'fql'])
def test_member_equals_solo_run(make_config):
  config = make_config()
  tasks = _task_transitions()
  data = multitask.stack_task_datasets(tasks, config.horizon)
  assert data.rewards.shape == (3, len(tasks[0]['rewards']))
  assert data.observations.shape == tasks[0]['observations'].shape   # shared, not copied
  obs_dim, chunk_dim = 3, 2 * config.horizon
  agents = multitask.create_agents(config, SEEDS, len(tasks), obs_dim, chunk_dim)
  agents, metrics = multitask.make_train_fn(STEPS, data)(agents, data)
  assert metrics['critic/loss'].shape == (3, len(SEEDS))
  agent_cls = type(multitask.member(agents, 0, 0))
  solo_fn = engine.make_train_fn(STEPS)
  for t in (0, 2):
    solo_data = dataset_lib.to_device(tasks[t], config.horizon)
    for s, seed in enumerate(SEEDS):
      solo, solo_metrics = solo_fn(agent_cls.create(seed, obs_dim, chunk_dim, config), solo_data)
      got = multitask.member_params(agents, t, s)
      want = jax.device_get(solo.params())
      for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(metrics['critic/loss'][t, s], solo_metrics['critic/loss'],
                                 rtol=1e-5)
  # Different tasks really train differently (the task axis is not ignored).
  p0 = jax.tree.leaves(multitask.member_params(agents, 0, 0)['critic'])
  p1 = jax.tree.leaves(multitask.member_params(agents, 1, 0)['critic'])
  assert any(not np.allclose(a, b) for a, b in zip(p0, p1))


def test_tasks_must_share_observations():
  tasks = _task_transitions(2)
  tasks[1] = {**tasks[1], 'actions': tasks[1]['actions'] * 0.5}
  with pytest.raises(dataset_lib.DatasetError, match='actions differs'):
    multitask.stack_task_datasets(tasks, 1)


def test_with_params_round_trip():
  config = tiny_lps_config()
  agents = multitask.create_agents(config, (0, 1), 2, 3, 2)
  params = multitask.member_params(agents, 1, 1)
  fresh = type(multitask.member(agents, 0, 0)).create(5, 3, 2, config)
  rebuilt = multitask.with_params(fresh, params)
  for a, b in zip(jax.tree.leaves(rebuilt.params()), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), b)


def test_parse_int_list():
  assert multitask.parse_int_list('0..4') == [0, 1, 2, 3, 4]
  assert multitask.parse_int_list('2,3') == [2, 3]
  assert multitask.parse_int_list('1..2, 5') == [1, 2, 5]
  with pytest.raises(ValueError):
    multitask.parse_int_list('a')


def test_member_agents_are_the_seeds_agents_with_their_swept_hparams():
  """create_member_agents (the alpha axis) == create_agents for the same seeds, except the
  swept vmappable value, which each member carries in its own hparams leaf."""
  from lps_jax import config_lib, vmap_sweep  # pylint: disable=g-import-not-at-top
  from lps_jax.agents import lps  # pylint: disable=g-import-not-at-top
  config = config_lib.make_run_config(lps.get_config(), 'test')
  members = [{'seed': 3}, {'seed': 7}, {'seed': 3, 'agent.actor_scale': 0.5}]
  stacked = multitask.create_member_agents(config, members, 2, 3, 2)
  plain = multitask.create_agents(config.agent, [3, 7, 3], 2, 3, 2)
  np.testing.assert_array_equal(stacked.hparams['actor_scale'], [[1, 1, 0.5]] * 2)
  stacked = stacked.replace(hparams={**stacked.hparams, 'actor_scale': plain.hparams['actor_scale']})
  assert len(jax.tree.leaves(stacked)) == len(jax.tree.leaves(plain))   # (static closures differ)
  for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(plain)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(vmap_sweep.SweepError, match='cannot vary'):
    multitask.create_member_agents(config, [{'seed': 0, 'agent.horizon': 2}], 1, 3, 2)
