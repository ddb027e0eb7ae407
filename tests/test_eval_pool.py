"""Splitting a member's episodes over workers and joining the pieces back."""
import pytest

from lps_jax.envs import eval_pool


def test_split_episodes_covers_every_episode_once():
  pieces = eval_pool.split_episodes(50, 3)
  assert [list(p) for p in pieces] == [list(range(0, 17)), list(range(17, 33)),
                                       list(range(33, 50))]
  assert [list(p) for p in eval_pool.split_episodes(2, 5)] == [[0], [1]]
  assert [list(p) for p in eval_pool.split_episodes(4, 1)] == [[0, 1, 2, 3]]


def test_merge_weights_pieces_by_episodes():
  results = [('a', 3, {'success': 1.0, 'return': -3.0, 'num_episodes': 3}),
             ('b', 2, {'success': 0.5, 'return': -1.0, 'num_episodes': 2}),
             ('a', 1, {'success': 0.0, 'return': -7.0, 'num_episodes': 1})]
  merged = eval_pool.merge(results)
  assert merged['a'] == {'success': pytest.approx(0.75), 'return': pytest.approx(-4.0),
                         'num_episodes': 4}
  assert merged['b']['success'] == 0.5 and merged['b']['num_episodes'] == 2


def test_worker_keeps_few_envs(monkeypatch):
  """A job gets at most MAX_LOCKSTEP_ENVS envs (the rest of its episodes run in waves), envs are
  reused, and least recently used env names are closed beyond MAX_CACHED_ENVS (one
  manipulation env holds ~170 MB: 50 per task swapped a 16-worker machine)."""
  from lps_jax.envs import ogbench_env  # pylint: disable=g-import-not-at-top

  class FakeEnv:
    def __init__(self, name):
      self.name, self.closed = name, False

    def close(self):
      self.closed = True

  monkeypatch.setattr(ogbench_env, 'make_env', FakeEnv)
  monkeypatch.setattr(eval_pool, '_ENVS', {})
  cap = ogbench_env.MAX_LOCKSTEP_ENVS
  first = eval_pool._envs('task1', 50)
  assert len(first) == cap and eval_pool._envs('task1', 3) == first[:3]
  second = eval_pool._envs('task2', 50)
  assert not any(env.closed for env in first)          # 2 x cap fits in the cache
  eval_pool._envs('task1', 1)                           # task1 becomes the most recent
  eval_pool._envs('task3', 50)                          # over the cap: task2 goes
  assert all(env.closed for env in second) and not any(env.closed for env in first)
  assert list(eval_pool._ENVS) == ['task1', 'task3']
  assert sum(len(v) for v in eval_pool._ENVS.values()) <= eval_pool.MAX_CACHED_ENVS


def test_inline_pool_reuses_the_callers_env(monkeypatch):
  """An inline pool (workers=0) takes the env a dataset was loaded with: the first job's wave
  starts with it, and only the rest of the wave is built."""
  from lps_jax.envs import ogbench_env  # pylint: disable=g-import-not-at-top
  built = []
  monkeypatch.setattr(ogbench_env, 'make_env', lambda name: built.append(name) or object())
  monkeypatch.setattr(eval_pool, '_ENVS', {})
  dataset_env = object()
  eval_pool.EvalPool(0).keep_env('task1', dataset_env)
  wave = eval_pool._envs('task1', 2)
  assert wave[0] is dataset_env and len(wave) == 2 and built == ['task1']
