"""How long a CLI takes to exit after a SIGTERM that arrives while it starts up.

For each delay d: start the command on a fresh workdir, send SIGTERM d seconds later, and
record the seconds from the signal to the exit and the exit status. Prints one JSON line per
delay and a summary line.

  python experiments/sigterm_startup.py --program=main --delays=1,2,4,6,8,10
  python experiments/sigterm_startup.py --program=sweep --delays=2,4,6
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = {
    'main': [sys.executable, '-m', 'lps_jax.main', '--config=experiments/configs/lps.py:toy',
             '--progress=false', '--tensorboard=false'],
    'sweep': [sys.executable, '-m', 'lps_jax.vmap_sweep',
              '--config=experiments/configs/lps.py:toy', '--seeds=0,1,2,3', '--progress=false'],
}

FLAGS = flags.FLAGS
flags.DEFINE_enum('program', 'main', list(PROGRAMS), 'Which CLI to start.')
flags.DEFINE_list('delays', ['1', '2', '4', '6', '8', '10'], 'Seconds before the SIGTERM.')
flags.DEFINE_list('extra', [], 'Extra arguments for the command.')


def measure(command, delay):
  with tempfile.TemporaryDirectory() as root:
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    proc = subprocess.Popen(command + [f'--workdir={root}/w'] + FLAGS.extra, cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    seconds = time.perf_counter() - sent
    last = [line for line in err.splitlines() if line.strip()][-1:] or ['']
    return {'delay_s': delay, 'exit_after_s': round(seconds, 2), 'rc': proc.returncode,
            'stderr_last': last[0][:160]}


def main(argv):
  del argv
  rows = [measure(PROGRAMS[FLAGS.program], float(d)) for d in FLAGS.delays]
  for row in rows:
    print(json.dumps(row))
  print(json.dumps({'program': FLAGS.program, 'max_exit_after_s': max(r['exit_after_s'] for r in rows),
                    'load': os.getloadavg()}))


if __name__ == '__main__':
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)
