"""lps_jax/seed_stats.py and its CLI experiments/compare_agents.py: group selection, the exact
and sampled permutation p-values against hand counts, the bootstrap interval, one-line errors."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from lps_jax import seed_stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'experiments', 'compare_agents.py')


def _rows(entries, step_column='steps'):
  """(agent, alpha, seed, step, success) -> rows as csv.DictReader gives them."""
  return [{'agent': agent, 'alpha': str(alpha), 'seed': str(seed), step_column: str(step),
           'success': str(value)} for agent, alpha, seed, step, value in entries]


def _groups(a, b, step=100):
  return _rows([('x', 1.0, s, step, v) for s, v in enumerate(a)]
               + [('y', 1.0, s, step, v) for s, v in enumerate(b)])


def test_exact_permutation_p_matches_the_hand_count():
  # Pooled {0,1,2,3,4}, a = {3,4}: of the 10 relabellings only {3,4} and {0,1} give
  # |mean(a) - mean(b)| >= 2.5, so p = 0.2 (two-sided).
  result = seed_stats.compare(_groups([3, 4], [0, 1, 2]), {'agent': 'x'}, {'agent': 'y'},
                              resamples=1000)
  assert result['permutation_exact']
  assert result['permutation_p'] == pytest.approx(0.2)
  assert result['difference'] == pytest.approx(2.5)
  # All a above all b, 3 vs 3: 2 of C(6, 3) = 20 relabellings are as extreme.
  result = seed_stats.compare(_groups([1, 1, 1], [0, 0, 0]), {'agent': 'x'},
                              {'agent': 'y'}, resamples=1000)
  assert result['permutation_p'] == pytest.approx(0.1)
  assert result['bootstrap_95'] == pytest.approx([1.0, 1.0])


def test_sampled_permutation_p_agrees_with_the_exact_one():
  rng = np.random.default_rng(3)
  rows = _groups(rng.uniform(0.2, 0.6, 8).round(2), rng.uniform(0.1, 0.5, 8).round(2))
  exact = seed_stats.compare(rows, {'agent': 'x'}, {'agent': 'y'}, resamples=1000)
  sampled = seed_stats.compare(rows, {'agent': 'x'}, {'agent': 'y'}, resamples=20_000,
                               max_exact=1)
  assert exact['permutation_exact'] and not sampled['permutation_exact']
  assert 0.02 < exact['permutation_p'] < 0.98
  assert sampled['permutation_p'] == pytest.approx(exact['permutation_p'], abs=0.015)


def test_bootstrap_interval_covers_the_difference_and_widens_with_spread():
  tight = seed_stats.compare(_groups([0.50, 0.52, 0.48, 0.50], [0.30, 0.31, 0.29, 0.30]),
                             {'agent': 'x'}, {'agent': 'y'}, resamples=5000)
  wide = seed_stats.compare(_groups([0.9, 0.1, 0.8, 0.2], [0.6, 0.0, 0.5, 0.1]),
                            {'agent': 'x'}, {'agent': 'y'}, resamples=5000)
  for result in (tight, wide):
    low, high = result['bootstrap_95']
    assert low <= result['difference'] <= high
  assert tight['bootstrap_95'][0] > 0.15 and tight['bootstrap_95'][1] < 0.25
  assert wide['bootstrap_95'][0] < 0 < wide['bootstrap_95'][1]


def test_paired_sign_flip_p_matches_the_hand_count():
  # Differences {1, 2, 3}: of the 2^3 sign patterns only +++ and --- give |mean| >= 2.
  result = seed_stats.compare(_groups([1, 2, 3], [0, 0, 0]), {'agent': 'x'}, {'agent': 'y'},
                              resamples=1000, paired=True)
  assert result['paired'] and result['permutation_exact']
  assert result['permutation_p'] == pytest.approx(0.25)
  # Differences {1, 1, 1, -1}: |mean| >= 0.5 unless the signs cancel to 0 (6 of 16 patterns
  # have two of each sign), so p = 10 / 16.
  result = seed_stats.compare(_groups([2, 3, 4, 0], [1, 2, 3, 1]), {'agent': 'x'},
                              {'agent': 'y'}, resamples=1000, paired=True)
  assert result['permutation_p'] == pytest.approx(10 / 16)
  assert result['difference'] == pytest.approx(0.5)


def test_pairing_finds_a_shift_that_the_seed_spread_hides():
  # Every seed of a is 0.05 above the same seed of b, and the seeds spread over 0.1..0.7:
  # the unpaired test cannot see the shift, the paired one finds it in all 8 seeds.
  base = np.array([0.1, 0.7, 0.3, 0.5, 0.2, 0.6, 0.4, 0.15])
  rows = _groups(base + 0.05, base)
  unpaired = seed_stats.compare(rows, {'agent': 'x'}, {'agent': 'y'}, resamples=2000)
  paired = seed_stats.compare(rows, {'agent': 'x'}, {'agent': 'y'}, resamples=2000,
                              paired=True)
  assert unpaired['permutation_p'] > 0.5
  assert unpaired['bootstrap_95'][0] < 0
  assert paired['permutation_p'] == pytest.approx(2 / 2 ** 8)
  assert paired['bootstrap_95'] == pytest.approx([0.05, 0.05])
  assert paired['seed_correlation'] == pytest.approx(1.0)
  shuffled = seed_stats.compare(_groups(base + 0.05, base[::-1]), {'agent': 'x'},
                                {'agent': 'y'}, resamples=2000, paired=True)
  assert shuffled['seed_correlation'] < 0.5


def test_paired_sampled_p_agrees_with_the_exact_one_and_seeds_must_match():
  rng = np.random.default_rng(8)
  rows = _groups(rng.uniform(0.2, 0.6, 10).round(2), rng.uniform(0.15, 0.55, 10).round(2))
  exact = seed_stats.compare(rows, {'agent': 'x'}, {'agent': 'y'}, resamples=1000,
                             paired=True)
  sampled = seed_stats.compare(rows, {'agent': 'x'}, {'agent': 'y'}, resamples=20_000,
                               max_exact=1, paired=True)
  assert exact['permutation_exact'] and not sampled['permutation_exact']
  assert 0.02 < exact['permutation_p'] < 0.98
  assert sampled['permutation_p'] == pytest.approx(exact['permutation_p'], abs=0.015)
  with pytest.raises(seed_stats.CompareError, match=r"only in a: \['2'\]"):
    seed_stats.compare(_groups([1, 2, 3], [0, 0]), {'agent': 'x'}, {'agent': 'y'},
                       paired=True)


def test_groups_take_their_last_step_and_match_numbers_numerically():
  rows = _rows([('x', '1.0', 0, 50, 0.0), ('x', '1.0', 0, 100, 0.4), ('x', '1.0', 1, 100, 0.6),
                ('x', '10.0', 0, 100, 0.9), ('x', '10.0', 1, 100, 0.9)], step_column='step')
  assert seed_stats.select_group(rows, {'agent': 'x', 'alpha': '1'}, 'success', 'a') == {
      '0': 0.4, '1': 0.6}
  assert seed_stats.select_group(rows, {'agent': 'x', 'alpha': '1', 'step': '50'},
                                 'success', 'a') == {'0': 0.0}
  with pytest.raises(seed_stats.CompareError, match='seed 0 appears twice'):
    seed_stats.select_group(rows, {'agent': 'x'}, 'success', 'a')


def _run(*args):
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        timeout=120)


def test_cli_prints_the_comparison_and_bad_input_is_one_line(tmp_path):
  path = str(tmp_path / 'alpha.csv')
  rows = _groups([3, 4], [0, 1, 2])
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  other = str(tmp_path / 'success.csv')      # the grid's columns: no alpha, 'step'
  with open(other, 'w') as f:
    f.write('agent,task,seed,step,success\nx,2,5,100,0.5\n')
  res = _run(f'--csv={path}', '--a=x', '--b=y,alpha=1', '--resamples=1000')
  assert res.returncode == 0, res.stderr
  assert 'permutation p = 0.200 (exact)' in res.stdout
  res = _run(f'--csv={path}', '--a=x', '--b=y', '--resamples=1000', '--paired')
  assert res.returncode == 2 and 'only in b' in res.stderr, res.stderr
  for args, message in (
      ([f'--csv={tmp_path}/none.csv', '--a=x', '--b=y'], 'no such file'),
      ([f'--csv={path},{other}', '--a=x', '--b=y'], 'columns'),
      ([f'--csv={path}', '--a=x,task=2', '--b=y'], "no column 'task'"),
      ([f'--csv={path}', '--a=z', '--b=y'], 'no rows match'),
      ([f'--csv={path}', '--a=x,alpha', '--b=y'], 'expected column=value'),
      ([f'--csv={path}', '--a=x'], 'required'),
      ([f'--csv={path}', '--a=x', '--b=y', '--metric=return'], "no 'return' column")):
    res = _run(*args)
    assert res.returncode == 2, (args, res.stderr)
    assert res.stderr.count('\n') == 1 and message in res.stderr, (args, res.stderr)
