"""QC-FQL run config, the LPS paper's baseline: `--config=experiments/configs/qcfql.py[:variant]`.

FQL with action chunks (Li et al., Q-chunking; ColinQiyangLi/qc): h = 5, Q-loss normalisation on,
q_agg mean, critic 4x256 (LayerNorm), flow and one-step policy 4x512. alpha per domain (the
values used with normalisation and chunks): cube-single 30, cube-double 3, scene 1,
puzzle-3x3 3, puzzle-4x4 10. Uses the FQL agent (agent_name 'fql').
"""
from lps_jax import config_lib
from lps_jax.agents import fql

ALPHA = {'cube-single': 30.0, 'cube-double': 3.0, 'scene': 1.0, 'puzzle-3x3': 3.0,
         'puzzle-4x4': 10.0}


def get_config(variant: str = 'toy'):
  agent = fql.get_config()
  agent.horizon = 5
  agent.normalize_q_loss = True
  agent.q_agg = 'mean'
  agent.critic_hidden_dims = (256, 256, 256, 256)
  config = config_lib.make_run_config(agent, variant)
  if config.variant.startswith('ogbench'):
    config.agent.alpha = ALPHA[config_lib.ogbench_domain(variant)]
  return config
