"""Agent registry: name -> module with an agent class and get_config(); create_agent."""
import copy
import importlib

import jax
import jax.numpy as jnp

AGENT_MODULES = {
    'lps': ('lps_jax.agents.lps', 'LPSAgent'),
    'fql': ('lps_jax.agents.fql', 'FQLAgent'),
    'qcmfql': ('lps_jax.agents.qcmfql', 'QCMFQLAgent'),
    'rebrac': ('lps_jax.agents.rebrac', 'ReBRACAgent'),
    'dsrl': ('lps_jax.agents.dsrl', 'DSRLAgent'),
    'lawr': ('lps_jax.agents.lawr', 'LAWRAgent'),
}
MAX_SEED = 2**32 - 1        # jax.random.PRNGKey's seeds; others are created eagerly


def get_agent_class(name: str):
  """The agent class registered as `name`; ValueError naming the choices otherwise."""
  if name not in AGENT_MODULES:
    raise ValueError(f'unknown agent {name!r}; choose from {sorted(AGENT_MODULES)}')
  module_name, class_name = AGENT_MODULES[name]
  return getattr(importlib.import_module(module_name), class_name)


def create_agent(agent_cls, seed: int, observation_dim: int, action_dim: int, config):
  """agent_cls.create(seed, observation_dim, action_dim, config) as ONE compiled program.

  Called eagerly, create dispatches every initialiser op as its own program: ~90 compiles on
  the first agent of a process (3.7 s on a CPU at XLA's lowest optimisation level, 6-7.5 s at
  the default). Here it compiles once per (class, shapes, config) and every seed reuses it; the
  leaves are bit-identical to the eager create's (tests/test_actor_objective.py).
  """
  if not 0 <= seed <= MAX_SEED:
    return agent_cls.create(seed, observation_dim, action_dim, config)
  key = (agent_cls, observation_dim, action_dim, config.to_json(sort_keys=True))
  if key not in _CREATE_FNS:
    frozen = copy.deepcopy(config)      # later edits of `config` must not reach the program
    _CREATE_FNS[key] = jax.jit(
        lambda s: agent_cls.create(s, observation_dim, action_dim, frozen))
  return _CREATE_FNS[key](jnp.uint32(seed)).replace(config=config)


_CREATE_FNS = {}     # (class, observation_dim, action_dim, config JSON) -> jitted create
