"""End to end: the CLI trains a tiny config and writes its metrics, config and plot."""
import csv
import json
import os
import subprocess
import sys

from conftest import cli_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cli_runs_tiny_config_end_to_end(tmp_path):
  """300 steps of the tiny config (the compiled 2-step scan, ~150 calls): the critic learns.

  Measured (seed 3): critic/loss 0.55 at step 50 -> 0.022 at step 300.
  """
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, '-m', 'lps_jax.main', '--config=experiments/configs/lps.py:test',
       f'--workdir={workdir}', '--seed=3', '--noprogress', '--num_steps=300',
       '--log_interval=50', '--eval_interval=300', '--config.checkpoint_interval=300'],
      cwd=REPO, capture_output=True, text=True, timeout=300, env=cli_env())
  assert result.returncode == 0, result.stderr[-3000:]
  rows = list(csv.DictReader(open(workdir / 'train.csv')))
  assert [int(r['step']) for r in rows] == [50, 100, 150, 200, 250, 300]
  critic_loss = [float(r['critic/loss']) for r in rows]
  assert all(loss >= 0 for loss in critic_loss)
  # A learning signal, not only ranges: the TD error of the critic falls over training.
  assert critic_loss[-1] < 0.25 * critic_loss[0], critic_loss
  evals = list(csv.DictReader(open(workdir / 'eval.csv')))
  assert int(evals[-1]['step']) == 300 and 0 <= float(evals[-1]['reward']) <= 1
  saved = json.load(open(workdir / 'config.json'))
  assert saved['config']['agent']['agent_name'] == 'lps'
  assert os.path.exists(workdir / 'actions_00000300.png')
