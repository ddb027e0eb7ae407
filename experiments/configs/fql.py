"""FQL run config: `--config=experiments/configs/fql.py[:variant]` (toy, test, ogbench, ogbench_small).

The original FQL (Park et al. 2025; seohongpark/fql): one action per step (h = 1), no Q-loss
normalisation, q_agg mean, every network 4x512. alpha is the distillation weight (also
`hparams['alpha']`); OGBench values from the FQL paper, per domain: 300 cube / scene, 1000 puzzle.
QC-FQL (chunked, normalised) is experiments/configs/qcfql.py.
"""
from lps_jax import config_lib
from lps_jax.agents import fql

# FQL paper, OGBench manipulation (no Q normalisation).
ALPHA = {'cube-single': 300.0, 'cube-double': 300.0, 'scene': 300.0, 'puzzle-3x3': 1000.0,
         'puzzle-4x4': 1000.0}


def get_config(variant: str = 'toy'):
  config = config_lib.make_run_config(fql.get_config(), variant)
  if config.variant.startswith('ogbench'):
    config.agent.alpha = ALPHA[config_lib.ogbench_domain(variant)]
    config.agent.horizon = 1
  return config
