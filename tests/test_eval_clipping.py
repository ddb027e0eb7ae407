"""OGBench evaluation clips every action to the env's own bounds before env.step.

A fake env with asymmetric bounds records what it receives; a fake policy returns chunks with
actions below, inside and above them. Dropping the clip, clipping to [0, high] or clipping to a
fixed [-1, 1] all change what the env receives.
"""
import inspect

import gymnasium
import numpy as np

from lps_jax.envs import ogbench_env

LOW = np.array([-0.5, -2.0], np.float32)
HIGH = np.array([1.0, 0.25], np.float32)
HORIZON, ACTION_DIM, EPISODE_LENGTH, OBS_DIM = 4, 2, 8, 3
# One chunk of the fake policy (row k is executed at step k of the chunk) and what the env must see.
CHUNK = np.array([[-3.0, 3.0], [0.7, -1.5], [-0.3, 0.1], [5.0, -5.0]], np.float32)
CLIPPED = np.array([[-0.5, 0.25], [0.7, -1.5], [-0.3, 0.1], [1.0, -2.0]], np.float32)


class RecordingEnv:
  """Gymnasium-style env: EPISODE_LENGTH steps per episode; records each episode's actions."""

  def __init__(self):
    self.action_space = gymnasium.spaces.Box(LOW, HIGH, dtype=np.float32)
    self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    self.episodes = []

  def reset(self, *, seed=None, options=None):
    del seed, options
    self.episodes.append([])
    return np.zeros(OBS_DIM, np.float32), {}

  def step(self, action):
    self.episodes[-1].append(np.array(action, np.float64))
    done = len(self.episodes[-1]) >= EPISODE_LENGTH
    return np.zeros(OBS_DIM, np.float32), -1.0, done, False, {'success': 0.0}

  def close(self):
    pass


def chunk_policy(observations):
  """obs [O] -> [H * A], or a batch [B, O] -> [B, H * A]: always the same out-of-bound chunk."""
  observations = np.asarray(observations)
  return np.broadcast_to(CHUNK.reshape(-1), observations.shape[:-1] + (HORIZON * ACTION_DIM,))


def test_evaluate_clips_actions_to_the_env_bounds(monkeypatch):
  envs = []

  def make_env(*args, **kwargs):
    del args, kwargs
    envs.append(RecordingEnv())
    return envs[-1]

  monkeypatch.setattr(ogbench_env, 'make_env', make_env)
  kwargs = {'seed': 0}
  if 'env' in inspect.signature(ogbench_env.evaluate).parameters:
    kwargs['env'] = make_env()
  num_episodes = 2
  metrics = ogbench_env.evaluate('cube-single-play-singletask-task1-v0', chunk_policy,
                                 num_episodes, HORIZON, ACTION_DIM, **kwargs)
  assert metrics['episode_length'] == EPISODE_LENGTH, metrics
  episodes = [episode for env in envs for episode in env.episodes if episode]
  assert len(episodes) == num_episodes
  for episode in episodes:
    received = np.stack(episode)
    expected = np.concatenate([CLIPPED] * (EPISODE_LENGTH // HORIZON))
    np.testing.assert_allclose(received, expected, rtol=0, atol=1e-6)
    assert np.all(received >= LOW) and np.all(received <= HIGH)
