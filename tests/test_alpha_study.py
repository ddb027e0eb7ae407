"""The alpha-sensitivity study: its core claim at small settings, and a CLI smoke test."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lps_jax import tasks
from lps_jax.data import dataset as dataset_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'experiments'))
import alpha_sensitivity as study  # pylint: disable=g-import-not-at-top,wrong-import-position

CLAIM_STEPS = 1500


def _train_and_eval(name, alpha=None, seed=0):
  config = study.agent_run_config(name, hidden_dims=(64, 64), batch_size=256)
  task = tasks.make_toy_task()
  data = dataset_lib.to_device(task.transitions, 1)
  runner = study.AgentRunner(name, config, task, data, steps_per_call=CLAIM_STEPS // 3)
  agent, _ = runner.train(runner.fresh(seed, alpha), CLAIM_STEPS)
  policy = runner.policy_fn(agent, seed)
  actions = policy(np.ones((512, 1), np.float32))
  return task.evaluate(policy, 512, seed), actions


@pytest.fixture(scope='module')
def fql_large_alpha():
  return _train_and_eval('fql', alpha=1000.0)


def test_toy_fql_large_alpha_stays_conservative(fql_large_alpha):
  """FQL at alpha = 1000 stays near behaviour cloning: spread over the rings, not on the arc."""
  fql, fql_actions = fql_large_alpha
  assert fql['on_arc'] < 0.2, fql
  assert np.std(np.arctan2(fql_actions[:, 1], fql_actions[:, 0])) > 1.0, fql


@pytest.mark.xfail(strict=True, reason=(
    'Blocked (issues 2 and 4, measured): with a 2-D action the spherical latent is a circle, and '
    'for the rotation-invariant rings the exact one-step MeanFlow map sends that circle to one '
    'radius between the rings (experiments/toy_decoder_study.py: sphere decoders cover the outer '
    'ring only by unstable symmetry breaking). The latent actor does steer to the arc angle, but '
    'the decoded radius flips between rings. strict: this fails CI the day LPS reaches the arc.'))
def test_toy_lps_reaches_arc_above_fql_large_alpha(fql_large_alpha):
  """The study's core claim: LPS (no alpha) reaches the reward-1 arc; FQL at alpha=1000 does not."""
  lps, _ = _train_and_eval('lps')
  fql, _ = fql_large_alpha
  assert lps['on_arc'] > 0.5, lps
  assert lps['reward'] > fql['reward'] + 0.2, (lps, fql)


def test_cli_smoke(tmp_path):
  workdir = tmp_path / 'study'
  cmd = [sys.executable, os.path.join(REPO, 'experiments', 'alpha_sensitivity.py'),
         f'--workdir={workdir}', '--alphas=1,100', '--seeds=0', '--agents=fql,lps',
         '--num_steps=4', '--steps_per_call=2', '--hidden_dims=16', '--batch_size=16',
         '--eval_episodes=32']
  result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(workdir / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['agent'], r['alpha']) for r in rows] == [('fql', '1.0'), ('fql', '100.0'),
                                                      ('lps', '')]
  for row in rows:
    assert 0.0 <= float(row['reward']) <= 1.0 and 0.0 <= float(row['out_of_support']) <= 1.0
  for name in ('reward_vs_alpha.png', 'actions_grid.png'):
    assert (workdir / name).stat().st_size > 1000, name
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['metric'] == 'reward' and len(summary['entries']) == 3


def test_cli_rejects_unknown_agent(tmp_path):
  cmd = [sys.executable, os.path.join(REPO, 'experiments', 'alpha_sensitivity.py'),
         f'--workdir={tmp_path}', '--agents=fql,nope']
  result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode != 0 and 'nope' in result.stderr
