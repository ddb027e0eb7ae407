"""DSRL (noise-aliased) run config: `--config=experiments/configs/dsrl.py[:variant]`."""
from lps_jax import config_lib
from lps_jax.agents import dsrl


def get_config(variant: str = 'toy'):
  return config_lib.make_run_config(dsrl.get_config(), variant)
