"""Seeds as the unit of comparison: two groups of per-seed results from the drivers' CSVs ->
their means, the difference with a bootstrap 95% interval over seeds, and a two-sided
permutation p-value (experiments/compare_agents.py is the CLI).

Unpaired (default): the groups are independent samples of seeds; the bootstrap resamples each
group, the permutation test relabels the pooled values. Paired: both groups ran the same seeds,
and a seed fixes the shared randomness (the drivers give a seed the same initialisation,
minibatches and evaluation resets whatever the alpha), so the unit is the per-seed difference
a_s - b_s; the bootstrap resamples those, the test flips their signs."""
import itertools
import math

import numpy as np

STEP_COLUMNS = ('step', 'steps')


class CompareError(ValueError):
  """Bad input: the CLI reports it as one line, exit 2."""


def parse_selector(text, name):
  """'lps,alpha=1' -> {'agent': 'lps', 'alpha': '1'}."""
  agent, *items = [s.strip() for s in (text or '').split(',')]
  if not agent or '=' in agent:
    raise CompareError(f"--{name}: expected 'agent[,column=value,...]', got {text!r}")
  selector = {'agent': agent}
  for item in items:
    key, sep, value = item.partition('=')
    if not sep or not key.strip():
      raise CompareError(f'--{name}: expected column=value, got {item!r}')
    selector[key.strip()] = value.strip()
  return selector


def same_value(cell, wanted):
  """String equality, or numeric equality when both parse as numbers ('1' == '1.0')."""
  try:
    return float(cell) == float(wanted)
  except (TypeError, ValueError):
    return cell == wanted


def select_group(rows, selector, metric, name):
  """Rows matching selector, at its step (the last one unless given) -> {seed: value}."""
  columns = set(rows[0]) if rows else set()
  for key in selector:
    if key not in columns:
      raise CompareError(f'--{name}: no column {key!r} in the CSV (it has {sorted(columns)})')
  for needed in ('seed', metric):
    if needed not in columns:
      raise CompareError(f'the CSV has no {needed!r} column')
  mine = [r for r in rows if all(same_value(r[k], v) for k, v in selector.items())]
  step_column = next((c for c in STEP_COLUMNS if c in columns), None)
  if step_column and step_column not in selector and mine:
    last = max(float(r[step_column]) for r in mine)
    mine = [r for r in mine if float(r[step_column]) == last]
  if not mine:
    raise CompareError(f'--{name}: no rows match {selector}')
  values = {}
  for r in mine:
    if r['seed'] in values:
      raise CompareError(f"--{name}: seed {r['seed']} appears twice; narrow the selector "
                         f'(task=..., alpha=...)')
    values[r['seed']] = float(r[metric])
  return values


def resampled_means(values, resamples, rng):
  """[n] values -> [resamples] means of n values drawn with replacement."""
  x = np.asarray(values, float)
  return x[rng.integers(0, len(x), (resamples, len(x)))].mean(1)


def interval_95(samples):
  """The 2.5 / 97.5 percentiles of samples, as floats."""
  low, high = np.percentile(samples, [2.5, 97.5])
  return float(low), float(high)


def bootstrap_interval(a, b, resamples, rng):
  """95% percentile interval of mean(a*) - mean(b*), seeds resampled within each group."""
  return interval_95(resampled_means(a, resamples, rng) - resampled_means(b, resamples, rng))


def permutation_p(a, b, max_exact, resamples, rng):
  """Two-sided p of |mean(a) - mean(b)| under relabelling of the pooled values -> (p, exact)."""
  pooled = np.asarray(list(a) + list(b), float)
  n, k = len(pooled), len(a)
  observed = abs(np.mean(a) - np.mean(b))
  total = pooled.sum()
  tolerance = 1e-12 * max(1.0, abs(total))

  def extreme(sum_a):
    return abs(sum_a / k - (total - sum_a) / (n - k)) >= observed - tolerance

  if math.comb(n, k) <= max_exact:
    hits = [extreme(pooled[list(idx)].sum()) for idx in itertools.combinations(range(n), k)]
    return float(np.mean(hits)), True
  relabelled = np.argsort(rng.random((resamples, n)), axis=1)[:, :k]     # [R, k] indices
  sums = pooled[relabelled].sum(axis=1)
  hits = np.abs(sums / k - (total - sums) / (n - k)) >= observed - tolerance
  return float((hits.sum() + 1) / (resamples + 1)), False


def paired_differences(a, b):
  """{seed: value} twice, over the same seeds -> a_s - b_s [n], in the order of a's seeds."""
  if set(a) != set(b):
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    raise CompareError(f'--paired needs the same seeds in both groups (only in a: {only_a}, '
                       f'only in b: {only_b})')
  return np.array([a[s] - b[s] for s in a], float)


def seed_correlation(a, b):
  """Pearson r of a_s and b_s over the shared seeds (how much of the spread the seed sets:
  pairing helps when r > 0); NaN when either group does not vary."""
  x = np.array([a[s] for s in a], float)
  y = np.array([b[s] for s in a], float)
  if x.std() == 0 or y.std() == 0:
    return float('nan')
  return float(np.corrcoef(x, y)[0, 1])


def paired_bootstrap_interval(differences, resamples, rng):
  """95% percentile interval of the mean of the per-seed differences, seeds resampled."""
  return interval_95(resampled_means(differences, resamples, rng))


def sign_flip_p(differences, max_exact, resamples, rng):
  """Two-sided p of |mean(d)| under random signs of the per-seed differences -> (p, exact)."""
  d = np.asarray(differences, float)
  n = len(d)
  observed = abs(d.mean())
  tolerance = 1e-12 * max(1.0, np.abs(d).sum())
  if 2 ** n <= max_exact:
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))     # [2^n, n]
    return float(np.mean(np.abs(signs @ d) / n >= observed - tolerance)), True
  signs = rng.choice((1.0, -1.0), (resamples, n))
  hits = np.abs(signs @ d) / n >= observed - tolerance
  return float((hits.sum() + 1) / (resamples + 1)), False


def compare(rows, selector_a, selector_b, metric='success', resamples=100_000,
            max_exact=200_000, seed=0, paired=False):
  """Rows (dicts of strings) and two selectors -> {per-seed values {seed: value} and means of
  each group, 'difference' (a - b), 'bootstrap_95' [low, high], 'permutation_p', 'paired',
  ...}. paired: the same seeds in both groups, the per-seed differences as the unit."""
  a = select_group(rows, selector_a, metric, 'a')
  b = select_group(rows, selector_b, metric, 'b')
  if len(a) < 2 or len(b) < 2:
    raise CompareError(f'each group needs 2 seeds or more (a has {len(a)}, b has {len(b)})')
  rng = np.random.default_rng(seed)
  values_a, values_b = list(a.values()), list(b.values())
  extra = {}
  if paired:
    differences = paired_differences(a, b)
    low, high = paired_bootstrap_interval(differences, resamples, rng)
    p, exact = sign_flip_p(differences, max_exact, resamples, rng)
    extra['seed_correlation'] = seed_correlation(a, b)
  else:
    low, high = bootstrap_interval(values_a, values_b, resamples, rng)
    p, exact = permutation_p(values_a, values_b, max_exact, resamples, rng)
  mean_a, mean_b = float(np.mean(values_a)), float(np.mean(values_b))
  return {'metric': metric, 'a': selector_a, 'b': selector_b,
          'a_per_seed': a, 'b_per_seed': b, 'a_mean': mean_a, 'b_mean': mean_b,
          'difference': mean_a - mean_b, 'bootstrap_95': [low, high],
          'permutation_p': p, 'permutation_exact': exact, 'paired': paired, **extra}


def describe(result):
  """The comparison as a few printable lines."""
  name = lambda s: ','.join([s['agent']] + [f'{k}={v}' for k, v in s.items() if k != 'agent'])
  lines = []
  for g in ('a', 'b'):
    values = ' / '.join(f'{v:.2f}' for v in result[f'{g}_per_seed'].values())
    lines.append(f"{g}: {name(result[g])}: {result[f'{g}_mean']:.3f} over "
                 f"{len(result[f'{g}_per_seed'])} seeds ({values})")
  low, high = result['bootstrap_95']
  test = 'paired sign-flip p' if result.get('paired') else 'permutation p'
  lines.append(f"a - b: {result['difference']:+.3f}, bootstrap 95% [{low:+.3f}, {high:+.3f}], "
               f"{test} = {result['permutation_p']:.3f} "
               f"({'exact' if result['permutation_exact'] else 'sampled'})")
  if result.get('paired'):
    lines.append(f"per-seed correlation of a and b: r = {result['seed_correlation']:+.2f}")
  return '\n'.join(lines)
