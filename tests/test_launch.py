"""Sweep launcher: spec expansion, bad specs, SLURM/TPU scripts, a local 2x2 grid, a vmap sweep."""
import csv
import json
import os
import pathlib
import subprocess
import sys

import pytest

from launch import spec as spec_lib
from launch import launcher as sweep_lib
from conftest import cli_env

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY_SPEC = """
SPEC = {
    'name': 'tiny',
    'config': 'experiments/configs/lps.py:test',
    'grid': {'agent.lr': [1e-3, 3e-4], 'agent.tau': [0.005, 0.05]},
    'seeds': [0],
    'flags': {'tensorboard': False},
    'metric': 'eval/reward',
}
"""




def write_spec(path, text=TINY_SPEC):
  path.write_text(text)
  return str(path)


def launcher(*args):
  return subprocess.Popen([sys.executable, '-m', 'launch.launcher', *args], cwd=REPO, env=cli_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
  monkeypatch.chdir(REPO)          # spec config paths are relative to where the launcher runs


# ---------------------------------------------------------------------------------- specs
def test_expand_grid_times_seeds(tmp_path):
  spec = spec_lib.load_spec(write_spec(tmp_path / 's.py', TINY_SPEC.replace("[0]", "[0, 1]")))
  runs = spec_lib.expand(spec)
  assert [r.name for r in runs][:3] == ['lr=0.001,tau=0.005,seed=0', 'lr=0.001,tau=0.005,seed=1',
                                         'lr=0.001,tau=0.05,seed=0']
  assert len(runs) == 8 and len({r.group for r in runs}) == 4
  args = spec_lib.main_args(spec, runs[1], '/w')
  assert args[:5] == ['--config=experiments/configs/lps.py:test', '--workdir=/w', '--seed=1',
                      '--resume', '--progress=false']
  assert '--config.agent.lr=0.001' in args and '--config.agent.tau=0.005' in args
  assert '--tensorboard=False' in args
  assert spec_lib.flag_value((64, 64)) == '(64,64)' and spec_lib.flag_value((8,)) == '(8,)'


def test_json_spec_and_collisions(tmp_path):
  path = tmp_path / 's.json'
  path.write_text(json.dumps({'config': 'experiments/configs/lps.py:test',
                              'grid': {'agent.lr': [0.1], 'lr': [0.2]}, 'seeds': [3]}))
  runs = spec_lib.expand(spec_lib.load_spec(str(path)))
  assert runs[0].name == 'agent.lr=0.1,lr=0.2,seed=3'     # ambiguous short names stay long


@pytest.mark.parametrize('text, message', [
    ("SPEC = {'config': 'experiments/configs/nope.py'}", 'config file experiments/configs/nope.py'),
    ("SPEC = {'config': 'experiments/configs/lps.py', 'gird': {}}", "unknown keys ['gird']"),
    ("SPEC = {'config': 'experiments/configs/lps.py', 'grid': {'agent.lr': 0.1}}",
     'must be a non-empty list'),
    ("SPEC = {'config': 'experiments/configs/lps.py', 'seeds': [-1]}", "'seeds' must be"),
    ("X = 1", 'defines neither SPEC nor get_spec()'),
])
def test_bad_specs_are_one_line_errors(tmp_path, text, message):
  with pytest.raises(spec_lib.LaunchError, match=message.replace('(', r'\(').replace(')', r'\)')
                     .replace('[', r'\[').replace(']', r'\]')):
    spec_lib.load_spec(write_spec(tmp_path / 's.py', text))


def test_every_run_is_validated_before_anything_starts(tmp_path):
  spec = write_spec(tmp_path / 's.py', TINY_SPEC.replace("'agent.tau'", "'agent.lrr'"))
  with pytest.raises(spec_lib.LaunchError, match='unknown config key config.agent.lrr'):
    sweep_lib.sweep(spec, 'local', str(tmp_path / 'out'))
  spec = write_spec(tmp_path / 's.py', TINY_SPEC.replace('[0.005, 0.05]', '[0.005, 2.0]'))
  with pytest.raises(spec_lib.LaunchError, match=r'run lr=0.001,tau=2,seed=0: config.agent.tau'):
    sweep_lib.sweep(spec, 'local', str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')


def test_slurm_and_tpu_scripts_are_written_not_run(tmp_path):
  spec = write_spec(tmp_path / 's.py')
  out = tmp_path / 'out'
  assert sweep_lib.sweep(spec, 'slurm', str(out), parallel=2) == 0
  script = (out / 'slurm' / 'sweep.sbatch').read_text()
  assert '#SBATCH --array=0-3%2' in script and '#SBATCH --requeue' in script
  assert '#SBATCH --signal=TERM@120' in script and 'scontrol requeue' in script
  lines = (out / 'slurm' / 'commands.tsv').read_text().splitlines()
  assert len(lines) == 4 and all('\t' in l and '--resume' in l for l in lines)
  assert sweep_lib.sweep(spec, 'tpu', str(out)) == 0
  tpu = (out / 'tpu' / 'launch.sh').read_text()
  assert tpu.count('\nrun ') == 4 and '--worker=all' in tpu and 'LPS_COORDINATOR_ADDRESS' in tpu
  for path in (out / 'slurm' / 'sweep.sbatch', out / 'tpu' / 'launch.sh'):
    assert subprocess.run(['bash', '-n', str(path)]).returncode == 0      # valid shell
  assert not os.path.exists(out / 'runs')                                 # nothing was run


def test_bad_flags_cli_is_one_line_exit_2(tmp_path):
  proc = launcher(f'--spec={tmp_path / "missing.py"}', f'--out={tmp_path / "o"}')
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 2
  assert err.strip() == f'error: spec file {tmp_path / "missing.py"} does not exist'


# ---------------------------------------------------------------------------------- running
@pytest.fixture(scope='module')
def sweeps(tmp_path_factory):
  """The tiny 2x2 grid as 4 local processes (2 at a time), and as one vmapped program."""
  root = tmp_path_factory.mktemp('sweeps')
  spec = write_spec(root / 'tiny.py')
  local = launcher(f'--spec={spec}', f'--out={root / "local"}', '--parallel=2')
  vmap = launcher(f'--spec={spec}', f'--out={root / "vmap"}', '--mode=vmap')
  results = {'local': (local.wait(timeout=300), *local.communicate()),
             'vmap': (vmap.wait(timeout=300), *vmap.communicate())}
  again = launcher(f'--spec={spec}', f'--out={root / "local"}', '--parallel=2')
  vmap_again = launcher(f'--spec={spec}', f'--out={root / "vmap"}', '--mode=vmap')
  results['again'] = (again.wait(timeout=120), *again.communicate())
  results['vmap_again'] = (vmap_again.wait(timeout=120), *vmap_again.communicate())
  return root, results


def read_table(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_local_grid_runs_and_collects_a_table(sweeps):
  root, results = sweeps
  rc, out, err = results['local']
  assert rc == 0, out + err
  rows = read_table(root / 'local' / 'results.csv')
  assert [r['name'] for r in rows] == ['lr=0.001,tau=0.005,seed=0', 'lr=0.001,tau=0.05,seed=0',
                                       'lr=0.0003,tau=0.005,seed=0', 'lr=0.0003,tau=0.05,seed=0']
  assert all(r['status'] == 'done' and r['step'] == '4' and r['seed'] == '0' for r in rows)
  assert json.loads(rows[2]['overrides']) == {'agent.lr': 0.0003, 'agent.tau': 0.005}
  assert rows[2]['agent.lr'] == '0.0003'
  assert all(r['eval/reward'] != '' and r['train/critic/loss'] != '' for r in rows)
  assert (root / 'local' / 'results.png').stat().st_size > 0
  for row in rows:
    run = root / 'local' / 'runs' / row['name']
    assert (run / 'launch.log').exists() and (run / 'final.json').exists()
    flags = json.loads((run / 'config.json').read_text())['config']['agent']
    assert flags['lr'] == json.loads(row['overrides'])['agent.lr']
  # Launching the same sweep again skips the finished runs.
  rc, out, _ = results['again']
  assert rc == 0 and out.count('[skip]') == 4


def test_vmap_mode_runs_one_program(sweeps):
  root, results = sweeps
  rc, out, err = results['vmap']
  assert rc == 0, out + err
  rows = read_table(root / 'vmap' / 'results.csv')
  assert len(rows) == 4 and all(r['status'] == 'done' for r in rows)
  assert all(r['eval/reward'] != '' for r in rows)
  assert sorted(os.listdir(root / 'vmap' / 'vmap'))[:5] == ['checkpoints', 'member_000',
                                                           'member_001', 'member_002',
                                                           'member_003']
  # The same command again resumes the sweep from its checkpoint: nothing is trained or
  # logged twice (a preempted vmapped sweep continues the same way).
  rc, out, err = results['vmap_again']
  assert rc == 0, out + err
  assert 'resuming the sweep' in err and 'from step 4' in err
  member = root / 'vmap' / 'vmap' / 'member_000'
  assert [r['step'] for r in read_table(member / 'train.csv')] == ['2', '4']
  assert [r['step'] for r in read_table(member / 'eval.csv')] == ['4']
  assert read_table(root / 'vmap' / 'results.csv') == rows
