"""Two groups of per-seed success rates, compared: the means, their difference with a bootstrap
95% interval over seeds, and a two-sided permutation p-value.

A group is the rows of the drivers' CSVs (ogbench_grid's success.csv, ogbench_alpha's alpha.csv)
that match a selector `agent[,column=value,...]`, at the last step the group has (or
`step=N`). Each seed must appear once in a group: select a task (`task=2`) or an alpha
(`alpha=1`) when the file holds several.

  python experiments/compare_agents.py \\
      --csv=experiments/results/ogbench_alpha_cubesingle_cpu/alpha.csv --a=lps,alpha=1 --b=dsrl

Statistics (seeds are the unit; the evaluation episodes of one seed are its one number):
- bootstrap: the seeds of each group are resampled with replacement, `--resamples` times, and
  the interval is the 2.5 / 97.5 percentiles of mean(a*) - mean(b*);
- permutation: the share of relabellings of the pooled seeds whose |mean difference| is at
  least the observed one (every relabelling when there are at most `--max_exact`, else
  `--resamples` random ones).
With --paired (both groups ran the same seeds, and a seed fixes the initialisation, the
minibatches and the evaluation resets, as in the drivers) the unit is the per-seed difference
a_s - b_s: the bootstrap resamples those, and the test flips their signs (all 2^n when
2^n <= `--max_exact`). Pairing removes the seed-to-seed spread that both groups share.
The statistics live in lps_jax/seed_stats.py.
"""
import csv
import json
import os
import sys

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from lps_jax import seed_stats  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_list('csv', None, 'CSV files of per-seed results (concatenated).')
flags.DEFINE_string('a', None, "Group a: 'agent[,column=value,...]'.")
flags.DEFINE_string('b', None, "Group b: 'agent[,column=value,...]'.")
flags.DEFINE_string('metric', 'success', 'Column to compare.')
flags.DEFINE_integer('resamples', 100_000, 'Bootstrap resamples (and random relabellings).',
                     lower_bound=100)
flags.DEFINE_integer('max_exact', 200_000, 'Enumerate every relabelling up to this many.',
                     lower_bound=1)
flags.DEFINE_bool('paired', False, 'The same seeds in both groups: compare per-seed '
                  'differences (sign-flip test, paired bootstrap).')
flags.DEFINE_integer('seed', 0, 'Seed of the resampling.')
flags.DEFINE_string('output', None, 'Also write the result as JSON here.')


def read_csvs(paths):
  """Rows of every file (files with the same columns), as dicts of strings."""
  rows, columns = [], None
  for path in paths:
    if not os.path.isfile(path):
      raise seed_stats.CompareError(f'--csv: no such file {path}')
    with open(path, newline='') as f:
      reader = csv.DictReader(f)
      if columns is not None and reader.fieldnames != columns:
        raise seed_stats.CompareError(f'--csv: {path} has columns {reader.fieldnames}, '
                                      f'the first file {columns}')
      columns = reader.fieldnames
      rows.extend(reader)
  return rows


def main(argv):
  del argv   # cli.run refuses positional arguments
  try:
    if not FLAGS.csv or not FLAGS.a or not FLAGS.b:
      raise seed_stats.CompareError('--csv, --a and --b are required')
    result = seed_stats.compare(
        read_csvs(FLAGS.csv), seed_stats.parse_selector(FLAGS.a, 'a'),
        seed_stats.parse_selector(FLAGS.b, 'b'), FLAGS.metric, FLAGS.resamples,
        FLAGS.max_exact, FLAGS.seed, FLAGS.paired)
  except ValueError as e:          # seed_stats.CompareError, or a cell that is not a number
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(seed_stats.describe(result))
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)
