"""experiments/ogbench_alpha.py end to end at a tiny size (generated puzzle-3x3 data, 2 episodes):
two alphas x one seed of QC-MFQL in one program, the CSV, the figure, a resumed rerun."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env
from lps_jax.data import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(REPO, 'experiments', 'ogbench_alpha.py')


@pytest.fixture(scope='module')
def puzzle_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp('puzzle')
  generate.generate_dataset('puzzle-3x3-play-v0', num_episodes=2, out_dir=str(out), seed=0,
                            workers=1, steps_per_episode=40, val_episodes=1, progress=False)
  return str(out)


def _run(*args):
  return subprocess.run([sys.executable, DRIVER, *args], capture_output=True, text=True,
                        env=cli_env(MUJOCO_GL='disable', PYTHONPATH=REPO), timeout=600)


def _rows(workdir, name='alpha.csv'):
  with open(os.path.join(workdir, name), newline='') as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def test_driver_writes_the_alpha_csv_and_figure_and_resumes(puzzle_dir, tmp_path):
  workdir = str(tmp_path / 'alpha')
  args = ['--domains=puzzle-3x3', '--agents=qcmfql', '--alphas=0.1,10', '--seeds=0',
          '--size=tiny', '--num_steps=4', '--steps_per_call=2', '--eval_episodes=1',
          '--eval_workers=0', '--support_states=8', f'--dataset_dir={puzzle_dir}',
          f'--workdir={workdir}']
  res = _run(*args)
  assert res.returncode == 0, res.stderr[-2000:]
  fields, rows = _rows(workdir)
  assert fields == ['agent', 'domain', 'task', 'alpha', 'seed', 'steps', 'success']
  assert sorted((r['agent'], r['domain'], r['task'], float(r['alpha']), r['seed'], r['steps'])
                for r in rows) == [('qcmfql', 'puzzle-3x3', '4', a, '0', '4') for a in (0.1, 10)]
  assert all(0.0 <= float(r['success']) <= 1.0 for r in rows)
  _, support = _rows(workdir, 'support.csv')
  assert len(support) == 2 and all(float(r['action_nn_dist']) >= 0 for r in support)
  assert len({r['data_nn_dist'] for r in support}) == 1
  assert os.path.getsize(os.path.join(workdir, 'alpha.png')) > 0
  assert '| qcmfql | 0.1 | 1 |' in open(os.path.join(workdir, 'table.md')).read()
  with open(os.path.join(workdir, 'summary.json')) as f:
    recorded = json.load(f)['flags']
  assert recorded['compute_dtype'] == 'float32' and recorded['size'] == 'tiny'
  # A rerun into the same workdir keeps the rows and trains nothing.
  res = _run(*args)
  assert res.returncode == 0, res.stderr[-2000:]
  assert 'already in alpha.csv, skipped' in res.stdout
  assert _rows(workdir)[1] == rows


def test_bad_flags_exit_2_with_one_line(tmp_path):
  for bad in ('--tasks=2', "--agent_alphas=rebrac=1"):
    res = _run(bad, f'--workdir={tmp_path}')
    assert res.returncode == 2 and 'Traceback' not in res.stderr, (bad, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1, (bad, res.stderr)
  assert not os.listdir(tmp_path)


def test_table_finds_the_alphas_a_decade_either_side_of_the_best():
  """Best alpha 3: its neighbours 0.3 and 30 are found although 3 * 0.1 != 0.3 in floats.
  (In a subprocess: the driver defines absl flags that other in-process modules also define.)"""
  code = """
import ogbench_alpha
rows = [{'agent': 'qcmfql', 'domain': 'cube-single', 'task': 2, 'alpha': alpha, 'seed': 0,
         'steps': 10, 'success': success}
        for alpha, success in ((0.3, 0.05), (3.0, 0.25), (30.0, 0.03))]
print(ogbench_alpha.table_markdown(rows, ['qcmfql'], ['cube-single']))
"""
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=os.path.join(REPO, 'experiments'), timeout=300,
                          env=cli_env(PYTHONPATH=REPO))
  assert result.returncode == 0, result.stderr[-2000:]
  assert '| qcmfql | 3 | 0.25 | 0.1x: 0.05, 10x: 0.03 | 0.03..0.25 |' in result.stdout, result.stdout
