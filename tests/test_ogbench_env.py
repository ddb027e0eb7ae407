"""Lockstep chunked evaluation: clipping, seeds, batching, open-loop chunks."""
import gymnasium
import numpy as np
import pytest

from lps_jax.envs import ogbench_env

TASK = 'cube-single-play-singletask-task1-v0'


class FakeEnv:
  """Ends after 3 + seed % 4 steps; success = seed odd; records every action it gets."""

  def __init__(self):
    self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    self.actions = []

  def reset(self, seed=None):
    self.seed, self.t = seed, 0
    return np.array([seed, 0.0], np.float32), {}

  def step(self, action):
    self.actions.append(np.array(action))
    self.t += 1
    done = self.t >= 3 + self.seed % 4
    info = {'success': float(self.seed % 2 == 1 and done)}
    return np.array([self.seed, self.t], np.float32), -1.0, done, False, info


def test_actions_are_clipped_to_the_env_bounds():
  envs = [FakeEnv() for _ in range(2)]
  chunk = np.array([3.0, -3.0, 0.5, -0.25])      # h = 2 steps of A = 2
  policy = lambda obs: np.tile(chunk, (len(obs), 1))
  ogbench_env.evaluate('fake', policy, 2, horizon=2, action_dim=2, envs=envs)
  for env in envs:
    np.testing.assert_array_equal(env.actions[0], [1.0, -1.0])    # not [3, -3], not [1, 0]
    np.testing.assert_array_equal(env.actions[1], [0.5, -0.25])


def test_lockstep_matches_one_episode_at_a_time():
  calls = []

  def policy(obs):
    calls.append(len(obs))
    return np.tanh(np.concatenate([obs, -obs], axis=1) * 0.1)   # h = 2, A = 2

  together = ogbench_env.evaluate('fake', policy, 5, 2, 2, seed=10,
                                  envs=[FakeEnv() for _ in range(5)])
  assert set(calls) == {5}                                  # one batched call per chunk
  calls.clear()
  alone = ogbench_env.evaluate('fake', policy, 5, 2, 2, seed=10, envs=[FakeEnv()])
  assert set(calls) == {1}
  assert together == alone
  # seeds 10..14: lengths 5, 6, 3, 4, 5; odd seeds succeed.
  assert together['episode_length'] == pytest.approx(np.mean([5, 6, 3, 4, 5]))
  assert together['success'] == pytest.approx(2 / 5)
  waves = ogbench_env.evaluate('fake', policy, 5, 2, 2, seed=10, envs=[FakeEnv(), FakeEnv()])
  assert waves == together and calls[-1] == 2               # last wave padded to 2 rows


def test_chunks_run_open_loop_and_bad_shapes_raise():
  env = FakeEnv()
  observations = []

  def policy(obs):
    observations.append(obs.copy())
    return np.zeros((len(obs), 3 * 2))

  ogbench_env.evaluate('fake', policy, 1, 3, 2, seed=2, envs=[env])   # 5 steps: chunks 3 + 2
  assert len(env.actions) == 5 and [o[0, 1] for o in observations] == [0.0, 3.0]
  with pytest.raises(ValueError, match='policy_fn returned shape'):
    ogbench_env.evaluate('fake', lambda o: np.zeros((len(o), 5)), 1, 3, 2, envs=[FakeEnv()])


def test_cube_env_chunked_rollout():
  assert ogbench_env.env_id(TASK) == 'cube-single-singletask-task1-v0'
  calls = []

  def policy(obs):
    assert obs.shape == (2, 28) and obs.dtype == np.float32
    calls.append(obs)
    return np.full((2, 5 * 5), 3.0)

  res = ogbench_env.evaluate(TASK, policy, num_episodes=2, horizon=5, action_dim=5, seed=0)
  assert res['episode_length'] == 200 and len(calls) == 40  # 200-step limit, 5-step chunks
  assert res['return'] == -200.0 and res['success'] == 0.0 and res['num_episodes'] == 2
