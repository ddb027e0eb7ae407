"""Tasks: a dataset of transitions plus a way to evaluate a policy on it.

A policy is `policy_fn(observations [B, O]) -> actions [B, D]` (numpy in, numpy out, D the
flattened chunk), deterministic or carrying its own RNG.
"""
import dataclasses
from typing import Callable, Dict, Optional

import numpy as np

from lps_jax.data import toy

TOY_TASK = 'toy'               # the contextual one-ring bandit (default)
TOY_RINGS_TASK = 'toy-rings'   # the old two-rings variant (a finding, see toy.py)
TOY_TASKS = (TOY_TASK, TOY_RINGS_TASK)
PLOT_CONTEXTS = (-1.0, -0.5, 0.0, 0.5, 1.0)


@dataclasses.dataclass
class Task:
  name: str
  transitions: Dict[str, np.ndarray]
  observation_dim: int
  action_dim: int                        # per env step; the agent acts on horizon * this
  # (policy_fn, num_episodes, seed) -> metrics
  evaluate: Callable[[Callable, int, int], Dict[str, float]]
  # (policy_fn, path) -> writes a picture of the policy, or None
  plot: Optional[Callable[[Callable, str], None]] = None


def make_toy_task(num_samples: int = 10_000, seed: int = 0, **reward_kwargs) -> Task:
  """The contextual one-ring bandit: evaluate on an even grid of `num_episodes` contexts."""
  transitions = toy.make_ring_transitions(num_samples, seed, **reward_kwargs)

  def evaluate(policy_fn, num_episodes, seed):
    del seed
    contexts = toy.evaluation_contexts(num_episodes)
    return toy.evaluate_ring_actions(contexts, np.asarray(policy_fn(contexts)),
                                     transitions['rewards'], **reward_kwargs)

  def plot(policy_fn, path, samples_per_context: int = 32):
    contexts = np.repeat(np.asarray(PLOT_CONTEXTS, np.float32), samples_per_context)[:, None]
    actions = np.asarray(policy_fn(contexts))[:, :toy.ACTION_DIM]
    toy.plot_ring_policy(path, transitions['actions'], PLOT_CONTEXTS,
                         actions.reshape(len(PLOT_CONTEXTS), samples_per_context, -1),
                         reward_kwargs=reward_kwargs)

  return Task(TOY_TASK, transitions, toy.CONTEXT_DIM, toy.ACTION_DIM, evaluate, plot)


def make_toy_rings_task(num_samples: int = 10_000, seed: int = 0) -> Task:
  """The two-rings variant: one dummy state; `num_episodes` sampled actions are evaluated."""
  transitions = toy.make_rings_transitions(num_samples, seed)

  def policy_actions(policy_fn, num_samples):
    return np.asarray(policy_fn(np.ones((num_samples, toy.RINGS_OBSERVATION_DIM), np.float32)))

  def evaluate(policy_fn, num_episodes, seed):
    del seed
    return toy.evaluate_actions(policy_actions(policy_fn, num_episodes), transitions['rewards'])

  def plot(policy_fn, path):
    toy.plot_actions(path, transitions['actions'], policy_actions(policy_fn, 256))

  return Task(TOY_RINGS_TASK, transitions, toy.RINGS_OBSERVATION_DIM, toy.ACTION_DIM, evaluate,
              plot)


def make_task(config) -> Task:
  """The task named by config.task: 'toy', 'toy-rings' or an OGBench single-task env name."""
  if config.task == TOY_TASK:
    return make_toy_task()
  if config.task == TOY_RINGS_TASK:
    return make_toy_rings_task()
  from lps_jax.data import ogbench_task  # pylint: disable=g-import-not-at-top
  return ogbench_task.make_ogbench_task(config)
