"""The bad-input list (docs/bad_input.md): one stderr line, exit 2, no traceback, nothing
written. Most cases are checked in process on the validating function; a few CLI wirings run
as subprocesses, all started at once."""
import json
import os
import pathlib
import sys
import warnings

import numpy as np
import pytest

from experiments.configs import lps as lps_config
from launch import launcher as launcher_lib
from launch import spec as spec_lib
from lps_jax import cli, config_lib, main, rundir, tasks, vmap_sweep
from lps_jax.data import dataset as dataset_lib
from lps_jax.data import generate, npz_task
from conftest import cli_env, random_transitions, run_at_once

REPO = pathlib.Path(__file__).resolve().parents[1]
TEST_CONFIG = '--config=experiments/configs/lps.py:test'


def run_config(task='toy'):
  config = lps_config.get_config('test')
  config.task = task
  return config


# ---------------------------------------------------------------------------------- npz files
def _save(name, **changes):
  return lambda root: np.savez(root / name, **{**random_transitions(), **changes})


def _write_bytes(name, data):
  return lambda root: (root / name).write_bytes(data)


_T = random_transitions()
# name: (file name, writer, text the one-line error must contain)
BAD_NPZ = {
    'npy_file': ('x.npy', lambda root: np.save(root / 'x.npy', _T['observations']),
                 'is a .npy file (one array)'),
    'text_file': ('text.npz', _write_bytes('text.npz', b'hello\n'),
                  'is not an .npz archive (not a zip file)'),
    'object_dtype': ('obj.npz', _save('obj.npz', rewards=_T['rewards'].astype(object)),
                     'rewards has dtype object (Python objects)'),
    'text_dtype': ('str.npz', _save('str.npz', rewards=np.array(['a'] * 60)),
                   'rewards has dtype <U1 (text)'),
    'complex_dtype': ('cplx.npz', _save('cplx.npz', actions=_T['actions'].astype(np.complex64)),
                      'actions has dtype complex64 (complex numbers)'),
    'no_action_features': ('a0.npz', _save('a0.npz', actions=np.zeros((60, 0), np.float32)),
                           'actions has shape (60, 0): no features'),
    'no_observation_features': ('o0.npz', _save('o0.npz',
                                                observations=np.zeros((60, 0), np.float32),
                                                next_observations=np.zeros((60, 0), np.float32)),
                                'observations has shape (60, 0): no features'),
    'masks_outside_0_1': ('masks.npz', _save('masks.npz', masks=_T['masks'] * 2),
                          'masks must be in [0, 1]'),
    'terminals_7': ('term7.npz', _save('term7.npz', terminals=_T['terminals'] * 7),
                    'terminals must be 0 or 1 (1 on the last row of an episode), got 6 other '
                    'values, e.g. 7'),
    'actions_1.0001': ('a1.npz', _save('a1.npz', actions=np.full((60, 2), 1.0001, np.float32)),
                       'actions outside [-1, 1] (max |a| = 1.0001)'),
}


@pytest.fixture(scope='module')
def npz_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('npz')
  for _, write, _ in BAD_NPZ.values():
    write(root)
  _save('zero_terminals.npz', terminals=np.zeros(60, np.float32))(root)
  return root


@pytest.mark.parametrize('name', sorted(BAD_NPZ))
def test_bad_npz_file_is_one_line_dataset_error(npz_root, name):
  """Refused by the task's checks (before any run starts) or by loading it (before anything is
  written), with no numpy warning on the way (RuntimeWarning, ComplexWarning)."""
  filename, _, expected = BAD_NPZ[name]
  path = str(npz_root / filename)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    with pytest.raises(dataset_lib.DatasetError) as error:
      tasks.check_config(run_config(f'npz:{path}'))
      npz_task.load_transitions(path)
  message = str(error.value)
  assert expected in message and '\n' not in message and 'pickled' not in message


def test_all_zero_terminals_warn_in_one_line_and_load(npz_root, capsys):
  transitions = npz_task.load_transitions(str(npz_root / 'zero_terminals.npz'))
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith('warning: ') and 'one episode' in lines[0]
  assert len(transitions['rewards']) == 60


# ---------------------------------------------------------------------------------- numbers
def test_seed_beyond_the_prng_is_refused_before_anything_is_written(tmp_path):
  assert cli.seed_error(cli.MAX_SEED) is None and cli.seed_error(0) is None
  for seed in (2**32, 2**63, -1):
    assert f'[0, {cli.MAX_SEED}]' in cli.seed_error(seed)
    with pytest.raises(main.UsageError, match='the PRNG takes 32-bit seeds'):
      main.train_and_evaluate(run_config(), str(tmp_path / 'w'), seed=seed)
    with pytest.raises(vmap_sweep.SweepError, match=r'--seeds must be an integer in \[0, '):
      vmap_sweep.members_from_strings(f'0,{seed}', '{}')
  assert not os.path.exists(tmp_path / 'w') and not os.path.exists(tmp_path / 'w.lock')


def test_num_steps_beyond_int32_is_refused_before_anything_is_written(tmp_path):
  config = run_config()
  config.num_steps = 10**20
  with pytest.raises(config_lib.ConfigError, match=r'config.num_steps must be <= 2147483647'):
    main.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')
  config.num_steps = config_lib.MAX_STEPS
  config_lib.validate(config)


def test_generate_refuses_non_finite_noise():
  for noise in (float('inf'), float('nan'), -0.1):
    with pytest.raises(generate.GenerateError, match='--noise must be finite and >= 0'):
      generate.check_settings(1, 10, 1, noise=noise)
  with pytest.raises(generate.GenerateError, match='--p_random_action must be in'):
    generate.check_settings(1, 10, 1, p_random_action=float('nan'))


# ---------------------------------------------------------------------------------- config
@pytest.mark.parametrize('key', ['flow_hidden_dims', 'critic_hidden_dims', 'actor_hidden_dims'])
def test_scalar_for_a_tuple_key_is_refused(key):
  config = run_config()
  argv = ['main', TEST_CONFIG, f'--config.agent.{key}=5']
  error = cli.tuple_override_error(argv, config)
  assert error == (f"--config.agent.{key}=5: config.agent.{key} is a tuple; give a tuple, e.g. "
                   f"--config.agent.{key}='(5,)' for one element")
  for value in ('(5,)', '5,5', '[16,16]', '(16, 16)'):
    assert cli.tuple_override_error(['main', f'--config.agent.{key}={value}'], config) is None
  assert cli.tuple_override_error(['main', '--config.agent.lr=5'], config) is None


def test_config_file_that_does_not_load_is_one_line(tmp_path, monkeypatch, capsys):
  """What vmap_sweep (and main) get from cli.parse_flags: the default config, relative to the
  repository, run from another directory; config_flags only fails at first use."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(sys, 'argv', ['vmap_sweep'])
  flag_values = flags.FlagValues()
  cli.define_config_file('config', 'experiments/configs/lps.py', 'config', flag_values)
  with pytest.raises(SystemExit) as exit_:
    cli.parse_flags(['vmap_sweep'], flag_values)
  err = capsys.readouterr().err
  assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
  assert err.startswith('error: cannot load --config=experiments/configs/lps.py: [Errno 2]')
  assert f'read from the current directory {tmp_path}' in err


# ---------------------------------------------------------------------------------- workdirs
def test_unrelated_config_json_is_not_called_a_run(tmp_path):
  (tmp_path / 'w').mkdir()
  (tmp_path / 'w' / 'config.json').write_text(json.dumps({'name': 'my project'}))
  for resume in (False, True):
    with pytest.raises(rundir.RunDirError, match='holds a config.json that is not a run record'):
      rundir.check(str(tmp_path / 'w'), run_config(), 0, resume=resume)
  assert rundir.check(str(tmp_path / 'w'), run_config(), 0, overwrite=True).mode == 'overwrite'


def test_unreadable_run_and_sweep_records_are_one_line_and_left_alone(tmp_path):
  """A truncated config.json / sweep.json, or a sweep.json that is no sweep record: one line
  naming the file and the remedy; the file is not touched."""
  from lps_jax import sweep_checkpoint  # pylint: disable=g-import-not-at-top
  cases = [('run', 'config.json', '{"config": {', 'is unreadable (JSONDecodeError); fix it or '
            'pass --overwrite', lambda d: rundir.check(d, run_config(), 0, resume=True)),
           ('sweep', 'sweep.json', '{"members": [', 'is unreadable (JSONDecodeError); choose '
            'another --workdir', lambda d: sweep_checkpoint.check_dir(d, run_config(), [{}], True)),
           ('list', 'sweep.json', '[1, 2]', 'is not a sweep record; choose another --workdir',
            lambda d: sweep_checkpoint.check_dir(d, run_config(), [{}], True))]
  for name, file, text, message, check in cases:
    (tmp_path / name).mkdir()
    (tmp_path / name / file).write_text(text)
    with pytest.raises(rundir.RunDirError) as error:
      check(str(tmp_path / name))
    assert len(str(error.value).splitlines()) == 1 and message in str(error.value), error.value
    assert str(tmp_path / name / file) in str(error.value)
    assert (tmp_path / name / file).read_text() == text and os.listdir(tmp_path / name) == [file]


def test_overwrite_with_a_too_long_aside_name_fails_before_any_work(tmp_path):
  """The workdir name fits, <name>.old-<timestamp> does not: refused before build or compile,
  and the old run stays where it is."""
  workdir = tmp_path / ('w' * 240)
  workdir.mkdir()
  record = {'config': run_config().to_dict(), 'seed': 0}
  (workdir / 'config.json').write_text(json.dumps(record, default=str))
  with pytest.raises(rundir.RunDirError, match='its name plus .old-<timestamp> would be longer'):
    main.train_and_evaluate(run_config(), str(workdir), overwrite=True)
  assert os.listdir(tmp_path) == [workdir.name] and os.listdir(workdir) == ['config.json']


def test_sweep_workdir_and_sweep_values(tmp_path):
  (tmp_path / 'run').mkdir()
  (tmp_path / 'run' / 'config.json').write_text('{}')
  with pytest.raises(vmap_sweep.SweepError, match='holds a single run'):
    vmap_sweep.check_sweep_workdir(str(tmp_path / 'run'))
  (tmp_path / 'other').mkdir()
  (tmp_path / 'other' / 'notes.txt').write_text('mine')
  with pytest.raises(vmap_sweep.SweepError, match='is not empty and holds no sweep'):
    vmap_sweep.check_sweep_workdir(str(tmp_path / 'other'))
  vmap_sweep.check_sweep_workdir(str(tmp_path / 'new'))
  for value in ('"fast"', 'true', 'null', '[1e-4]'):
    with pytest.raises(vmap_sweep.SweepError, match='is not a number'):
      vmap_sweep.members_from_strings('0', f'{{"agent.lr": [{value}]}}')
  assert len(vmap_sweep.members_from_strings('0,1', '{"agent.lr": [1e-4, 3e-4]}')) == 4


# ---------------------------------------------------------------------------------- launcher
def test_unknown_spec_flag_fails_validation_before_anything_runs(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  spec = tmp_path / 'spec.py'
  spec.write_text("SPEC = {'config': 'experiments/configs/lps.py:test', "
                  "'flags': {'tensorbord': False}}")
  with pytest.raises(spec_lib.LaunchError, match="unknown lps_jax.main flag 'tensorbord' in "
                     "'flags'; did you mean tensorboard"):
    launcher_lib.sweep(str(spec), 'local', str(tmp_path / 'out'))
  spec.write_text("SPEC = {'config': 'experiments/configs/lps.py:test', 'flags': {'seed': 3}}")
  with pytest.raises(spec_lib.LaunchError, match="'flags' may not set --seed"):
    launcher_lib.sweep(str(spec), 'slurm', str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')


def test_spec_flag_names_are_the_flags_main_defines():
  from absl import flags  # pylint: disable=g-import-not-at-top
  defined = {f.name for module in ('lps_jax.main', 'lps_jax.parallel')
             for f in flags.FLAGS.get_flags_for_module(module)}
  assert 'tensorboard' in defined and 'coordinator_address' in defined
  assert defined - set(spec_lib.RESERVED_FLAGS) <= set(spec_lib.main_flag_names())


# ---------------------------------------------------------------------------------- CLIs
@pytest.fixture(scope='module')
def cli_runs(tmp_path_factory):
  """Each CLI wiring once, all processes started together."""
  root = tmp_path_factory.mktemp('cli')
  (root / 'run').mkdir()
  (root / 'run' / 'config.json').write_text(json.dumps({'config': {}, 'seed': 0}))
  np.savez(root / 'masks.npz', **{**random_transitions(), 'masks': np.full(60, 2.0)})
  no_platform = cli_env()
  no_platform.pop('JAX_PLATFORMS')     # jax probes TPU / GPU backends (absl INFO lines)
  grid = [str(REPO / 'experiments' / 'ogbench_grid.py'), '--agents=lps', '--size=tiny',
          '--num_steps=2', '--steps_per_call=2', '--eval_at=2', '--eval_workers=0']
  commands = {
      # name: (argv, cwd, env, the paths it must not create)
      'main_hidden_dims_scalar': (['-m', 'lps_jax.main', TEST_CONFIG,
                                   '--config.agent.critic_hidden_dims=5',
                                   f'--workdir={root / "main"}'], REPO, cli_env(),
                                  ['main', 'main.lock']),
      'sweep_default_config_elsewhere': (['-m', 'lps_jax.vmap_sweep', f'--workdir={root / "sw"}'],
                                         root, cli_env(PYTHONPATH=str(REPO)), ['sw', 'sw.lock']),
      'sweep_into_a_run': (['-m', 'lps_jax.vmap_sweep', TEST_CONFIG, f'--workdir={root / "run"}'],
                           REPO, cli_env(), ['run.lock', 'run/sweep.json', 'run/member_000']),
      'sweep_bad_npz_no_info_lines': (['-m', 'lps_jax.vmap_sweep', TEST_CONFIG,
                                       f'--config.task=npz:{root / "masks.npz"}',
                                       f'--workdir={root / "sw_npz"}'], REPO, no_platform,
                                      ['sw_npz', 'sw_npz.lock']),
      'grid_task_99': (grid + ['--tasks=99', '--seeds=0', f'--dataset_dir={root / "ogdata"}',
                               f'--workdir={root / "grid"}'], REPO,
                       cli_env(MUJOCO_GL='disable', PYTHONPATH=str(REPO)), ['grid', 'ogdata']),
      'grid_set_unknown_key': (grid + ['--tasks=2', '--seeds=0', '--set=agent.lrr=1',
                                       f'--dataset_dir={root / "ogdata"}',
                                       f'--workdir={root / "grid_set"}'], REPO,
                               cli_env(MUJOCO_GL='disable', PYTHONPATH=str(REPO)),
                               ['grid_set', 'ogdata']),
      'grid_set_wrong_type': (grid + ['--tasks=2', '--seeds=0', '--set=agent.batch_size=1.5',
                                      f'--dataset_dir={root / "ogdata"}',
                                      f'--workdir={root / "grid_set"}'], REPO,
                              cli_env(MUJOCO_GL='disable', PYTHONPATH=str(REPO)),
                              ['grid_set', 'ogdata']),
  }
  # 300 s: a grid may generate its dataset first.
  results = run_at_once({name: (argv, cwd, env)
                         for name, (argv, cwd, env, _) in commands.items()}, timeout=300)
  created = {name: [p for p in paths if os.path.exists(root / p)]
             for name, (_, _, _, paths) in commands.items()}
  return results, created


CLI_EXPECTED = {
    'main_hidden_dims_scalar': "config.agent.critic_hidden_dims is a tuple; give a tuple, e.g. "
                               "--config.agent.critic_hidden_dims='(5,)'",
    'sweep_default_config_elsewhere': 'cannot load --config=experiments/configs/lps.py',
    'sweep_into_a_run': 'holds a single run (config.json), not a sweep',
    'sweep_bad_npz_no_info_lines': 'masks must be in [0, 1]',
    'grid_task_99': '--tasks: cube-single has no task 99 (OGBench tasks: 1,2,3,4,5)',
    'grid_set_unknown_key': '--set: lps: unknown config key config.agent.lrr',
    'grid_set_wrong_type': '--set: lps: config.agent.batch_size = 1.5:',
}


@pytest.mark.parametrize('name', sorted(CLI_EXPECTED))
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(cli_runs, name):
  results, created = cli_runs
  rc, err = results[name]
  lines = [line for line in err.splitlines() if line.strip()]
  assert rc == 2 and len(lines) == 1 and 'Traceback' not in err, err[-3000:]
  assert lines[0].startswith('error: ') and CLI_EXPECTED[name] in lines[0], lines[0]
  assert created[name] == []                 # no workdir, lock, member dir or dataset
