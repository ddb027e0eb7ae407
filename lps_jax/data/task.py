"""The Task every task maker returns: a dataset of transitions plus ways to evaluate on it.

A policy is `policy_fn(observations [B, O]) -> actions [B, D]` (numpy in, numpy out, D the
flattened chunk), deterministic or carrying its own RNG. A task may evaluate a policy in an
environment (`evaluate`), evaluate the agent itself on held-out data (`evaluate_agent`), both,
or neither (then a run only logs training metrics).
"""
import dataclasses
from typing import Callable, Dict, Optional

import numpy as np


@dataclasses.dataclass
class Task:
  name: str
  transitions: Dict[str, np.ndarray]
  observation_dim: int
  action_dim: int                        # per env step; the agent acts on horizon * this
  # (policy_fn, num_episodes, seed) -> metrics, or None: no environment to roll out in
  evaluate: Optional[Callable[[Callable, int, int], Dict[str, float]]]
  # (policy_fn, path) -> writes a picture of the policy, or None
  plot: Optional[Callable[[Callable, str], None]] = None
  # (agent, policy_fn, seed) -> metrics on held-out data, or None
  evaluate_agent: Optional[Callable[[object, Callable, int], Dict[str, float]]] = None

  @property
  def has_evaluation(self) -> bool:
    return self.evaluate is not None or self.evaluate_agent is not None


def run_evaluation(task: Task, agent, policy_fn, num_episodes: int, seed: int) -> Dict[str, float]:
  """Every evaluation the task has, merged into one metrics dict ({} when it has none)."""
  metrics = {}
  if task.evaluate is not None:
    metrics.update(task.evaluate(policy_fn, num_episodes, seed))
  if task.evaluate_agent is not None:
    metrics.update(task.evaluate_agent(agent, policy_fn, seed))
  return metrics
