"""OGBench at the env boundary: the known-harmless GLFW / gymnasium Box warnings are silenced,
so a real error stands alone on stderr (no MUJOCO_GL, no DISPLAY: the noisiest setting)."""
import os
import subprocess
import sys

from conftest import cli_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = '''
import sys
from experiments.configs import lps
from lps_jax import tasks
config = lps.get_config('ogbench_small')
config.dataset_dir = sys.argv[1]
tasks.check_config(config)              # imports gymnasium + ogbench (+ mujoco -> glfw)
try:
  tasks.make_task(config)               # builds the env, then finds no dataset file
except Exception as e:
  print(f'error: {type(e).__name__}', file=sys.stderr)
'''


def test_ogbench_task_stderr_holds_only_the_real_error(tmp_path):
  env = cli_env()
  env.pop('MUJOCO_GL', None)
  env.pop('DISPLAY', None)
  result = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert result.stderr.strip().splitlines() == ['error: DatasetError'], result.stderr
