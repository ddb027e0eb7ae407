"""experiments/ogbench_grid.py end to end at a tiny size (generated cube-single data)."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env
from lps_jax.data import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(REPO, 'experiments', 'ogbench_grid.py')


@pytest.fixture(scope='module')
def cube_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp('cube')
  generate.generate_dataset('cube-single-play-v0', num_episodes=2, out_dir=str(out), seed=0,
                            workers=1, steps_per_episode=40, val_episodes=1, progress=False)
  return str(out)


def _run(*args):
  return subprocess.run([sys.executable, DRIVER, *args], capture_output=True, text=True,
                        env=cli_env(MUJOCO_GL='disable', PYTHONPATH=REPO), timeout=900)


def test_grid_trains_members_and_writes_outputs(cube_dir, tmp_path):
  workdir = str(tmp_path / 'grid')
  res = _run('--agents=lps', '--tasks=1,2', '--seeds=0..1', '--size=tiny', '--num_steps=6',
             '--steps_per_call=2', '--eval_at=2,6', '--eval_episodes=2', '--eval_workers=0',
             f'--dataset_dir={cube_dir}', f'--workdir={workdir}')
  assert res.returncode == 0, res.stderr[-2000:]
  rows = list(csv.DictReader(open(os.path.join(workdir, 'success.csv'))))
  assert sorted((r['task'], r['seed'], r['step']) for r in rows) == sorted(
      (t, s, st) for t in '12' for s in '01' for st in ('2', '6'))
  assert all(r['agent'] == 'lps' and r['episodes'] == '2' for r in rows)
  summary = json.load(open(os.path.join(workdir, 'summary.json')))
  lps = summary['agents'][0]
  assert lps['members'] == 4 and lps['steps_reached'] == 6 and lps['horizon'] == 5
  assert summary['evaluations_done'] == 8 and summary['evaluations_pending'] == 0
  table = open(os.path.join(workdir, 'table.md')).read()
  assert '| lps | all (1,2) | 6 | 2 |' in table and '0.95' in table
  assert os.path.getsize(os.path.join(workdir, 'curves.png')) > 0


def test_time_budget_stops_at_the_first_call_boundary(cube_dir, tmp_path):
  workdir = str(tmp_path / 'budget')
  res = _run('--agents=fql', '--tasks=2', '--seeds=0', '--size=tiny', '--num_steps=100',
             '--steps_per_call=2', '--eval_at=50', '--eval_episodes=1', '--eval_workers=0',
             '--time_budget_s=0.001', f'--dataset_dir={cube_dir}', f'--workdir={workdir}')
  assert res.returncode == 0, res.stderr[-2000:]
  summary = json.load(open(os.path.join(workdir, 'summary.json')))
  assert summary['agents'][0]['steps_reached'] == 2 and summary['agents'][0]['horizon'] == 1
  rows = list(csv.DictReader(open(os.path.join(workdir, 'success.csv'))))
  assert [(r['agent'], r['step']) for r in rows] == [('fql', '2')]


def test_bad_flags_exit_2_with_one_line(tmp_path):
  res = _run('--eval_at=1500', '--steps_per_call=1000', f'--workdir={tmp_path}')
  assert res.returncode == 2 and 'Traceback' not in res.stderr
  assert len(res.stderr.strip().splitlines()) == 1 and 'eval_at' in res.stderr
