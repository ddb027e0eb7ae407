"""Chunked on-device sampling: episode boundaries, n-step rewards, masks, validation."""
import jax
import numpy as np
import pytest

from conftest import random_transitions
from lps_jax.data import dataset as dataset_lib


def test_chunk_starts_never_cross_episodes():
  transitions = random_transitions(num_episodes=5, episode_length=7)
  episode = np.cumsum(np.concatenate([[0], transitions['terminals'][:-1]]))
  for horizon in (1, 3, 7):
    starts = dataset_lib.chunk_starts(transitions['terminals'], horizon)
    assert len(starts) == 5 * (7 - horizon + 1)
    assert np.all(episode[starts] == episode[starts + horizon - 1])
  assert len(dataset_lib.chunk_starts(transitions['terminals'], 8)) == 0


def test_sampled_batch_matches_numpy_reference():
  transitions = random_transitions(num_episodes=4, episode_length=6)
  horizon, discount, batch_size = 3, 0.9, 64
  data = dataset_lib.to_device(transitions, horizon)
  batch = jax.jit(dataset_lib.sample_batch, static_argnums=(2, 3, 4))(
      data, jax.random.PRNGKey(0), batch_size, horizon, discount)
  batch = jax.tree.map(np.asarray, batch)
  assert batch['actions'].shape == (batch_size, horizon * 2)
  for row in range(batch_size):
    # Find the start index from the observation (random normals are unique).
    start = int(np.flatnonzero((transitions['observations'] == batch['observations'][row]).all(1))[0])
    chunk = slice(start, start + horizon)
    assert transitions['terminals'][start:start + horizon - 1].sum() == 0
    np.testing.assert_allclose(batch['actions'][row], transitions['actions'][chunk].reshape(-1))
    reward, alive = 0.0, 1.0
    for k in range(horizon):
      reward += discount ** k * alive * transitions['rewards'][start + k]
      alive *= transitions['masks'][start + k]
    np.testing.assert_allclose(batch['rewards'][row], reward, rtol=1e-5, atol=1e-6)
    assert batch['masks'][row] == alive
    np.testing.assert_allclose(batch['next_observations'][row],
                               transitions['next_observations'][start + horizon - 1])


@pytest.mark.parametrize('corrupt, message', [
    (lambda t: t.pop('rewards'), 'missing keys'),
    (lambda t: t.__setitem__('masks', t['masks'][:-1]), 'rows'),
    (lambda t: t['observations'].__setitem__((0, 0), np.nan), 'NaN'),
    (lambda t: t['actions'].__setitem__((0, 0), 1.5), 'outside'),
])
def test_malformed_transitions_give_one_line_errors(corrupt, message):
  transitions = random_transitions()
  corrupt(transitions)
  with pytest.raises(dataset_lib.DatasetError, match=message) as info:
    dataset_lib.to_device(transitions, 1, source='my.npz')
  assert 'my.npz' in str(info.value) and '\n' not in str(info.value)


def test_toy_rings_outer_fraction():
  from lps_jax.data import toy
  for fraction in (0.5, 0.654, 1.0):
    actions = toy.make_rings_transitions(1000, 0, fraction)['actions']
    radius = np.linalg.norm(actions, axis=-1)
    assert abs((radius > 0.65).mean() - fraction) < 2e-3, fraction
  with pytest.raises(ValueError, match='outer_fraction'):
    toy.make_rings_transitions(10, 0, 1.5)
