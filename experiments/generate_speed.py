"""Side-by-side speed of the dataset generator: the reference path (every step through OGBench's
env.step and its gymnasium wrappers, as the generator stepped before the lean step) against the
lean step, in one process with one worker, on the same episodes, in interleaved rounds.

Each round generates episodes first_index .. first_index + episodes - 1 with each path (the order
alternates between rounds, so a change of machine load hits both alike) and checks that the two
give the same arrays. Reported per path: transitions/s of wall time and of this process's CPU
time (user + system; on a shared machine the CPU-time rate is the steadier one), the median over
rounds, and the median of the per-round ratios lean / reference. Start-up (env build, oracle
imports) is timed once per path and reported apart.

  python experiments/generate_speed.py --env=cube-single-play-v0 --episodes=4 --rounds=3
"""
import json
import os
import statistics
import sys
import time
import warnings

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

FLAGS = flags.FLAGS
flags.DEFINE_string('env', 'cube-single-play-v0', 'Dataset name.')
flags.DEFINE_integer('episodes', 4, 'Episodes per path and round.', lower_bound=1)
flags.DEFINE_integer('steps_per_episode', 1001, 'Steps per episode.', lower_bound=2)
flags.DEFINE_integer('rounds', 3, 'Interleaved rounds.', lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Base seed of the episodes.', lower_bound=0)
flags.DEFINE_string('output', None, 'Also write the JSON here.')


def cpu_seconds() -> float:
  times = os.times()
  return times.user + times.system


def main(argv):
  del argv   # cli.run refuses positional arguments
  warnings.simplefilter('ignore')
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lps_jax.data import generate as gen  # pylint: disable=g-import-not-at-top
  try:
    env_name, dataset_type = gen.parse_dataset_name(FLAGS.env)
    gen.check_env_registered(env_name)
  except gen.GenerateError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  settings = gen.default_settings(env_name, dataset_type)
  collectors, startup_s = {}, {}
  for path, lean in (('reference', False), ('lean', True)):
    start = time.perf_counter()
    collectors[path] = gen._Collector(env_name, dataset_type, FLAGS.steps_per_episode,  # pylint: disable=protected-access
                                      settings, lean=lean)
    startup_s[path] = time.perf_counter() - start
  if not collectors['lean'].lean:
    print(f'error: the lean step does not apply to {FLAGS.env} (cube envs only)', file=sys.stderr)
    sys.exit(2)
  seeds = [gen.episode_seed(FLAGS.seed, i) for i in range(FLAGS.episodes)]
  transitions = FLAGS.episodes * FLAGS.steps_per_episode
  rates = {path: {'wall': [], 'cpu': []} for path in collectors}
  loads, identical = [], True
  for r in range(FLAGS.rounds):
    loads.append([round(x, 2) for x in os.getloadavg()])
    order = ('reference', 'lean') if r % 2 == 0 else ('lean', 'reference')
    episodes = {}
    for path in order:
      wall, cpu = time.perf_counter(), cpu_seconds()
      episodes[path] = [collectors[path].episode(s) for s in seeds]
      rates[path]['wall'].append(transitions / (time.perf_counter() - wall))
      rates[path]['cpu'].append(transitions / max(cpu_seconds() - cpu, 1e-9))
    identical &= all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype
                     for a, b in zip(episodes['reference'], episodes['lean']) for k in a)
    print(f"round {r + 1}: load {loads[-1]}; " + ', '.join(
        f"{p} {rates[p]['wall'][-1]:.0f}/s wall {rates[p]['cpu'][-1]:.0f}/s cpu" for p in order),
          flush=True)
  report = {
      'env': FLAGS.env, 'episodes': FLAGS.episodes, 'steps_per_episode': FLAGS.steps_per_episode,
      'rounds': FLAGS.rounds, 'identical_arrays': bool(identical), 'startup_s': startup_s,
      'load_average_per_round': loads, 'cpu_count': os.cpu_count(),
      'transitions_per_s': {p: {k: statistics.median(v) for k, v in r.items()}
                            for p, r in rates.items()},
      'lean_over_reference': {k: statistics.median(
          a / b for a, b in zip(rates['lean'][k], rates['reference'][k])) for k in ('wall', 'cpu')},
      'command': ' '.join(['python experiments/generate_speed.py'] + sys.argv[1:]),
  }
  text = json.dumps(report, indent=1)
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      f.write(text + '\n')
  print(text)
  if not identical:
    print('error: the lean step changed the arrays', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)
