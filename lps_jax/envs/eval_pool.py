"""OGBench evaluation in parallel worker processes (JAX on CPU), overlapping with training.

    EvalPool(workers).submit(job) -> AsyncResult of evaluate_job(job)
    job = EvalJob(agent config + numpy params of ONE member, env name, episodes first..first+n)

Workers are spawned with JAX_PLATFORMS=cpu, no visible GPU and one BLAS thread each, so a GPU
trainer keeps its device while 14-16 CPU processes run the lockstep env rollouts
(lps_jax.envs.ogbench_env.evaluate). A worker rebuilds the agent once per (agent, config),
swaps in the job's params and jit-compiles sample_actions once.
"""
import dataclasses
import multiprocessing as mp
from typing import Any, Dict, List, Sequence

import numpy as np

from lps_jax.envs import worker_env

WORKER_ENV = {
    'JAX_PLATFORMS': 'cpu', 'CUDA_VISIBLE_DEVICES': '', 'MUJOCO_GL': 'disable',
    'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1',
    'XLA_PYTHON_CLIENT_PREALLOCATE': 'false',
}


@dataclasses.dataclass
class EvalJob:
  agent_config: Any                 # the member's ml_collections agent config
  observation_dim: int
  action_dim: int                   # per env step; the policy outputs horizon * this
  params: Dict[str, Any]            # {state name: numpy params} (multitask.member_params)
  env_name: str
  first_episode: int                # episodes first..first+num_episodes-1 ...
  num_episodes: int
  seed: int                         # ... are reset with seed + episode
  tag: Any = None                   # returned unchanged (e.g. (agent, task, seed, step))


_AGENTS = {}
_ENVS = {}
_SAMPLE = []


def _template_agent(job: EvalJob):
  import jax  # pylint: disable=g-import-not-at-top
  from lps_jax import agents as agents_lib  # pylint: disable=g-import-not-at-top
  config = job.agent_config
  key = (config.to_json(), job.observation_dim, job.action_dim)
  if key not in _AGENTS:
    agent_cls = agents_lib.get_agent_class(config.agent_name)
    _AGENTS[key] = agents_lib.create_agent(agent_cls, 0, job.observation_dim,
                                           config.horizon * job.action_dim, config)
  if not _SAMPLE:
    _SAMPLE.append(jax.jit(lambda agent, obs, key: agent.sample_actions(obs, key)))
  return _AGENTS[key]


# Envs kept per worker (ogbench_env.MAX_LOCKSTEP_ENVS per job; ~170 MB each).
MAX_CACHED_ENVS = 20


def _envs(env_name: str, count: int) -> List[Any]:
  """min(count, ogbench_env.MAX_LOCKSTEP_ENVS) envs of env_name, reused across jobs; the least
  recently used env names are dropped once more than MAX_CACHED_ENVS envs are kept."""
  from lps_jax.envs import ogbench_env  # pylint: disable=g-import-not-at-top
  envs = _ENVS.pop(env_name, [])
  _ENVS[env_name] = envs                      # most recently used last
  wave = ogbench_env.grow_envs(env_name, envs, count)
  while sum(len(v) for v in _ENVS.values()) > MAX_CACHED_ENVS and len(_ENVS) > 1:
    oldest = next(iter(_ENVS))
    for env in _ENVS.pop(oldest):
      env.close()
  return wave


def evaluate_job(job: EvalJob):
  """-> (job.tag, num_episodes, metrics) for the job's episodes, run in lockstep."""
  import warnings  # pylint: disable=g-import-not-at-top
  warnings.simplefilter('ignore')
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lps_jax import multitask  # pylint: disable=g-import-not-at-top
  from lps_jax.envs import ogbench_env  # pylint: disable=g-import-not-at-top
  agent = multitask.with_params(_template_agent(job), job.params)
  sample = _SAMPLE[0]
  rng = [jax.random.PRNGKey(job.seed * 1_000_003 + job.first_episode)]

  def policy_fn(observations):
    rng[0], key = jax.random.split(rng[0])
    return np.asarray(sample(agent, jnp.asarray(observations, jnp.float32), key))

  metrics = ogbench_env.evaluate(
      job.env_name, policy_fn, job.num_episodes, job.agent_config.horizon, job.action_dim,
      seed=job.seed + job.first_episode, envs=_envs(job.env_name, job.num_episodes))
  return job.tag, job.num_episodes, metrics


def split_episodes(num_episodes: int, num_pieces: int) -> List[range]:
  """Episodes 0..n-1 in at most num_pieces contiguous ranges of near-equal size."""
  num_pieces = max(1, min(num_pieces, num_episodes))
  bounds = np.linspace(0, num_episodes, num_pieces + 1).round().astype(int)
  return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def merge(results: Sequence) -> Dict[Any, Dict[str, float]]:
  """[(tag, n, metrics)] -> {tag: episode-weighted mean metrics} (pieces of one member joined)."""
  merged = {}
  for tag, n, metrics in results:
    total = merged.setdefault(tag, {'num_episodes': 0})
    for key, value in metrics.items():
      if key != 'num_episodes':
        total[key] = total.get(key, 0.0) + value * n
    total['num_episodes'] += n
  for total in merged.values():
    for key in total:
      if key != 'num_episodes':
        total[key] /= total['num_episodes']
  return merged


class _Done:
  """An already computed result with the AsyncResult methods the callers use."""

  def __init__(self, value):
    self.value = value

  def ready(self):
    return True

  def wait(self, timeout=None):
    del timeout

  def get(self, timeout=None):
    del timeout
    return self.value


class EvalPool:
  """A spawn pool of CPU evaluation workers (inline when workers == 0, for tests)."""

  def __init__(self, workers: int):
    self.workers = workers
    self._pool = None
    if workers > 0:
      with worker_env.scoped_environ(WORKER_ENV):   # inherited by the spawned workers only
        self._pool = mp.get_context('spawn').Pool(workers)

  def keep_env(self, env_name: str, env) -> None:
    """An env of env_name made by the caller (e.g. to load its dataset): inline (workers=0),
    this process's jobs reuse it instead of building one more (~1.6 s for an OGBench env)."""
    if self._pool is None:
      _ENVS.setdefault(env_name, []).append(env)

  def submit(self, job: EvalJob):
    """An AsyncResult-like object: .ready(), .wait(), .get() -> (tag, num_episodes, metrics)."""
    if self._pool is None:
      return _Done(evaluate_job(job))
    return self._pool.apply_async(evaluate_job, (job,))

  def close(self):
    if self._pool is not None:
      self._pool.close()
      self._pool.join()

  def terminate(self):
    if self._pool is not None:
      self._pool.terminate()
