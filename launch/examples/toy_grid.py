"""LPS on the toy task: learning rate x critic target rate, 3 seeds (12 runs).

    python -m launch.launcher --spec=launch/examples/toy_grid.py --out=runs/toy_grid --parallel=2
    python -m launch.launcher --spec=launch/examples/toy_grid.py --out=runs/toy_grid_vmap --mode=vmap
"""
SPEC = {
    'name': 'toy_lr_tau',
    'config': 'experiments/configs/lps.py:toy',
    'grid': {'agent.lr': [1e-4, 3e-4], 'agent.tau': [0.005, 0.05]},
    'seeds': [0, 1, 2],
    'overrides': {'num_steps': 5_000, 'eval_interval': 2_500},
    'metric': 'eval/reward',
}
