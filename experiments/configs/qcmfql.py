"""QC-MFQL run config, the alpha-sensitive baseline of the LPS paper's alpha figure:
`--config=experiments/configs/qcmfql.py[:variant]`.

A MeanFlow BC policy (as LPS's) distilled into a one-step actor mu(s, z) with FQL's loss, h = 5
(jellyho/LPS agents/qcmfql.py: flow and actor 4x512, critic 4x256 LayerNorm, q_agg min, the
Gaussian latent prior, Q-loss normalisation always on).

alpha per domain. The authors' scripts give no QC-MFQL value (their README lists LPS and QC-FQL
runs only; agents/qcmfql.py defaults to alpha = 1.0, used for the toy). Their README's QC-FQL
values per domain are used here (cube-single 30, cube-double 3, scene 1, puzzle-3x3 3,
puzzle-4x4 10): the same distillation loss, and where the paper's alpha figure peaks for
QC-MFQL (puzzle-3x3: 3; scene: 1 and 3; cube-double: ~0 at every alpha). Sources per domain
are in docs/alpha_ogbench.md.
"""
from lps_jax import config_lib
from lps_jax.agents import qcmfql

# jellyho/LPS README, the "QC-FQL" example lines (sh lps_ogbench.sh qcfql <domain> 1 <alpha> ...).
ALPHA = {'cube-single': 30.0, 'cube-double': 3.0, 'scene': 1.0, 'puzzle-3x3': 3.0,
         'puzzle-4x4': 10.0}


def get_config(variant: str = 'toy'):
  config = config_lib.make_run_config(qcmfql.get_config(), variant)
  if config.variant.startswith('ogbench'):
    config.agent.alpha = ALPHA[config_lib.ogbench_domain(variant)]
  return config
