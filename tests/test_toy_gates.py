"""Learning gates on the default toy task (the contextual one-ring bandit). They run in CI.

Each gate trains its seeds (x alphas) as ONE vmapped program at the default toy config
(experiments/configs/<agent>.py:toy) and evaluates on the 256-context grid:

  LPS        every one of 5 seeds: mean reward >= 0.9 and <= 5% of actions out of support
  alpha      FQL over alpha in {0.1, 1, 10, 100, 1000}, seed 0 (paper Fig. 2; the CI-sized
             version: the 3-seed grid with ReBRAC is experiments/alpha_sensitivity.py):
             - alpha = 1000 is conservative: its reward is within 0.1 of the data's mean reward
             - alpha = 0.1 leaves the support (>= 30% out of support) or collapses
             - LPS at its one default >= FQL at its best alpha - 0.05, <= 5% out of support
  QC-MFQL    alpha in {0.01, 1000}, seed 0, one program (the same shape on a MeanFlow BC policy):
             - alpha = 1000 is conservative: its reward is within 0.1 of the data's mean reward
             - alpha = 0.01 leaves the support: >= 20 points more of its actions out of support
               than at alpha = 1000 (the one-step BC itself puts ~30% off the ring here)

Planted bugs each gate was seen to catch are listed in docs/toy.md ("The learning gates").
"""
import numpy as np
import pytest

from conftest import FULL_OPTIMIZATION
from lps_jax import tasks, toy_study

LPS_SEEDS = (0, 1, 2, 3, 4)
ALPHA_SEEDS = (0,)
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
QCMFQL_ALPHAS = (0.01, 1000.0)


def _mean(metrics, key):
  return float(np.mean([m[key] for m in metrics]))


@pytest.fixture(scope='module')
def task():
  return tasks.make_toy_task()


@pytest.fixture(scope='module')
def lps_metrics(task):
  runs = toy_study.train_members(toy_study.run_config('lps'), [{'seed': s} for s in LPS_SEEDS],
                                 task, compiler_options=FULL_OPTIMIZATION)
  return toy_study.evaluate_members(runs, task)


@pytest.fixture(scope='module')
def fql_metrics(task):
  """{alpha: [metrics per seed]} for FQL, all alphas x seeds in one program."""
  members = [{'seed': s, 'agent.alpha': a} for a in ALPHAS for s in ALPHA_SEEDS]
  runs = toy_study.train_members(toy_study.run_config('fql'), members, task,
                                 compiler_options=FULL_OPTIMIZATION)
  metrics = toy_study.evaluate_members(runs, task)
  return {a: [m for member, m in zip(members, metrics) if member['agent.alpha'] == a]
          for a in ALPHAS}


@pytest.fixture(scope='module')
def qcmfql_metrics(task):
  """{alpha: metrics} for QC-MFQL, seed 0, both alphas in one program."""
  members = [{'seed': 0, 'agent.alpha': a} for a in QCMFQL_ALPHAS]
  runs = toy_study.train_members(toy_study.run_config('qcmfql'), members, task,
                                 compiler_options=FULL_OPTIMIZATION)
  return dict(zip(QCMFQL_ALPHAS, toy_study.evaluate_members(runs, task)))


def test_lps_every_seed_reaches_the_peak_on_support(lps_metrics):
  for seed, metrics in zip(LPS_SEEDS, lps_metrics):
    assert metrics['reward'] >= 0.9, (seed, metrics)
    assert metrics['out_of_support'] <= 0.05, (seed, metrics)


def test_fql_large_alpha_is_conservative(fql_metrics):
  metrics = fql_metrics[max(ALPHAS)]
  gap = abs(_mean(metrics, 'reward') - _mean(metrics, 'dataset_reward'))
  assert gap <= 0.1, metrics


def test_fql_small_alpha_leaves_the_support(fql_metrics):
  metrics = fql_metrics[min(ALPHAS)]
  collapsed = _mean(metrics, 'reward') <= _mean(metrics, 'dataset_reward')
  assert _mean(metrics, 'out_of_support') >= 0.3 or collapsed, metrics


def test_lps_default_matches_fql_at_its_best_alpha(lps_metrics, fql_metrics):
  best_alpha = max(ALPHAS, key=lambda a: _mean(fql_metrics[a], 'reward'))
  best = _mean(fql_metrics[best_alpha], 'reward')
  assert _mean(lps_metrics, 'reward') >= best - 0.05, (best_alpha, best, lps_metrics)
  assert _mean(lps_metrics, 'out_of_support') <= 0.05, lps_metrics


def test_qcmfql_large_alpha_is_conservative(qcmfql_metrics):
  metrics = qcmfql_metrics[max(QCMFQL_ALPHAS)]
  assert abs(metrics['reward'] - metrics['dataset_reward']) <= 0.1, metrics


def test_qcmfql_small_alpha_leaves_the_support(qcmfql_metrics):
  small, large = (qcmfql_metrics[a] for a in QCMFQL_ALPHAS)
  assert small['out_of_support'] >= large['out_of_support'] + 0.2, (small, large)
