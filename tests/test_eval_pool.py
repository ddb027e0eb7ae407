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
