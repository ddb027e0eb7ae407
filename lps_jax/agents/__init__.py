"""Agent registry: name -> module with an agent class and get_config()."""
import importlib

AGENT_MODULES = {
    'lps': ('lps_jax.agents.lps', 'LPSAgent'),
    'fql': ('lps_jax.agents.fql', 'FQLAgent'),
    'qcmfql': ('lps_jax.agents.qcmfql', 'QCMFQLAgent'),
    'rebrac': ('lps_jax.agents.rebrac', 'ReBRACAgent'),
    'dsrl': ('lps_jax.agents.dsrl', 'DSRLAgent'),
    'lawr': ('lps_jax.agents.lawr', 'LAWRAgent'),
}


def get_agent_class(name: str):
  """The agent class registered as `name`; ValueError naming the choices otherwise."""
  if name not in AGENT_MODULES:
    raise ValueError(f'unknown agent {name!r}; choose from {sorted(AGENT_MODULES)}')
  module_name, class_name = AGENT_MODULES[name]
  return getattr(importlib.import_module(module_name), class_name)
