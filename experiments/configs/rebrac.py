"""ReBRAC run config: `--config=experiments/configs/rebrac.py[:variant]` (toy, test, ogbench, ogbench_small)."""
from lps_jax import config_lib
from lps_jax.agents import rebrac


def get_config(variant: str = 'toy'):
  return config_lib.make_run_config(rebrac.get_config(), variant)
