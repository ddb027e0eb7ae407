"""Every command-line entry point refuses a stray argument, an unknown flag and (if it takes
one) a --workdir that cannot be created, in one stderr line with exit 2, writing nothing
(absl's own handling prints its usage text, or a second line, and exits 1; os.makedirs a
traceback).

The entry points are found by scanning the tree for a `__main__` guard, so a new script is
covered as soon as it exists; each must parse through `cli.run` or a one-line flags_parser.
"""
import pathlib
import re

import pytest

from conftest import cli_env, run_at_once

REPO = pathlib.Path(__file__).resolve().parents[1]
# Scripts that parse their own argv (tested for one-line errors in test_cli_flags.py).
OWN_PARSER = {'lps_jax/data/generate.py'}
# Flags given so that the bad argument is what gets refused: required ones, and the config by
# its absolute path (the processes run in empty folders, not at the repository root).
CONFIG = f'--config={REPO}/experiments/configs/lps.py:test'
REQUIRED = {'lps_jax/data/generate.py': ['--env=cube-single-play-v0', '--episodes=1',
                                         '--out=out'],
            'lps_jax/main.py': [CONFIG], 'lps_jax/vmap_sweep.py': [CONFIG],
            'experiments/toy_decoder_study.py': ['--workdir=out']}


def entry_points():
  """Repo-relative paths of the files with a __main__ guard, outside tests/."""
  found = []
  for folder in ('lps_jax', 'experiments', 'launch'):
    for path in sorted((REPO / folder).rglob('*.py')):
      if "if __name__ == '__main__':" in path.read_text():
        found.append(str(path.relative_to(REPO)))
  return found


def _command(path):
  """How a user starts it: `python -m` for the package, the script's path otherwise."""
  if path.startswith('lps_jax/'):
    return ['-m', path[:-len('.py')].replace('/', '.')]
  return [str(REPO / path)]


def test_the_scan_finds_the_known_entry_points():
  found = entry_points()
  for path in ('lps_jax/main.py', 'lps_jax/vmap_sweep.py', 'lps_jax/bench.py',
               'experiments/ogbench_grid.py', 'experiments/compare_agents.py',
               'launch/launcher.py'):
    assert path in found, found


@pytest.mark.parametrize('path', entry_points())
def test_entry_point_parses_with_one_line_errors(path):
  guard = (REPO / path).read_text().split("if __name__ == '__main__':", 1)[1]
  if path in OWN_PARSER:
    return
  assert re.search(r'\bcli\.run\(|flags_parser=', guard), (
      f'{path}: start it with cli.run(main) (or app.run with a one-line flags_parser), not '
      'a bare app.run(main)')


def takes_workdir(path):
  return bool(re.search(r'\bFLAGS\.workdir|flags_\.workdir', (REPO / path).read_text()))


# case: (argv in the process's empty folder `cwd`, which entry points get it, the text the one
# line must hold). 'workdir_under_a_file' puts --workdir below a regular file in that folder.
CASES = {
    'stray_argument': (lambda cwd: ['extra'], lambda path: True, 'extra'),
    'unknown_flag': (lambda cwd: ['--no_such_flag=1'], lambda path: True, 'no_such_flag'),
    'workdir_under_a_file': (lambda cwd: [f'--workdir={cwd / "afile" / "run"}'], takes_workdir,
                             'regular file'),
}


# The experiment scripts' own flags: refused before any work, with --workdir=out in the
# process's folder left uncreated. name: (script, args, text the one line must hold).
SCRIPT_CASES = {
    'alpha_study_num_steps': ('experiments/alpha_sensitivity.py', ['--num_steps=7'],
                              'multiple of --steps_per_call'),
    'alpha_study_hidden_dims': ('experiments/alpha_sensitivity.py', ['--hidden_dims=0'],
                                'positive ints'),
    'ogbench_alpha_seed': ('experiments/ogbench_alpha.py', ['--seeds=-1'], '--seeds must be'),
    'ogbench_alpha_dataset_dir': ('experiments/ogbench_alpha.py', ['--dataset_dir=afile'],
                                  'cannot generate'),
    'latent_grad_num_steps': ('experiments/latent_grad_study.py', ['--num_steps=7'],
                              'multiple of 500'),
    'latent_grad_seed': ('experiments/latent_grad_study.py', ['--seed=-3'], '--seed must be'),
    'decoder_prior': ('experiments/toy_decoder_study.py', ['--priors=nope'], 'choose from'),
    'decoder_time': ('experiments/toy_decoder_study.py', ['--time_settings=x'], 'choose from'),
    'actor_scales': ('experiments/actor_scale_study.py', ['--scales=abc'], 'not a list'),
    # Two bad flags: the first check in the script's order is the one reported.
    'latent_grad_first_check': ('experiments/latent_grad_study.py',
                                ['--num_angles=0', '--num_steps=7'], 'multiple of 500'),
    'decoder_first_check': ('experiments/toy_decoder_study.py',
                            ['--time_settings=x', '--priors=nope'], '--priors: unknown'),
}


def _jobs():
  """(key, entry point, argv of the process's folder) of every run the fixture starts."""
  for path in entry_points():
    for case, (argv, applies, _) in CASES.items():
      if applies(path):
        yield (path, case), path, lambda cwd, p=path, a=argv: [*REQUIRED.get(p, []), *a(cwd)]
  for name, (path, args, _) in SCRIPT_CASES.items():
    yield (path, name), path, lambda cwd, a=args: [*a, f'--workdir={cwd / "out"}']


@pytest.fixture(scope='module')
def bad_argv_runs(tmp_path_factory):
  """{(path, case): (returncode, stderr, files left in its cwd)}; all processes at once."""
  root = tmp_path_factory.mktemp('entry_points')
  env = cli_env(MUJOCO_GL='disable', PYTHONPATH=str(REPO))
  commands, cwds = {}, {}
  for key, path, argv in _jobs():
    cwd = cwds[key] = root / f'{path.replace("/", "_")}_{key[1]}'
    cwd.mkdir()
    (cwd / 'afile').write_text('not a folder')
    commands[key] = ([*_command(path), *argv(cwd)], cwd, env)
  # A refusal takes seconds; a process still going after 120 s has started the real work.
  return {key: (code, err, sorted(p.name for p in cwds[key].iterdir()))
          for key, (code, err) in run_at_once(commands, timeout=120).items()}


def test_every_workdir_taking_entry_point_gets_the_workdir_case():
  assert {p for p in entry_points() if takes_workdir(p)} >= {
      'lps_jax/main.py', 'lps_jax/vmap_sweep.py', 'experiments/ogbench_grid.py',
      'experiments/ogbench_alpha.py', 'experiments/alpha_sensitivity.py'}


def assert_refused(result, needle, label):
  """Exit 2, one stderr line holding `needle`, no traceback, nothing beside `afile` written."""
  code, err, files = result
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1, (label, code, err[-1500:])
  assert needle in lines[0] and 'Traceback' not in err, (label, err)
  assert files == ['afile'], (label, files)


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_argv_is_one_line_exit_2_and_writes_nothing(bad_argv_runs, case):
  ran = [key for key in bad_argv_runs if key[1] == case]
  assert ran
  for key in ran:
    assert_refused(bad_argv_runs[key], CASES[case][2], key[0])


@pytest.mark.parametrize('name', sorted(SCRIPT_CASES))
def test_experiment_script_refuses_bad_flags_before_any_work(bad_argv_runs, name):
  path, _, needle = SCRIPT_CASES[name]
  assert_refused(bad_argv_runs[path, name], needle, name)     # and no --workdir made
