"""Run directories (refuse/resume/overwrite); bad input: one stderr line, exit 2, no writes."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from experiments.configs import lps as lps_config
from lps_jax import config_lib, main, rundir
from conftest import cli_env

REPO = pathlib.Path(__file__).resolve().parents[1]
TEST_CONFIG = '--config=experiments/configs/lps.py:test'




def start_main(args, env=None):
  return subprocess.Popen([sys.executable, '-m', 'lps_jax.main', *args], cwd=REPO,
                          env=env or cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def run_all(commands):
  """Start every command at once (they are mostly interpreter start-up), then collect."""
  procs = {name: start_main(args, env) for name, (args, env) in commands.items()}
  return {name: (p.wait(timeout=180), *p.communicate()) for name, p in procs.items()}


def stderr_lines(err):
  return [line for line in err.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------- bad input
BAD_INPUTS = {
    # name: (extra args, env extras, text the single stderr line must contain)
    'unknown_agent': (['--config.agent.agent_name=nope'], {}, "unknown agent 'nope'"),
    'unknown_task': (['--config.task=cube-singel-play-singletask-task1-v0'], {}, 'unknown task'),
    'mistyped_key': (['--config.agent.lrr=1'], {}, 'unknown config key --config.agent.lrr'),
    'wrong_type': (['--config.agent.lr=fast'], {}, '--config.agent.lr=fast'),
    'negative_lr': (['--config.agent.lr=-0.001'], {}, 'config.agent.lr must be > 0'),
    'tau_out_of_range': (['--config.agent.tau=1.5'], {}, 'config.agent.tau must be in (0, 1]'),
    'horizon_zero': (['--config.agent.horizon=0'], {},
                     'config.agent.horizon must be an integer >= 1'),
    'batch_vs_devices': (['--config.agent.batch_size=15'],
                         {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'},
                         'must be divisible by the number of devices (2)'),
    'missing_dataset_dir': (['--config.task=cube-single-play-singletask-task1-v0',
                             '--config.dataset_dir=/nonexistent/ogbench'], {},
                            'dataset directory /nonexistent/ogbench does not exist'),
    'missing_npz': (['--config.task=npz:/nonexistent/data.npz'], {},
                    'no such .npz file /nonexistent/data.npz'),
    'missing_minari_dataset': (['--config.task=minari:nope/none-v0'],
                               {'MINARI_DATASETS_PATH': '/nonexistent/minari'},
                               "Minari dataset 'nope/none-v0' not found under /nonexistent"),
    'unknown_flag': (['--num_stepz=3'], {}, "Unknown command line flag 'num_stepz'"),
    'missing_config_file': (['--config=experiments/configs/nope.py'], {}, 'cannot load --config'),
}


@pytest.fixture(scope='module')
def bad_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('bad')
  commands = {name: ([TEST_CONFIG, f'--workdir={root / name}', *args], cli_env(**env))
              for name, (args, env, _) in BAD_INPUTS.items()}
  return root, run_all(commands)


@pytest.mark.parametrize('name', sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(bad_runs, name):
  root, results = bad_runs
  rc, _, err = results[name]
  lines = stderr_lines(err)
  assert rc == 2, err
  assert len(lines) == 1, err
  assert lines[0].startswith('error: ') and 'Traceback' not in err
  assert BAD_INPUTS[name][2] in lines[0]
  assert not os.path.exists(root / name)


def test_validate_names_the_key_in_process():
  """The same checks from Python (train_and_evaluate validates before touching the disk)."""
  config = lps_config.get_config('test')
  config.agent.discount = 1.5
  with pytest.raises(config_lib.ConfigError, match='config.agent.discount'):
    config_lib.validate(config)
  config = lps_config.get_config('test')
  with config.unlocked():
    config.agent.lrr = 1.0      # a typo from Python: caught against the agent's own config
  with pytest.raises(config_lib.ConfigError, match='did you mean config.agent.lr'):
    config_lib.validate(config)
  config = lps_config.get_config('test')
  config.agent.latent_prior = 'uniform'
  with pytest.raises(config_lib.ConfigError, match='config.agent.latent_prior'):
    config_lib.validate(config)
  config = lps_config.get_config('test')
  config.checkpoint_interval = -1     # any value >= 0 runs (intervals need not divide K)
  with pytest.raises(config_lib.ConfigError, match='config.checkpoint_interval must be'):
    config_lib.validate(config)


def test_train_and_evaluate_rejects_before_writing(tmp_path):
  config = lps_config.get_config('test')
  config.agent.tau = 0.0
  with pytest.raises(config_lib.ConfigError):
    main.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')


# ---------------------------------------------------------------------------------- rundir
def test_check_rules_without_jax(tmp_path):
  config = lps_config.get_config('test')
  assert rundir.check(str(tmp_path / 'new'), config, 0).mode == 'new'
  assert rundir.check(str(tmp_path / 'new'), config, 0, resume=True).mode == 'new'
  (tmp_path / 'logs_only').mkdir()
  (tmp_path / 'logs_only' / 'launch.log').write_text('launcher output\n')
  assert rundir.check(str(tmp_path / 'logs_only'), config, 0).mode == 'new'
  (tmp_path / 'other').mkdir()
  (tmp_path / 'other' / 'notes.txt').write_text('mine')
  with pytest.raises(rundir.RunDirError, match='not empty and holds no run'):
    rundir.check(str(tmp_path / 'other'), config, 0)
  with pytest.raises(rundir.RunDirError, match='mutually exclusive'):
    rundir.check(str(tmp_path / 'new'), config, 0, resume=True, overwrite=True)
  (tmp_path / 'file').write_text('x')
  with pytest.raises(rundir.RunDirError, match='not a directory'):
    rundir.check(str(tmp_path / 'file'), config, 0)
  assert (tmp_path / 'other' / 'notes.txt').read_text() == 'mine'


def test_config_diff_lists_dotted_keys():
  old = {'config': {'agent': {'lr': 3e-4, 'dims': (16, 16)}, 'num_steps': 4}, 'seed': 0}
  new = {'config': {'agent': {'lr': 1e-3, 'dims': [16, 16]}, 'num_steps': 4}, 'seed': 1}
  assert rundir.config_diff(old, new) == ['config.agent.lr: 0.0003 -> 0.001', 'seed: 0 -> 1']


@pytest.fixture(scope='module')
def existing_run(tmp_path_factory):
  """One finished tiny run, then: a plain restart, --resume with another lr, --resume with more
  steps (allowed), and finally --overwrite."""
  workdir = str(tmp_path_factory.mktemp('existing') / 'run')
  base = [TEST_CONFIG, f'--workdir={workdir}', '--progress=false', '--tensorboard=false']
  first = run_all({'first': (base, None)})['first']
  with open(os.path.join(workdir, 'config.json')) as f:
    saved_config = f.read()
  results = run_all({'again': (base, None),
                     'resume_other_config': (base + ['--resume', '--config.agent.lr=0.01',
                                                     '--seed=3'], None),
                     'resume_longer': (base + ['--resume', '--num_steps=6'], None)})
  results['first'] = first
  results['overwrite'] = run_all({'o': (base + ['--overwrite'], None)})['o']
  return workdir, saved_config, results


def test_existing_run_is_refused_without_flags(existing_run):
  workdir, _, results = existing_run
  assert results['first'][0] == 0, results['first'][2]
  rc, _, err = results['again']
  assert rc == 2 and len(stderr_lines(err)) == 1
  assert 'already holds a run; pass --resume' in err


def test_resume_with_another_config_names_the_keys(existing_run):
  _, _, results = existing_run
  rc, _, err = results['resume_other_config']
  assert rc == 2 and len(stderr_lines(err)) == 1, err
  assert 'config.agent.lr: 0.0003 -> 0.01' in err and 'seed: 0 -> 3' in err


def test_resume_may_extend_num_steps(existing_run):
  workdir, _, results = existing_run
  rc, _, err = results['resume_longer']
  assert rc == 0, err
  assert 'resuming' in err and 'from step 4' in err


def test_overwrite_moves_the_old_run_aside(existing_run):
  workdir, saved_config, results = existing_run
  rc, _, err = results['overwrite']
  assert rc == 0, err
  parent = os.path.dirname(workdir)
  moved = [n for n in os.listdir(parent) if n.startswith('run.old-')]
  assert len(moved) == 1 and moved[0] in err
  old = os.path.join(parent, moved[0])
  # The old run is intact: its config (with the resume record) and its 6-step checkpoint.
  assert json.load(open(os.path.join(old, 'config.json')))['resumes'][0]['changed'] == [
      'config.num_steps: 4 -> 6']
  assert '6' in os.listdir(os.path.join(old, 'checkpoints'))
  old_record = json.load(open(os.path.join(old, 'config.json')))
  assert json.loads(saved_config)['config'] == {**old_record['config'], 'num_steps': 4}
  # The new run started afresh.
  with open(os.path.join(workdir, 'config.json')) as f:
    record = json.load(f)
  assert record['resumes'] == [] and record['flags']['overwrite'] is True
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
