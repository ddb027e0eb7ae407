"""Every numeric flag of every CLI refuses a bad value: one stderr line naming it, exit 2, and
nothing written (table-driven; all processes start at once and stop at flag parsing)."""
import os
import pathlib

import pytest

from conftest import cli_env, run_at_once

REPO = pathlib.Path(__file__).resolve().parents[1]
TEST_CONFIG = '--config=experiments/configs/lps.py:test'

# name: (module, args, text the one stderr line must contain). {out} is a fresh path per case.
BAD_FLAGS = {
    'generate_episodes_zero': ('lps_jax.data.generate', ['--episodes=0'], '--episodes'),
    'generate_episodes_text': ('lps_jax.data.generate', ['--episodes=many'], '--episodes'),
    'generate_seed_negative': ('lps_jax.data.generate', ['--seed=-1'], '--seed'),
    'generate_workers_zero': ('lps_jax.data.generate', ['--workers=0'], '--workers'),
    'generate_steps_one': ('lps_jax.data.generate', ['--steps_per_episode=1'],
                           '--steps_per_episode'),
    'generate_val_zero': ('lps_jax.data.generate', ['--val_episodes=0'], '--val_episodes'),
    'generate_noise_negative': ('lps_jax.data.generate', ['--noise=-1'], '--noise'),
    'generate_noise_inf': ('lps_jax.data.generate', ['--noise=inf'], '--noise'),
    'generate_p_random_above_1': ('lps_jax.data.generate', ['--p_random_action=1.5'],
                                  '--p_random_action'),
    'bench_steps_zero': ('lps_jax.bench', ['--steps=0,10'], '--steps'),
    'bench_members_text': ('lps_jax.bench', ['--members=two'], '--members'),
    'bench_min_time_zero': ('lps_jax.bench', ['--min_time=0'], '--min_time'),
    'bench_sample_batch_negative': ('lps_jax.bench', ['--sample_batch=-1'], '--sample_batch'),
    'bench_matmul_negative': ('lps_jax.bench', ['--matmul_size=-8'], '--matmul_size'),
    'sweep_num_steps_zero': ('lps_jax.vmap_sweep', [TEST_CONFIG, '--num_steps=0'], '--num_steps'),
    'sweep_axis_negative': ('lps_jax.vmap_sweep', [TEST_CONFIG, '--sweep_axis=-1'], '--sweep_axis'),
    'sweep_seeds_negative': ('lps_jax.vmap_sweep', [TEST_CONFIG, '--seeds=0,-1'], '--seeds'),
    'sweep_seeds_text': ('lps_jax.vmap_sweep', [TEST_CONFIG, '--seeds=a,b'], '--seeds'),
    'launch_parallel_negative': ('launch.launcher', ['--spec=launch/examples/toy_grid.py',
                                                  '--parallel=-1'], '--parallel'),
    'launch_gpus_text': ('launch.launcher', ['--spec=launch/examples/toy_grid.py', '--gpus=a'],
                         '--gpus'),
    'main_seed_negative': ('lps_jax.main', [TEST_CONFIG, '--seed=-1'], '--seed'),
    'main_seed_beyond_prng': ('lps_jax.main', [TEST_CONFIG, f'--seed={2**63}'], '--seed'),
    'main_num_steps_zero': ('lps_jax.main', [TEST_CONFIG, '--num_steps=0'], '--num_steps'),
    'main_log_interval_zero': ('lps_jax.main', [TEST_CONFIG, '--log_interval=0'],
                               '--log_interval'),
    'main_eval_interval_negative': ('lps_jax.main', [TEST_CONFIG, '--eval_interval=-4'],
                                    '--eval_interval'),
}
# The flag naming the output path of each CLI, and the other flags a run needs.
OUTPUT = {'lps_jax.data.generate': ['--env=cube-single-play-v0', '--episodes=1', '--out={out}'],
          'lps_jax.bench': ['--output={out}'],
          'lps_jax.vmap_sweep': ['--workdir={out}'],
          'launch.launcher': ['--out={out}'],
          'lps_jax.main': ['--workdir={out}']}


@pytest.fixture(scope='module')
def bad_flag_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('flags')
  commands = {}
  for name, (module, args, _) in BAD_FLAGS.items():
    out = str(root / name)
    argv = [a.format(out=out) for a in OUTPUT[module]] + args   # the bad value comes last
    commands[name] = (['-m', module, *argv], REPO, cli_env())
  return root, run_at_once(commands, timeout=300)


@pytest.mark.parametrize('name', sorted(BAD_FLAGS))
def test_bad_numeric_flag_is_one_line_exit_2(bad_flag_runs, name):
  root, results = bad_flag_runs
  rc, err = results[name]
  lines = [line for line in err.splitlines() if line.strip()]
  assert rc == 2, err[-2000:]
  assert len(lines) == 1 and lines[0].startswith('error: ') and 'Traceback' not in err, err
  assert BAD_FLAGS[name][2] in lines[0]
  assert not os.path.exists(root / name)
