"""OGBench single-task environments: construction and lockstep, open-loop chunked evaluation.

Single-task envs (e.g. 'cube-single-singletask-task1-v0', or the dataset-style name
'cube-single-play-singletask-task1-v0') are registered by OGBench with success_timing='pre' and
terminate_at_goal=True: env.step(a) taken in state s returns the reward / success of s and ends
the episode when s solves the task. Time limits are OGBench's (cube-single 200, cube-double 500,
scene 750, puzzle-3x3 500, puzzle-4x4 500, pointmaze-medium 1000 steps).

Evaluation runs E episodes in lockstep, one env each (episode e reset with seed + e):

    obs [E, O] --policy_fn (one batched call)--> chunks [E, h * A] --clip to the env bounds-->
    each running env executes its chunk open-loop (h steps, or until its episode ends)
    --> repeat until every episode has ended
"""
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

DATASET_TYPES = ('play', 'noisy', 'navigate', 'stitch', 'explore')


# Lockstep envs per evaluation; more episodes run in waves of this many. One OGBench
# manipulation env holds ~170 MB (measured on cube-single), so one env per episode (50) was
# 8.5 GB per process and swapped a 16-process GPU machine's evaluation pool.
MAX_LOCKSTEP_ENVS = 10


def env_id(env_name: str) -> str:
  """Gym id of a single-task env; accepts dataset-style names.

  'cube-single-play-singletask-task1-v0' -> 'cube-single-singletask-task1-v0'.
  """
  splits = env_name.split('-')
  if 'singletask' in splits:
    pos = splits.index('singletask')
    if pos >= 2 and splits[pos - 1] in DATASET_TYPES:
      return '-'.join(splits[:pos - 1] + splits[pos:])
  return env_name


def make_env(env_name: str, seed: Optional[int] = None, **env_kwargs):
  """An OGBench env (single-task for evaluation), reset once with `seed` if given."""
  import gymnasium  # pylint: disable=g-import-not-at-top
  import ogbench  # pylint: disable=g-import-not-at-top,unused-import  (registers the envs)
  env = gymnasium.make(env_id(env_name), **env_kwargs)
  if seed is not None:
    env.reset(seed=int(seed))
  return env


def action_bounds(env):
  """The env's action box as float64 arrays (low [A], high [A])."""
  return (np.asarray(env.action_space.low, np.float64),
          np.asarray(env.action_space.high, np.float64))


def _check_chunks(chunks: np.ndarray, num_envs: int, chunk_dim: int) -> np.ndarray:
  chunks = np.asarray(chunks, np.float64)
  if chunks.shape != (num_envs, chunk_dim):
    raise ValueError(f'policy_fn returned shape {chunks.shape}, expected (num_envs, '
                     f'horizon*action_dim) = ({num_envs}, {chunk_dim})')
  return chunks


def run_lockstep(envs: Sequence, policy_fn: Callable, horizon: int, action_dim: int,
                 seeds: Sequence[int]) -> Dict[str, np.ndarray]:
  """One episode per env, all in lockstep -> per-episode arrays.

  policy_fn(observations [E, O] float32) -> chunks [E, horizon * action_dim]; it is called
  once per chunk boundary for all E envs (envs already done are fed their last observation and
  their chunk is ignored, so the batch shape never changes). Each action is clipped to the
  env's [low, high] before env.step.
  Returns {'success', 'return', 'episode_length'}, each [E].
  """
  num_envs = len(envs)
  low, high = action_bounds(envs[0])
  if low.shape != (action_dim,):
    raise ValueError(f'action_dim={action_dim} but the env has action shape {low.shape}')
  observations = []
  for env, seed in zip(envs, seeds):
    observation, _ = env.reset(seed=int(seed))
    observations.append(np.asarray(observation, np.float32))
  observations = np.stack(observations)
  running = np.ones(num_envs, bool)
  success = np.zeros(num_envs)
  returns = np.zeros(num_envs)
  lengths = np.zeros(num_envs, np.int64)
  while running.any():
    chunks = _check_chunks(policy_fn(observations), num_envs, horizon * action_dim)
    chunks = np.clip(chunks.reshape(num_envs, horizon, action_dim), low, high)
    for e in np.flatnonzero(running):
      for action in chunks[e]:
        observation, reward, terminated, truncated, info = envs[e].step(action)
        returns[e] += float(reward)
        lengths[e] += 1
        if terminated or truncated:
          running[e] = False
          success[e] = float(info.get('success', 0.0))
          break
      observations[e] = observation
  return {'success': success, 'return': returns, 'episode_length': lengths}


def grow_envs(env_name: str, envs: List, num_episodes: int) -> List:
  """Lockstep envs for num_episodes: `envs` (a caller's reusable list) grown in place to
  min(num_episodes, MAX_LOCKSTEP_ENVS) envs of env_name -> that many of them."""
  count = min(num_episodes, MAX_LOCKSTEP_ENVS)
  while len(envs) < count:
    envs.append(make_env(env_name))
  return envs[:count]


def evaluate(env_name: str, policy_fn: Callable, num_episodes: int, horizon: int,
             action_dim: int, seed: int = 0, envs: Optional[Sequence] = None,
             num_envs: Optional[int] = None) -> Dict[str, float]:
  """Mean metrics of `num_episodes` episodes of a batched chunked policy (episode e: seed + e).

  policy_fn(observations [E, O]) -> chunks [E, horizon * action_dim] (see run_lockstep).
  The episodes run in waves of E = num_envs (default: MAX_LOCKSTEP_ENVS) lockstep envs; `envs`
  reuses already-made envs (E = len(envs)).
  Returns {'success': mean info['success'] at episode end, 'return': mean undiscounted return,
           'episode_length': mean length, 'num_episodes': n}.
  """
  if envs is None:
    envs = grow_envs(env_name, [], min(num_envs or MAX_LOCKSTEP_ENVS, num_episodes))
  results = []
  for first in range(0, num_episodes, len(envs)):
    wave = envs[:min(len(envs), num_episodes - first)]
    seeds = [int(seed) + first + e for e in range(len(wave))]
    if len(wave) < len(envs):   # keep the policy's batch shape: pad with idle copies
      results.append(_run_padded(envs, wave, policy_fn, horizon, action_dim, seeds))
    else:
      results.append(run_lockstep(wave, policy_fn, horizon, action_dim, seeds))
  merged = {k: np.concatenate([r[k] for r in results]) for k in results[0]}
  return {
      'success': float(np.mean(merged['success'])),
      'return': float(np.mean(merged['return'])),
      'episode_length': float(np.mean(merged['episode_length'])),
      'num_episodes': int(num_episodes),
  }


def _run_padded(envs, wave, policy_fn, horizon, action_dim, seeds):
  """A last, smaller wave: the policy still sees len(envs) rows (the extra rows are repeats)."""
  num = len(wave)

  def padded_policy(observations):
    rows = np.concatenate([observations, np.repeat(observations[-1:], len(envs) - num, 0)])
    return np.asarray(policy_fn(rows))[:num]

  return run_lockstep(wave, padded_policy, horizon, action_dim, seeds)
