"""Sweep launchers: `python -m launch.launcher --spec=launch/examples/toy_grid.py --out=DIR`."""
