"""--config.task=npz:<path>: a plain .npz, no env; evaluation on a held-out split."""
import os

import jax
import numpy as np
import pytest

from experiments.configs import lps as lps_config
from lps_jax import agents, config_lib, main, tasks
from lps_jax.data import dataset as dataset_lib
from lps_jax.data import npz_task
from conftest import random_transitions

HELDOUT_ACTION = 0.75


@pytest.fixture(scope='module')
def npz_path(tmp_path_factory):
  """60 rows (6 episodes of 10); the last 6 rows (held out) all have actions 0.75."""
  transitions = random_transitions()
  transitions['actions'][-6:] = HELDOUT_ACTION
  path = str(tmp_path_factory.mktemp('npz') / 'data.npz')
  np.savez(path, extra=np.zeros(3), **transitions)
  return path, transitions


def run_config(task_name):
  config = lps_config.get_config('test')
  config.task = task_name
  config.num_steps, config.steps_per_call = 2, 2
  config.log_interval = config.eval_interval = config.checkpoint_interval = 2
  return config


def test_split_and_masks(npz_path, tmp_path):
  path, transitions = npz_path
  task = tasks.make_task(run_config(f'npz:{path}'))
  train = task.transitions
  assert task.evaluate is None and task.evaluate_agent is not None
  assert (task.observation_dim, task.action_dim) == (3, 2)
  assert len(train['rewards']) == 54                       # 10% of 60 rows held out
  for key in dataset_lib.REQUIRED_KEYS:
    if key != 'terminals':
      np.testing.assert_array_equal(train[key], transitions[key][:54])
  expected_ends = np.zeros(54)
  expected_ends[[9, 19, 29, 39, 49, 53]] = 1.0             # the cut is an episode boundary
  np.testing.assert_array_equal(train['terminals'], expected_ends)
  # masks are optional: missing -> 1 everywhere.
  no_masks = {k: v for k, v in transitions.items() if k != 'masks'}
  np.savez(tmp_path / 'no_masks.npz', **no_masks)
  task = tasks.make_task(run_config(f'npz:{tmp_path / "no_masks.npz"}'))
  assert np.all(task.transitions['masks'] == 1.0)


def test_heldout_metrics_use_the_heldout_rows_and_leave_the_agent_alone(npz_path):
  path, _ = npz_path
  config = run_config(f'npz:{path}')
  task = tasks.make_task(config)
  agent = agents.get_agent_class('lps').create(0, 3, 2, config.agent)
  before = jax.device_get(agent.params())
  policy_fn = main.make_policy_fn(agent, 0)
  metrics = task.evaluate_agent(agent, policy_fn, 0)
  assert metrics['heldout/data_action_abs'] == pytest.approx(HELDOUT_ACTION)
  for key in ('heldout/critic/loss', 'heldout/critic/q_mean', 'heldout/flow/loss',
              'heldout/actor/q', 'heldout/action_mse', 'heldout/action_abs'):
    assert np.isfinite(metrics[key]), key
  again = task.evaluate_agent(agent, main.make_policy_fn(agent, 0), 0)
  assert again['heldout/critic/loss'] == metrics['heldout/critic/loss']
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(agent.params()), before)


def test_trains_two_steps_and_logs_heldout_metrics(npz_path, tmp_path):
  path, _ = npz_path
  _, train_metrics, eval_metrics = main.train_and_evaluate(run_config(f'npz:{path}'),
                                                           str(tmp_path / 'run'), seed=0)
  assert np.isfinite(train_metrics['critic/loss'])
  assert eval_metrics['heldout/data_action_abs'] == pytest.approx(HELDOUT_ACTION)
  header = open(tmp_path / 'run' / 'eval.csv').readline()
  assert 'heldout/critic/loss' in header and 'heldout/action_mse' in header


def test_bad_files_are_one_line_errors(npz_path, tmp_path):
  path, transitions = npz_path
  with pytest.raises(config_lib.ConfigError, match='no such .npz file'):
    tasks.check_config(run_config(f'npz:{tmp_path / "nope.npz"}'))
  np.savez(tmp_path / 'partial.npz', observations=transitions['observations'])
  with pytest.raises(dataset_lib.DatasetError, match=r"missing keys \['actions', "):
    tasks.check_config(run_config(f'npz:{tmp_path / "partial.npz"}'))
  (tmp_path / 'junk.npz').write_text('not a zip')
  with pytest.raises(dataset_lib.DatasetError, match='is not an .npz archive'):
    tasks.check_config(run_config(f'npz:{tmp_path / "junk.npz"}'))
  big = dict(transitions, actions=transitions['actions'] * 3)
  np.savez(tmp_path / 'big.npz', **big)
  with pytest.raises(dataset_lib.DatasetError, match=r'actions outside \[-1, 1\]'):
    tasks.make_task(run_config(f'npz:{tmp_path / "big.npz"}'))
  tasks.check_config(run_config(f'npz:{path}'))
  with pytest.raises(config_lib.ConfigError, match="unknown task prefix 'nzp'"):
    tasks.check_config(run_config(f'nzp:{path}'))
