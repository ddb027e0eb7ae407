"""FQL run config: `--config=experiments/configs/fql.py[:variant]` (toy, test, ogbench, ogbench_small).

alpha is the distillation weight (also `hparams['alpha']`); OGBench values from the FQL paper:
300 cube/scene, 1000 puzzle (no Q normalisation).
"""
from lps_jax import config_lib
from lps_jax.agents import fql


def get_config(variant: str = 'toy'):
  config = config_lib.make_run_config(fql.get_config(), variant)
  if config.variant.startswith('ogbench'):
    config.agent.alpha = 300.0
  return config
