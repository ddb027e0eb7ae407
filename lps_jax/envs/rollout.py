"""Open-loop chunked evaluation of a policy in any Gymnasium env.

The policy maps one observation [O] to a chunk [h * A]; the chunk's h actions run open-loop
(stopping at episode end), then the policy is asked again. `observe` turns the env's
observation into the flat vector the agent was trained on, `act` maps the agent's action in
[-1, 1]^A to the env's action space.
"""
from typing import Callable, Dict

import numpy as np


def evaluate_chunked(env, policy_fn: Callable, num_episodes: int, horizon: int, seed: int = 0,
                     observe: Callable = np.asarray, act: Callable = np.asarray
                     ) -> Dict[str, float]:
  """Episode e is reset with seed `seed + e`.

  Returns {'return', 'episode_length', 'num_episodes'} (means over episodes), plus 'success'
  (the mean of info['success'] at episode end) when the env reports one.
  """
  returns, lengths, successes = [], [], []
  for episode in range(num_episodes):
    observation, info = env.reset(seed=int(seed) + episode)
    done, total, length = False, 0.0, 0
    while not done:
      chunk = np.asarray(policy_fn(np.asarray(observe(observation), np.float32)), np.float64)
      for action in chunk.reshape(horizon, -1):
        observation, reward, terminated, truncated, info = env.step(act(action))
        total += float(reward)
        length += 1
        done = bool(terminated or truncated)
        if done:
          break
    returns.append(total)
    lengths.append(length)
    if 'success' in info:
      successes.append(float(info['success']))
  metrics = {'return': float(np.mean(returns)), 'episode_length': float(np.mean(lengths)),
             'num_episodes': int(num_episodes)}
  if successes:
    metrics['success'] = float(np.mean(successes))
  return metrics
