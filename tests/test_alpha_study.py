"""The alpha-sensitivity study's CLI (its claims are the gates in tests/test_toy_gates.py)."""
import csv
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
