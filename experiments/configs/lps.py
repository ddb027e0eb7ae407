"""LPS run config: `--config=experiments/configs/lps.py[:variant]` (toy, test, ogbench, ogbench_small)."""
from lps_jax import config_lib
from lps_jax.agents import lps


def get_config(variant: str = 'toy'):
  return config_lib.make_run_config(lps.get_config(), variant)
