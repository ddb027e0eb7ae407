"""Sweep specs: a base config, a grid of config overrides and seeds -> a list of runs.

A spec is a Python file defining `SPEC = {...}` (or `get_spec()`), or a JSON file with the
same object:

    SPEC = {
        'name': 'toy_lr_tau',                         # default: the file's stem
        'config': 'experiments/configs/lps.py:toy',   # base config file[:variant]
        'grid': {'agent.lr': [1e-4, 3e-4],            # config overrides, crossed (product)
                 'agent.tau': [0.005, 0.05]},
        'seeds': [0, 1, 2],                           # crossed with the grid
        'overrides': {'num_steps': 10_000},           # the same for every run (optional)
        'flags': {'tensorboard': False},              # extra lps_jax.main flags (optional)
        'metric': 'eval/reward',                      # plotted / summarised (optional)
        'slurm': {'partition': 'gpu', 'time': '04:00:00', 'gres': 'gpu:1'},  # --mode=slurm
        'tpu': {'name': 'my-pod', 'zone': 'us-central2-b'},                  # --mode=tpu
    }

Keys are config paths without the leading 'config.' ('agent.lr', 'num_steps').
"""
import dataclasses
import importlib.util
import itertools
import json
import os
import re
from typing import Any, Dict, List, Optional

from lps_jax import cli, config_lib

SPEC_KEYS = ('name', 'config', 'grid', 'seeds', 'overrides', 'flags', 'metric', 'slurm', 'tpu')


class LaunchError(ValueError):
  """A bad spec or launcher flag; the message is one line."""


@dataclasses.dataclass
class Run:
  name: str                        # directory name under out/runs/
  seed: int
  overrides: Dict[str, Any]        # grid point (config path -> value)
  group: str                       # name without the seed (runs that differ only by seed)


@dataclasses.dataclass
class Spec:
  name: str
  config: str
  grid: Dict[str, List[Any]]
  seeds: List[int]
  overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
  flags: Dict[str, Any] = dataclasses.field(default_factory=dict)
  metric: Optional[str] = None
  slurm: Dict[str, Any] = dataclasses.field(default_factory=dict)
  tpu: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------- loading
def _load_python(path: str) -> Dict[str, Any]:
  module_spec = importlib.util.spec_from_file_location('_lps_sweep_spec', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise LaunchError(f'spec {path} failed to load ({type(e).__name__}: {e})') from None
  if hasattr(module, 'get_spec'):
    return module.get_spec()
  if hasattr(module, 'SPEC'):
    return module.SPEC
  raise LaunchError(f'spec {path} defines neither SPEC nor get_spec()')


def load_spec(path: str) -> Spec:
  """Read and check a .py or .json spec; LaunchError (one line) on any problem."""
  if not path:
    raise LaunchError('--spec is required')
  if not os.path.isfile(path):
    raise LaunchError(f'spec file {path} does not exist')
  if path.endswith('.json'):
    try:
      with open(path) as f:
        raw = json.load(f)
    except ValueError as e:
      raise LaunchError(f'spec {path} is not valid JSON ({e})') from None
  elif path.endswith('.py'):
    raw = _load_python(path)
  else:
    raise LaunchError(f'spec {path} must be a .py or .json file')
  if not isinstance(raw, dict):
    raise LaunchError(f'spec {path} must define a dict, got {type(raw).__name__}')
  unknown = sorted(set(raw) - set(SPEC_KEYS))
  if unknown:
    raise LaunchError(f'spec {path}: unknown keys {unknown}; allowed: {list(SPEC_KEYS)}')
  if not raw.get('config'):
    raise LaunchError(f"spec {path}: 'config' (base config file[:variant]) is required")
  config_file = raw['config'].split(':')[0]
  if not os.path.isfile(config_file):
    raise LaunchError(f"spec {path}: config file {config_file} does not exist (paths are "
                      f"relative to the directory the launcher runs in)")
  grid = raw.get('grid') or {}
  if not isinstance(grid, dict):
    raise LaunchError(f"spec {path}: 'grid' must be a dict of config path -> list of values")
  for key, values in grid.items():
    if not isinstance(values, (list, tuple)) or not values:
      raise LaunchError(f"spec {path}: grid[{key!r}] must be a non-empty list, got {values!r}")
  seeds = raw.get('seeds', [0])
  if (not isinstance(seeds, (list, tuple)) or not seeds
      or any(cli.seed_error(s) for s in seeds)):
    raise LaunchError(f"spec {path}: 'seeds' must be a non-empty list of ints in "
                      f'[0, {cli.MAX_SEED}], got {seeds!r}')
  for field in ('overrides', 'flags', 'slurm', 'tpu'):
    if not isinstance(raw.get(field) or {}, dict):
      raise LaunchError(f"spec {path}: '{field}' must be a dict")
  check_main_flags(raw.get('flags') or {}, path)
  name = raw.get('name') or os.path.splitext(os.path.basename(path))[0]
  return Spec(name=_safe(str(name)), config=raw['config'], grid=dict(grid), seeds=list(seeds),
              overrides=dict(raw.get('overrides') or {}), flags=dict(raw.get('flags') or {}),
              metric=raw.get('metric'), slurm=dict(raw.get('slurm') or {}),
              tpu=dict(raw.get('tpu') or {}))


# ---------------------------------------------------------------------------------- flags
RESERVED_FLAGS = ('config', 'workdir', 'seed', 'resume', 'overwrite')   # the launcher sets them
MAIN_FLAG_MODULES = ('lps_jax/main.py', 'lps_jax/parallel.py')        # where main's flags live


def main_flag_names() -> List[str]:
  """The flags lps_jax.main takes: its own and parallel's multi-host ones, read from the
  DEFINE_* calls in their source (importing lps_jax.main here would define them again), and
  absl's logging flags."""
  import ast  # pylint: disable=g-import-not-at-top
  from absl import flags, logging  # pylint: disable=g-import-not-at-top,unused-import
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  names = [f.name for f in flags.FLAGS.get_flags_for_module('absl.logging')]
  for module in MAIN_FLAG_MODULES:
    with open(os.path.join(root, module)) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr.startswith('DEFINE_') and node.args
          and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        names.append(node.args[0].value)
  return sorted(set(names) - set(RESERVED_FLAGS))


def check_main_flags(spec_flags: Dict[str, Any], path: str = 'spec') -> None:
  """LaunchError naming the first spec 'flags' key that lps_jax.main would refuse: one the
  launcher sets itself, or one main does not have (with the closest names)."""
  import difflib  # pylint: disable=g-import-not-at-top
  known = main_flag_names()
  for key in spec_flags:
    if key in RESERVED_FLAGS:
      raise LaunchError(f"spec {path}: 'flags' may not set --{key}: the launcher sets it")
    if key not in known:
      close = difflib.get_close_matches(str(key), known, n=2)
      hint = (f"did you mean {' or '.join(close)}?" if close
              else f"lps_jax.main's flags: {', '.join(known)}")
      raise LaunchError(f"spec {path}: unknown lps_jax.main flag {key!r} in 'flags'; {hint}")


# ---------------------------------------------------------------------------------- runs
def _safe(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9._=,+-]', '_', text)


def format_value(value) -> str:
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, float):
    return f'{value:g}'
  if isinstance(value, (list, tuple)):
    return '-'.join(format_value(v) for v in value)
  return str(value)


def _short_names(keys: List[str]) -> Dict[str, str]:
  """'agent.lr' -> 'lr' unless two keys share their last component."""
  last = [k.split('.')[-1] for k in keys]
  return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def expand(spec: Spec) -> List[Run]:
  """grid x seeds -> runs, named 'lr=0.0001,tau=0.005,seed=0' (grid order, then seed)."""
  keys = list(spec.grid)
  short = _short_names(keys)
  runs = []
  for values in itertools.product(*(spec.grid[k] for k in keys)):
    point = dict(zip(keys, values))
    group = ','.join(f'{short[k]}={format_value(v)}' for k, v in point.items())
    for seed in spec.seeds:
      name = _safe(f'{group},seed={seed}' if group else f'seed={seed}')
      runs.append(Run(name=name, seed=int(seed), overrides=point, group=_safe(group or 'base')))
  if len({r.name for r in runs}) != len(runs):
    raise LaunchError('two runs of the spec get the same name (repeated grid values or seeds?)')
  return runs


def flag_value(value) -> str:
  """A Python value as lps_jax.main / config_flags parses it on the command line."""
  if isinstance(value, (list, tuple)):
    return '(' + ','.join(flag_value(v) for v in value) + (',)' if len(value) == 1 else ')')
  if isinstance(value, float):
    return repr(value)
  return str(value)


def main_args(spec: Spec, run: Run, workdir: str) -> List[str]:
  """The lps_jax.main arguments of one run (always --resume: re-launching continues it)."""
  args = [f'--config={spec.config}', f'--workdir={workdir}', f'--seed={run.seed}', '--resume',
          '--progress=false']
  for key, value in {**spec.overrides, **run.overrides}.items():
    key = key[len('config.'):] if key.startswith('config.') else key
    args.append(f'--config.{key}={flag_value(value)}')
  for key, value in spec.flags.items():
    if key in RESERVED_FLAGS:
      raise LaunchError(f"spec 'flags' may not set --{key}: the launcher sets it")
    args.append(f'--{key}={flag_value(value)}')
  return args


# ---------------------------------------------------------------------------------- configs
load_config = config_lib.load_config_file   # 'path.py[:variant]' -> get_config(variant)


def apply_overrides(config, overrides: Dict[str, Any]):
  """config_lib.apply_overrides, its error as a LaunchError."""
  try:
    return config_lib.apply_overrides(config, overrides)
  except config_lib.ConfigError as e:
    raise LaunchError(str(e)) from None


def run_config(spec: Spec, run: Run):
  """The resolved config of one run (validated by the caller)."""
  config = load_config(spec.config)
  return apply_overrides(config, {**spec.overrides, **run.overrides})
