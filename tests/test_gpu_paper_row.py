"""launch/gpu_paper_row.sh without running it (DRY_RUN=1): its steps, time boxes and flags.

The real run at tiny size (about 2 minutes on 2 cores) is in the script's header."""
import os
import re
import shlex
import subprocess
import sys

from lps_jax.data import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dry_run(tmp_path, **env):
  run_env = {**os.environ, 'DRY_RUN': '1', 'OUT': str(tmp_path / 'out'), **env}
  proc = subprocess.run(['bash', 'launch/gpu_paper_row.sh'], cwd=REPO, env=run_env,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  steps = {}
  for line in proc.stdout.splitlines():
    if line.startswith('STEP '):
      _, name, cap, *cmd = shlex.split(line)
      steps[name] = (int(cap), cmd)
  return proc.stdout, steps


def _flag_names(cmd):
  return [arg[2:].split('=', 1)[0] for arg in cmd if arg.startswith('--')]


def test_dry_run_steps_time_boxes_and_flags(tmp_path):
  stdout, steps = _dry_run(tmp_path, AGENT='qcfql', TOTAL_S='400', TAIL_S='90', GEN_S='200',
                           GEN_WORKERS='16', EVAL_WORKERS='14', DATA_DIR=str(tmp_path / 'd'))
  assert list(steps) == ['generate', 'train_eval']
  cap, gen_cmd = steps['generate']
  assert cap == 260 and '--time_budget_s=200' in gen_cmd and '--episodes=1000' in gen_cmd
  assert '--workers=16' in gen_cmd and '--steps_per_episode=1001' in gen_cmd
  for name in _flag_names(gen_cmd):   # every flag is one the generator defines
    assert name in generate.FLAGS or (name.startswith('no') and name[2:] in generate.FLAGS), name
  # Training gets what is left of TOTAL_S after the 10 s kept for row.md and TAIL_S, less the
  # seconds already spent (the line's own "[elapsed s]" is read up to 1 s after the budget).
  elapsed, budget = map(int, re.search(r'\[(\d+) s\] training budget: (\d+) s', stdout).groups())
  assert budget + elapsed in (300, 301), (elapsed, budget)
  _, grid_cmd = steps['train_eval']
  assert grid_cmd[:2] == ['python3', 'experiments/ogbench_grid.py']
  for flag in ('--agents=qcfql', '--tasks=1..5', '--seeds=0..1', '--size=paper',
               '--num_steps=1000000', '--eval_at=250000,500000', '--eval_episodes=50',
               '--eval_workers=14', f'--time_budget_s={budget}', '--compute_dtype=float32'):
    assert flag in grid_cmd, flag
  # The driver accepts every flag: it parses them all, then stops at a --merge of nothing.
  check = subprocess.run([sys.executable, *grid_cmd[1:], f'--merge={tmp_path / "none"}'],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
  assert check.returncode == 2 and check.stderr.startswith('error: --merge:'), check.stderr


def test_dry_run_reuses_an_existing_dataset(tmp_path):
  data_dir = tmp_path / 'd'
  data_dir.mkdir()
  (data_dir / 'cube-single-play-v0.npz').write_bytes(b'')
  stdout, steps = _dry_run(tmp_path, DATA_DIR=str(data_dir))
  assert 'generate' not in steps and 'reusing' in stdout and 'train_eval' in steps
