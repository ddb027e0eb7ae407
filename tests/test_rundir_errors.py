"""Run directories (refuse/resume/overwrite); bad input: one stderr line, exit 2, no writes."""
import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import lps as lps_config
from lps_jax import checkpoint, config_lib, main, metrics_log, rundir
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
DEFAULT = '<default config>'     # marker: run without --config
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
    # No --config flag: config_flags applies overrides to the default config at import time.
    'default_config_unknown_key': ([DEFAULT, '--config.agent.nonexistent_key=3'], {},
                                   'unknown config key --config.agent.nonexistent_key; the keys '
                                   'of config.agent are: activation,'),
    'default_config_close_key': ([DEFAULT, '--config.agent.lrr=3'], {},
                                 'unknown config key --config.agent.lrr; did you mean '
                                 '--config.agent.lr?'),
    'workdir_under_a_file': (['--workdir={root}/a_file/run'], {}, 'is a regular file'),
    'workdir_under_proc': (['--workdir=/proc/lps_jax_test/run'], {}, 'cannot be created'),
}


@pytest.fixture(scope='module')
def bad_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('bad')
  (root / 'a_file').write_text('a regular file')

  def argv(name, args):
    config = [] if DEFAULT in args else [TEST_CONFIG]
    return [*config, f'--workdir={root / name}',
            *[a.replace('{root}', str(root)) for a in args if a != DEFAULT]]

  commands = {name: (argv(name, args), cli_env(**env))
              for name, (args, env, _) in BAD_INPUTS.items()}
  # A SIGTERM as the CLI starts (before any work): nothing to save, exit 75, nothing written.
  commands['sigterm_at_start'] = ([TEST_CONFIG, f'--workdir={root / "sigterm_at_start"}'],
                                  cli_env(LPS_JAX_FAULT_AT_STEP='start:TERM'))
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
  assert not os.path.exists(root / name) and not os.path.exists(root / f'{name}.lock')


def test_sigterm_before_the_run_started_says_nothing_to_save_and_exits_75(bad_runs):
  root, results = bad_runs
  rc, _, err = results['sigterm_at_start']
  lines = stderr_lines(err)
  assert rc == 75, err
  assert len(lines) == 1 and lines[0].startswith('preempted: ') and 'nothing to save' in err
  assert not os.path.exists(root / 'sigterm_at_start')


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
  # One at a time: each takes the workdir lock, so started together they would refuse each other.
  results = {}
  for name, args in (('again', base),
                     ('resume_other_config', base + ['--resume', '--config.agent.lr=0.01',
                                                     '--seed=3']),
                     ('resume_longer', base + ['--resume', '--num_steps=6'])):
    results[name] = run_all({name: (args, None)})[name]
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


# ---------------------------------------------------------------------------------- one writer
WRITER_ARGS = [TEST_CONFIG, '--num_steps=8', '--progress=false', '--tensorboard=false']


def wait_until_stopped(proc, timeout=240):
  """Wait until `proc` stopped itself (SIGSTOP: state T in /proc/<pid>/stat)."""
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise AssertionError(f'the first writer exited ({proc.returncode}) before stopping: '
                           f'{proc.communicate()[1][-2000:]}')
    with open(f'/proc/{proc.pid}/stat') as f:
      if f.read().rsplit(')', 1)[1].split()[0] == 'T':
        return
    time.sleep(0.2)
  raise AssertionError('the first writer never reached step 4')


@pytest.fixture(scope='module')
def two_writers(tmp_path_factory):
  """Run A stops itself (SIGSTOP) at step 4 while holding its workdir; then a fresh run, a
  --resume and an --overwrite on the same workdir are started; A gets SIGTERM + SIGCONT
  (checkpoint, exit 75) and is resumed to the end. `ref` is the same run undisturbed."""
  root = tmp_path_factory.mktemp('writers')
  run, ref = str(root / 'run'), str(root / 'ref')
  first = start_main(WRITER_ARGS + [f'--workdir={run}'], cli_env(LPS_JAX_FAULT_AT_STEP='4:STOP'))
  ref_proc = start_main(WRITER_ARGS + [f'--workdir={ref}'])
  try:
    wait_until_stopped(first)
    base = WRITER_ARGS + [f'--workdir={run}']
    seconds = run_all({'fresh': (base, None), 'resume': (base + ['--resume'], None),
                       'overwrite': (base + ['--overwrite'], None)})
    listing = sorted(os.listdir(root))
    os.kill(first.pid, signal.SIGTERM)
    os.kill(first.pid, signal.SIGCONT)
    first_result = (first.wait(timeout=180), *first.communicate())
  finally:
    if first.poll() is None:
      first.kill()
      first.wait()
  resumed = run_all({'resumed': (base + ['--resume'], None)})['resumed']
  ref_result = (ref_proc.wait(timeout=300), *ref_proc.communicate())
  return dict(run=run, ref=ref, pid=first.pid, first=first_result, seconds=seconds,
              listing=listing, resumed=resumed, ref_result=ref_result)


def test_second_writer_is_refused_while_the_first_is_alive(two_writers):
  for name in ('fresh', 'resume', 'overwrite'):
    rc, _, err = two_writers['seconds'][name]
    lines = stderr_lines(err)
    assert rc == 2 and len(lines) == 1, (name, err)
    assert f'is in use by pid {two_writers["pid"]} on host' in lines[0], (name, err)
  # --overwrite did not move the live run aside.
  assert [n for n in two_writers['listing'] if n.startswith('run')] == ['run', 'run.lock']


def test_first_writer_is_undisturbed_and_resumes_bit_identically(two_writers):
  run, ref = two_writers['run'], two_writers['ref']
  rc, _, err = two_writers['first']
  assert rc == 75 and 'SIGTERM at step 4' in err, err
  rc, _, err = two_writers['resumed']
  assert rc == 0 and 'from step 4' in err, err
  assert two_writers['ref_result'][0] == 0, two_writers['ref_result'][2]
  assert not os.path.exists(run + '.lock') and not os.path.exists(ref + '.lock')
  got, step = checkpoint.load_state_dict(os.path.join(run, 'checkpoints'))
  expected, _ = checkpoint.load_state_dict(os.path.join(ref, 'checkpoints'))
  assert step == 8
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
  for name in ('eval.csv', 'final.json'):
    assert os.path.exists(os.path.join(run, name))
  with open(os.path.join(run, 'eval.csv'), 'rb') as a, open(os.path.join(ref, 'eval.csv'),
                                                             'rb') as b:
    assert a.read() == b.read()
  # train.csv and metrics.jsonl: identical but for the wall-clock column and the run id.
  run_id = json.load(open(os.path.join(run, 'config.json')))['run_id']
  rows = {}
  for name, d in (('run', run), ('ref', ref)):
    lines = [json.loads(line) for line in open(os.path.join(d, 'metrics.jsonl'))]
    assert len({row.pop('run') for row in lines}) == 1          # one run per file
    rows[name] = [{k: v for k, v in row.items() if k != 'steps_per_second'} for row in lines]
  assert rows['run'] == rows['ref'] and [r['step'] for r in rows['run']] == [2, 4, 4, 6, 8, 8]
  assert {json.loads(line)['run'] for line in open(os.path.join(run, 'metrics.jsonl'))} == {run_id}
  csv_lines = lambda d: open(os.path.join(d, 'train.csv')).read().splitlines()
  assert csv_lines(run)[0].endswith(',steps_per_second')
  assert ([l.rsplit(',', 1)[0] for l in csv_lines(run)]
          == [l.rsplit(',', 1)[0] for l in csv_lines(ref)])


# ---------------------------------------------------------------------------------- no row lost
def _log_files(workdir):
  return {name: open(os.path.join(workdir, name)).read()
          for name in ('train.csv', 'eval.csv', 'metrics.jsonl')}


def _logged_run(workdir, checkpoints: bool):
  """A run directory of the test config with rows logged up to step 4 and no checkpoint:
  no checkpoints/ at all (deleted, or never copied with the logs), or an empty one (the
  run was killed before its first save)."""
  config = lps_config.get_config('test')
  rundir.prepare(rundir.check(workdir, config, 0), config, 0)
  logger = metrics_log.MetricsLogger(workdir, run_id='old')
  for step in (2, 4):
    logger.write('train', step, {'critic/loss': 1.0 / step})
  logger.write('eval', 4, {'reward': 0.25})
  if checkpoints:
    os.mkdir(os.path.join(workdir, 'checkpoints'))
  return _log_files(workdir)


def test_resume_without_checkpoints_refuses_or_sets_the_rows_aside(tmp_path):
  """--resume of a run whose checkpoints/ is gone is refused (one line, nothing changed);
  with an empty checkpoints/ it starts again at step 0 and the rows it had logged are moved
  to set_aside/, never deleted."""
  gone, empty = str(tmp_path / 'gone'), str(tmp_path / 'empty')
  logged = {'gone': _logged_run(gone, False), 'empty': _logged_run(empty, True)}
  results = run_all({name: ([TEST_CONFIG, f'--workdir={d}', '--resume', '--progress=false',
                             '--tensorboard=false'], None)
                     for name, d in (('gone', gone), ('empty', empty))})
  rc, _, err = results['gone']
  lines = stderr_lines(err)
  assert rc == 2 and len(lines) == 1, err
  assert 'holds 3 logged rows (up to step 4)' in lines[0]
  assert 'no checkpoints/ directory' in lines[0] and 'pass --overwrite' in lines[0]
  assert _log_files(gone) == logged['gone'] and not os.path.exists(gone + '.lock')
  assert sorted(os.listdir(gone)) == ['config.json', 'eval.csv', 'metrics.jsonl', 'train.csv']

  rc, _, err = results['empty']
  assert rc == 0, err
  assert 'from step 0 (moved the 6 metric rows logged after it to' in err
  (aside,) = os.listdir(os.path.join(empty, 'set_aside'))
  assert aside.startswith('after_step_0.')
  assert _log_files(os.path.join(empty, 'set_aside', aside)) == logged['empty']  # every row
  assert [r['step'] for r in metrics_log.read_rows(empty, 'train')] == [2, 4]    # new rows
  assert metrics_log.read_rows(empty, 'train')[0]['critic/loss'] != 0.5


def test_sigterm_while_the_main_thread_is_busy_starting_up_exits_75_at_once(tmp_path):
  """The SIGTERM comes while the run is building (after the lock was taken) and the main
  thread then stays busy for 10 minutes, as inside a long XLA compile: the watchdog still
  ends the process with exit 75 and one line, and releases the lock."""
  workdir = str(tmp_path / 'run')
  proc = start_main([TEST_CONFIG, f'--workdir={workdir}', '--progress=false'],
                    cli_env(LPS_JAX_FAULT_AT_STEP='built:TERM+HANG'))
  try:
    _, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  lines = stderr_lines(err)
  assert proc.returncode == 75, err
  assert len(lines) == 1 and lines[0].startswith('preempted: SIGTERM while starting up')
  assert not os.path.exists(workdir) and not os.path.exists(workdir + '.lock')
