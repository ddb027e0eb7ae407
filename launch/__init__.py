"""Sweep launchers: `python -m launch.sweep --spec=launch/examples/toy_grid.py --out=DIR`."""
