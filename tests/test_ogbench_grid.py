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


def _trained(tmp_path_factory, name, *args):
  """Run the driver with args into a fresh workdir, which it must leave with exit 0."""
  workdir = str(tmp_path_factory.mktemp(name))
  res = _run(*args, f'--workdir={workdir}')
  assert res.returncode == 0, res.stderr[-2000:]
  return workdir


@pytest.fixture(scope='module')
def lps_grid(cube_dir, tmp_path_factory):
  """LPS, tasks 1,2 x seeds 0,1, evaluated inline at steps 2 and 6, params saved."""
  return _trained(tmp_path_factory, 'grid', '--agents=lps', '--tasks=1,2', '--seeds=0..1',
                  '--size=tiny', '--num_steps=6', '--steps_per_call=2', '--eval_at=2,6',
                  '--eval_episodes=2', '--eval_workers=0', '--save_params',
                  f'--dataset_dir={cube_dir}')


@pytest.fixture(scope='module')
def fql_budget(cube_dir, tmp_path_factory):
  """FQL with a tiny time budget: stops after its first call of 2 steps. Chunks of 2 and its
  learning rate set by --set."""
  return _trained(tmp_path_factory, 'budget', '--agents=fql', '--tasks=2', '--seeds=0',
                  '--size=tiny', '--num_steps=100', '--steps_per_call=2', '--eval_at=50',
                  '--eval_episodes=1', '--eval_workers=0', '--time_budget_s=0.001',
                  '--set=agent.horizon=2', '--set=agent.lr=1e-4', f'--dataset_dir={cube_dir}')


def _rows(workdir):
  return list(csv.DictReader(open(os.path.join(workdir, 'success.csv'))))


def test_grid_trains_members_and_writes_outputs(lps_grid):
  workdir = lps_grid
  rows = _rows(workdir)
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
  assert sorted(f for f in os.listdir(workdir) if f.startswith('params_')) == [
      'params_lps_2.npz', 'params_lps_6.npz']


def test_saved_params_evaluate_to_the_same_numbers(lps_grid, tmp_path):
  """Train on one machine, evaluate on another: --evaluate_saved reproduces the inline eval."""
  workdir = str(tmp_path / 'saved')
  res = _run(f'--evaluate_saved={lps_grid}', '--eval_episodes=2', '--eval_workers=0',
             f'--workdir={workdir}')
  assert res.returncode == 0, res.stderr[-2000:]
  key = lambda r: (r['task'], r['seed'], r['step'])
  inline, saved = sorted(_rows(lps_grid), key=key), sorted(_rows(workdir), key=key)
  assert len(saved) == 8
  for a, b in zip(inline, saved):
    assert key(a) == key(b) and float(a['return']) == float(b['return'])
    assert a['success'] == b['success'] and a['episode_length'] == b['episode_length']
  summary = json.load(open(os.path.join(workdir, 'summary.json')))
  assert summary['agents'][0]['steps_reached'] == 6   # the training run's summary, carried
  assert '| lps | all (1,2) | 6 | 2 |' in open(os.path.join(workdir, 'table.md')).read()


def test_time_budget_stops_at_the_first_call_boundary(fql_budget):
  summary = json.load(open(os.path.join(fql_budget, 'summary.json')))
  assert summary['agents'][0]['steps_reached'] == 2
  assert [(r['agent'], r['step']) for r in _rows(fql_budget)] == [('fql', '2')]


def test_set_overrides_reach_the_trained_config_and_the_resume_record(fql_budget):
  fql = json.load(open(os.path.join(fql_budget, 'summary.json')))['agents'][0]
  assert fql['horizon'] == 2 and fql['set'] == ['agent.horizon=2', 'agent.lr=1e-4']  # FQL: h=1
  grid = json.load(open(os.path.join(fql_budget, 'grid.json')))
  assert grid['flags']['set'] == ['agent.horizon=2', 'agent.lr=1e-4']


def test_merge_combines_runs_and_refuses_overlaps(lps_grid, fql_budget, tmp_path):
  merged = str(tmp_path / 'merged')
  res = _run(f'--merge={lps_grid},{fql_budget}', f'--workdir={merged}')
  assert res.returncode == 0, res.stderr[-2000:]
  assert len(_rows(merged)) == 9 and {r['agent'] for r in _rows(merged)} == {'lps', 'fql'}
  table = open(os.path.join(merged, 'table.md')).read()
  assert '| lps | all (1,2) | 6 | 2 |' in table and '| fql | 2 | 2 | 1 |' in table
  res = _run(f'--merge={lps_grid},{lps_grid}', f'--workdir={tmp_path / "twice"}')
  assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
  assert 'share' in res.stderr and 'Traceback' not in res.stderr
  res = _run(f'--evaluate_saved={tmp_path}', f'--workdir={tmp_path / "none"}')
  assert res.returncode == 2 and 'no params_' in res.stderr
  assert len(res.stderr.strip().splitlines()) == 1


def test_bad_flags_exit_2_with_one_line(tmp_path):
  res = _run('--eval_at=1500', '--steps_per_call=1000', f'--workdir={tmp_path}')
  assert res.returncode == 2 and 'Traceback' not in res.stderr
  assert len(res.stderr.strip().splitlines()) == 1 and 'eval_at' in res.stderr


def test_saved_params_round_trip_every_member(tmp_path):
  """save_params / load_params keep each (task, seed) member's params and the run's meta."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lps_jax import config_lib, multitask  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(
      os.path.join(REPO, 'experiments', 'configs', 'lps.py') + ':test').agent
  agents = multitask.create_agents(config, [3, 7], 2, 6, config.horizon * 2)
  host = multitask.host_params(agents)
  path = str(tmp_path / 'params_lps_4.npz')
  multitask.save_params(path, host, {'agent': 'lps', 'tasks': [1, 2], 'seeds': [3, 7]})
  loaded, meta = multitask.load_params(path)
  assert meta == {'agent': 'lps', 'tasks': [1, 2], 'seeds': [3, 7]}
  import jax  # pylint: disable=g-import-not-at-top
  for t in range(2):
    for s in range(2):
      want = jax.tree.leaves(multitask.member_params(host, t, s))
      got = jax.tree.leaves(multitask.member_params(loaded, t, s))
      assert len(want) == len(got) and all(np.array_equal(a, b) for a, b in zip(want, got))
  seed3, seed7 = (jax.tree.leaves(multitask.member_params(loaded, 0, s)) for s in (0, 1))
  assert not all(np.array_equal(a, b) for a, b in zip(seed3, seed7))   # members differ


GRID_ARGS = ['--agents=lps', '--tasks=1,2', '--seeds=0..1', '--size=tiny', '--num_steps=6',
             '--steps_per_call=2', '--eval_at=2,6', '--eval_episodes=2', '--eval_workers=0',
             '--save_params']        # the lps_grid fixture's flags


def _run_with_fault(fault, *args):
  env = cli_env(MUJOCO_GL='disable', PYTHONPATH=REPO,
                **({'LPS_JAX_FAULT_AT_STEP': fault} if fault else {}))
  return subprocess.run([sys.executable, DRIVER, *args], capture_output=True, text=True,
                        env=env, timeout=900)


@pytest.fixture(scope='module')
def resumed_grid(cube_dir, tmp_path_factory):
  """lps_grid's command in three stages: --noevaluate, stopped by SIGTERM at step 4 (eval
  point 2 recorded, not evaluated); --resume, killed (-9) at step 6 right after the train
  rows of eval point 6 were written, before its checkpoint; --resume to the end."""
  workdir = str(tmp_path_factory.mktemp('resumed'))
  args = GRID_ARGS + [f'--dataset_dir={cube_dir}', f'--workdir={workdir}']
  stages = [_run_with_fault('4:TERM', *args, '--noevaluate'),
            _run_with_fault('rows6:KILL', *args, '--resume'),
            _run_with_fault(None, *args, '--resume')]
  return workdir, stages


def _file(workdir, name):
  with open(os.path.join(workdir, name)) as f:
    return f.read()


def test_grid_resumes_after_sigterm_without_redoing_or_losing_rows(lps_grid, resumed_grid):
  import numpy as np  # pylint: disable=g-import-not-at-top
  workdir, (first, second, third) = resumed_grid
  assert [stage.returncode for stage in (first, second, third)] == [75, -9, 0], third.stderr
  # Every row once, equal to the uninterrupted grid's (success.csv is sorted; train.csv in
  # the order the eval points were reached), and the same params at both eval points.
  assert _file(workdir, 'success.csv') == _file(lps_grid, 'success.csv')
  assert _file(workdir, 'train.csv') == _file(lps_grid, 'train.csv')
  for step in (2, 6):
    with np.load(os.path.join(workdir, f'params_lps_{step}.npz')) as got, \
        np.load(os.path.join(lps_grid, f'params_lps_{step}.npz')) as want:
      assert sorted(got.files) == sorted(want.files)
      for key in want.files:
        if key != '__meta__':
          np.testing.assert_array_equal(got[key], want[key])
  assert first.returncode == 75, first.stderr[-2000:]
  last = first.stderr.strip().splitlines()[-1]
  assert last.startswith('preempted: SIGTERM at step 4 of lps: saved the checkpoint')
  assert last.endswith(f'--workdir={workdir} --noevaluate --resume')   # the same command
  assert 'resumed from the checkpoint at step 4' in second.stdout
  # Step 2 was never evaluated: redone from its checkpoint (kept for its eval point).
  assert 'redoing the evaluations of step 2' in second.stdout
  # Killed before the checkpoint of step 6: steps 4..6 are trained again (their train rows,
  # already written, are not written twice); step 2's evaluations are done: not redone.
  assert 'resumed from the checkpoint at step 4' in third.stdout
  assert 'evaluations of step 2' not in third.stdout
  summary = json.load(open(os.path.join(workdir, 'summary.json')))
  assert summary['agents'][0]['steps_reached'] == 6
  assert summary['agents'][0]['resumed_from_step'] == 4
  grid = json.load(open(os.path.join(workdir, 'grid.json')))
  assert len(grid['resumes']) == 2 and list(grid['finished']) == ['lps']
  # Without --resume the grid is refused, and nothing is written.
  before = sorted(os.listdir(workdir))
  res = _run_with_fault(None, *GRID_ARGS, f'--dataset_dir={cube_dir_of(lps_grid)}',
                        f'--workdir={workdir}')
  assert res.returncode == 2 and 'already holds a grid; pass --resume' in res.stderr
  assert sorted(os.listdir(workdir)) == before and not os.path.exists(workdir + '.lock')


def cube_dir_of(workdir):
  return json.load(open(os.path.join(workdir, 'summary.json')))['flags']['dataset_dir']
