"""L-AWR run config: `--config=experiments/configs/lawr.py[:variant]` (toy, test, ogbench, ogbench_small).

Phase 1 (flow BC) lasts agent.flow_steps updates, set here to half of num_steps; override both
together, e.g. `--config.num_steps=20000 --config.agent.flow_steps=10000`.
"""
from lps_jax import config_lib, tasks
from lps_jax.agents import lawr


def get_config(variant: str = 'toy'):
  config = config_lib.make_run_config(lawr.get_config(), variant)
  config.agent.flow_steps = config.num_steps // 2
  if config.task in tasks.TOY_TASKS:
    # Toy bandit: rewards in [0, 1], masks = 0, so values lie in [0, 1].
    config.agent.v_min, config.agent.v_max = -0.25, 1.25
    config.agent.num_bins = 51
    config.agent.temperature = 0.1
  return config
