"""Vmapped sweeps: a member equals the same agent trained alone; static keys are rejected."""
import csv
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from lps_jax import agents, engine, tasks
from lps_jax import vmap_sweep as sweep
from lps_jax.data import dataset as dataset_lib
from lps_jax.data import toy
from experiments.configs import lps as lps_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACTION_DIM = toy.CONTEXT_DIM, toy.ACTION_DIM


@pytest.fixture(scope='module')
def config():
  return lps_config.get_config('test')   # 2x16 nets, batch 16, h = 1, 4 steps, K = 2


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_member_matches_agent_trained_alone_and_is_logged(config, tmp_path):
  # Member 1 has its own seed, lr and tau: if the vmapped program ignored any of the three
  # (e.g. used the base config's lr/tau) it would not match the solo run.
  members = [{'seed': 0, 'agent.lr': 1e-4}, {'seed': 1, 'agent.lr': 1e-3, 'agent.tau': 0.05}]
  result = sweep.run_vmapped_sweep(config, members, str(tmp_path))
  stacked = result.agents
  assert jax.tree.leaves(stacked)[0].shape[0] == 2
  np.testing.assert_allclose([float(r) for r in sweep._learning_rates(stacked)[0]],
                             [1e-4, 1e-3], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(stacked.hparams['tau']), [0.005, 0.05], rtol=1e-6)

  # The same agent alone: created from member 1's config, trained by the 1-agent engine.
  solo_config = sweep.member_config(config, members[1])
  task = tasks.make_task(solo_config)
  data = dataset_lib.to_device(task.transitions, horizon=1)
  solo = agents.get_agent_class('lps').create(1, OBS_DIM, ACTION_DIM, solo_config.agent)
  solo_fn = engine.make_train_fn(config.steps_per_call)
  for _ in range(config.num_steps // config.steps_per_call):
    solo, solo_metrics = solo_fn(solo, data)
  member = sweep.unstack(stacked, 1)
  assert int(member.flow.step) == int(solo.flow.step) == config.num_steps
  _assert_trees_close(member.params(), solo.params())
  _assert_trees_close(member.critic.target_params, solo.critic.target_params)
  _assert_trees_close(member.flow.opt_state, solo.flow.opt_state)
  np.testing.assert_array_equal(np.asarray(member.rng), np.asarray(solo.rng))
  np.testing.assert_allclose(result.train_metrics[1]['critic/loss'],
                             float(solo_metrics['critic/loss']), rtol=1e-5)
  # ... and the two members really trained differently.
  other = sweep.unstack(stacked, 0)
  assert not np.allclose(jax.tree.leaves(other.params())[0], jax.tree.leaves(member.params())[0])

  # Per-member run directories.
  assert len(result.eval_metrics) == 2 and 'reward' in result.eval_metrics[0]
  losses = []
  for i, m in enumerate(members):
    path = tmp_path / f'member_{i:03d}'
    with open(path / 'config.json') as f:
      saved = json.load(f)
    assert saved['seed'] == m['seed']
    assert saved['config']['agent']['lr'] == pytest.approx(m['agent.lr'])
    with open(path / 'train.csv') as f:
      rows = list(csv.DictReader(f))
    assert [int(r['step']) for r in rows] == [2, 4]    # test variant: log every 2 of 4 steps
    losses.append(float(rows[-1]['critic/loss']))
    with open(path / 'eval.csv') as f:
      assert [int(r['step']) for r in csv.DictReader(f)] == [4]
  assert losses[0] != losses[1]
  with open(tmp_path / 'sweep.json') as f:
    assert json.load(f)['members'] == members


@pytest.mark.parametrize('key, value, match', [
    ('agent.horizon', 2, 'cannot vary inside one vmapped program'),
    ('agent.flow_hidden_dims', (8, 8), 'cannot vary inside one vmapped program'),
    ('agent.batch_size', 8, 'cannot vary inside one vmapped program'),
    ('agent.activation', 'relu', 'cannot vary inside one vmapped program'),
    ('num_steps', 10, 'run-level setting'),
    ('agent.no_such_key', 1.0, 'unknown agent hyperparameter'),
])
def test_static_keys_are_rejected(config, key, value, match):
  with pytest.raises(sweep.SweepError, match=match) as error:
    sweep.create_stacked_agents(config, [{'seed': 0}, {'seed': 0, key: value}], OBS_DIM,
                                ACTION_DIM)
  assert isinstance(error.value, ValueError) and '\n' not in str(error.value)


def test_bad_member_value_is_a_config_error(config):
  with pytest.raises(ValueError, match='lr must be > 0'):
    sweep.create_stacked_agents(config, [{'seed': 0, 'agent.lr': -1.0}], OBS_DIM, ACTION_DIM)


def test_members_are_grid_times_seeds():
  members = sweep.members_from_strings('0,1,2', '{"agent.lr": [1e-4, 3e-4], "agent.tau": [0.01]}')
  assert len(members) == 6
  assert members[0] == {'seed': 0, 'agent.lr': 1e-4, 'agent.tau': 0.01}
  assert {(m['seed'], m['agent.lr']) for m in members} == {
      (s, lr) for s in (0, 1, 2) for lr in (1e-4, 3e-4)}
  assert sweep.members_from_strings('3', '') == [{'seed': 3}]
  for seeds, grid in (('0', '{"agent.lr": 1e-4}'), ('0', '[1]'), ('0', '{bad'), ('a', '{}'),
                      ('', '{}')):
    with pytest.raises(sweep.SweepError):
      sweep.members_from_strings(seeds, grid)


def test_cli_reports_static_key_in_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'lps_jax.vmap_sweep', '--config=experiments/configs/lps.py:test',
       f'--workdir={tmp_path}', '--seeds=0,1', '--sweep={"agent.horizon": [1, 2]}'],
      cwd=REPO, capture_output=True, text=True, timeout=60,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1].startswith(
      'error: agent.horizon cannot vary inside one vmapped program')
  assert not os.listdir(tmp_path)
