"""End to end: the CLI trains a tiny config and writes its metrics, config and plot."""
import csv
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cli_runs_tiny_config_end_to_end(tmp_path):
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, '-m', 'lps_jax.main', '--config=experiments/configs/lps.py:test',
       f'--workdir={workdir}', '--seed=3', '--noprogress'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = list(csv.DictReader(open(workdir / 'train.csv')))
  assert [int(r['step']) for r in rows] == [2, 4]
  assert all(float(r['critic/loss']) >= 0 for r in rows)
  evals = list(csv.DictReader(open(workdir / 'eval.csv')))
  assert int(evals[-1]['step']) == 4 and 0 <= float(evals[-1]['reward']) <= 1
  saved = json.load(open(workdir / 'config.json'))
  assert saved['config']['agent']['agent_name'] == 'lps'
  assert os.path.exists(workdir / 'actions_00000004.png')
