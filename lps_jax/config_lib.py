"""Run-level configs shared by every experiment config (big_vision style variants).

`experiments/configs/<agent>.py:get_config(variant)` calls make_run_config with its agent's
own get_config(). Variants:
  toy            the contextual one-ring 2-D bandit, small nets, a few minutes on a CPU (default)
  toy_rings      the old two-rings 2-D bandit (a documented finding, see lps_jax/data/toy.py)
  test           a tiny config for the 1-step CLI test
  ogbench        the LPS paper's OGBench setting (4x512, batch 256, h=5, 1M steps)
  ogbench_small  the OGBench pipeline sized for a CPU (2x64 nets, batch 64)
The OGBench variants take a domain and task: `ogbench,domain=scene,task=2`
(domains: cube-single, cube-double, scene, puzzle-3x3, puzzle-4x4). Only scene and puzzle-3x3 use
sparse rewards (r := -1 if r != 0 else 0), as in the LPS / QC reference code; puzzle-4x4 stays
dense because its data has no successful episode (a sparse reward there would be constant -1).
Network sizes and alpha per agent live in the agent's get_config() and experiments/configs/.
"""
import ml_collections

VARIANTS = ('toy', 'toy_rings', 'test', 'ogbench', 'ogbench_small')
MAX_STEPS = 2**31 - 1      # the train states count steps in int32
# OGBench manipulation domains -> sparse reward? (LPS / QC reference code: scene and puzzle-3x3
# only; puzzle-4x4 stays dense, its data has no successful episode.)
OGBENCH_DOMAINS = {'cube-single': False, 'cube-double': False, 'scene': True,
                   'puzzle-3x3': True, 'puzzle-4x4': False}


def ogbench_domain(variant: str) -> str:
  """The OGBench domain named by a variant string ('ogbench,domain=scene' -> 'scene')."""
  return parse_variant(variant)[1].get('domain', 'cube-single')


def ogbench_task_name(domain: str, task: int) -> str:
  return f'{domain}-play-singletask-task{task}-v0'


def parse_variant(variant: str):
  """'ogbench,domain=scene,task=2' -> ('ogbench', {'domain': 'scene', 'task': '2'})."""
  name, *options = (variant or 'toy').split(',')
  kwargs = {}
  for option in options:
    key, sep, value = option.partition('=')
    if not sep or key not in ('domain', 'task'):
      raise ValueError(f'bad variant option {option!r}; expected domain=... or task=...')
    kwargs[key] = value
  return name, kwargs


def _set_sizes(agent, hidden: tuple, actor_hidden: tuple):
  agent.flow_hidden_dims = hidden
  agent.critic_hidden_dims = hidden
  agent.actor_hidden_dims = actor_hidden


def make_run_config(agent: ml_collections.ConfigDict, variant: str = 'toy'):
  """The whole run config: loop, task and the agent's hyperparameters under .agent."""
  variant, options = parse_variant(variant)
  if variant not in VARIANTS:
    raise ValueError(f'unknown config variant {variant!r}; choose from {VARIANTS}')
  domain = options.get('domain', 'cube-single')
  if domain not in OGBENCH_DOMAINS:
    raise ValueError(f'unknown OGBench domain {domain!r}; choose from {sorted(OGBENCH_DOMAINS)}')
  config = ml_collections.ConfigDict()
  config.variant = variant
  config.task = 'toy'
  config.dataset_dir = ''             # OGBench: folder holding <dataset>.npz files
  config.download = False             # OGBench: fetch the official files if missing
  config.sparse_reward = False        # OGBench scene/puzzle: r := -1 if r != 0 else 0
  config.num_steps = 10_000
  config.steps_per_call = 250         # K updates fused into one jit call (lax.scan)
  config.log_interval = 1_000
  config.eval_interval = 5_000
  config.eval_episodes = 256          # toy: sampled actions; OGBench: env episodes
  config.checkpoint_interval = 2_500  # orbax checkpoint every N steps (0: only at the end)
  config.checkpoint_max_to_keep = 3   # >= 2 lets a corrupted latest checkpoint fall back
  config.agent = agent
  if variant == 'toy':
    # Small nets; lr 2e-4 and plain (unweighted) MeanFlow MSE: with a 2-D action the
    # spherical latent is a circle, and the one-step decoder's radius drifts at larger lr
    # (measured, docs/toy.md "Why one ring").
    agent.horizon = 1
    agent.batch_size = 256
    agent.lr = 2e-4
    agent.adaptive_power = 0.0
    _set_sizes(agent, (128, 128), (64, 64))
    config.num_steps = 4_000
    config.steps_per_call = 500
    config.log_interval = 500
    config.eval_interval = 1_000
    config.checkpoint_interval = 1_000
  elif variant == 'toy_rings':
    # Small nets, large batch: the one-step MeanFlow decoder of the rings needs low-noise
    # gradients more than capacity (measured: batch 1024 at lr 3e-4 beats 256 at 1e-3).
    config.task = 'toy-rings'
    agent.horizon = 1
    agent.batch_size = 1024
    _set_sizes(agent, (128, 128, 128), (64, 64))
    agent.critic_hidden_dims = (128, 128)
    config.num_steps = 20_000
    config.steps_per_call = 500
  elif variant == 'test':
    agent.horizon = 1
    agent.batch_size = 16
    _set_sizes(agent, (16, 16), (16,))
    config.num_steps, config.steps_per_call = 4, 2
    config.log_interval, config.eval_interval, config.eval_episodes = 2, 4, 16
    config.checkpoint_interval = 2
  if variant.startswith('ogbench'):
    config.task = ogbench_task_name(domain, int(options.get('task', 1)))
    config.sparse_reward = OGBENCH_DOMAINS[domain]
  if variant == 'ogbench':
    config.num_steps = 1_000_000
    config.steps_per_call = 1_000
    config.log_interval = 5_000
    config.eval_interval = 100_000
    config.eval_episodes = 50
    config.checkpoint_interval = 50_000
  elif variant == 'ogbench_small':
    agent.batch_size = 64
    _set_sizes(agent, (64, 64), (64, 64))
    config.num_steps = 5_000
    config.steps_per_call = 250
    config.log_interval = 500
    config.eval_interval = 2_500
    config.eval_episodes = 10
    config.checkpoint_interval = 1_000
  return config


def load_config_file(config_arg: str):
  """'path/to/config.py[:variant]' -> its get_config(variant), as --config=... would give."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path, _, variant = config_arg.partition(':')
  module_spec = importlib.util.spec_from_file_location('_lps_jax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


class ConfigError(ValueError):
  """A bad config value; the message is one line naming the key."""


def apply_overrides(config, overrides):
  """Set dotted paths {'agent.lr': 1e-4} on a ConfigDict (a list becomes a tuple where the
  field is a tuple) -> config; ConfigError naming the key if it is unknown or the type is."""
  for key, value in overrides.items():
    path = key[len('config.'):] if key.startswith('config.') else key
    *parents, leaf = path.split('.')
    node = config
    for part in parents:
      if part not in node or not hasattr(node[part], 'items'):
        raise ConfigError(f'unknown config key config.{path}')
      node = node[part]
    if leaf not in node:
      raise ConfigError(f'unknown config key config.{path}')
    if isinstance(node[leaf], tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      with config.unlocked():
        node[leaf] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f'config.{path} = {value!r}: {" ".join(str(e).split())}') from None
  return config


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def _flatten(d, prefix=''):
  """{'a': {'b': 1}} -> {'a.b': 1} for dicts and ConfigDicts."""
  out = {}
  for key, value in d.items():
    name = f'{prefix}{key}'
    if hasattr(value, 'items'):
      out.update(_flatten(value, name + '.'))
    else:
      out[name] = value
  return out


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(value, reference) -> bool:
  """Type check against the reference value (ints are accepted where floats are)."""
  if reference is None or value is None:
    return True
  if isinstance(reference, bool):
    return isinstance(value, bool)
  if isinstance(reference, float):
    return _is_number(value)
  if isinstance(reference, int):
    return isinstance(value, int) and not isinstance(value, bool)
  if isinstance(reference, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(reference))


def agent_module(name: str):
  """The module registered for agent `name`; ConfigError if unknown or not importable."""
  import importlib  # pylint: disable=g-import-not-at-top
  from lps_jax import agents  # pylint: disable=g-import-not-at-top
  if name not in agents.AGENT_MODULES:
    raise ConfigError(f'config.agent.agent_name: unknown agent {name!r}; choose from '
                      f'{sorted(agents.AGENT_MODULES)}')
  module_name = agents.AGENT_MODULES[name][0]
  try:
    return importlib.import_module(module_name)
  except ImportError as e:
    raise ConfigError(f'config.agent.agent_name: agent {name!r} is registered but {module_name} '
                      f'cannot be imported ({type(e).__name__}: {e})') from None


def check_keys(config) -> None:
  """Unknown, missing or wrong-typed keys, against the agent's own reference config."""
  import difflib  # pylint: disable=g-import-not-at-top
  module = agent_module(config.agent.agent_name)
  if not hasattr(module, 'get_config'):
    return
  reference = _flatten(make_run_config(module.get_config(), config.get('variant', 'toy')))
  given = _flatten(config)
  for key, value in given.items():
    if key not in reference:
      close = difflib.get_close_matches(key, list(reference), n=1)
      hint = f'; did you mean config.{close[0]}?' if close else ''
      raise ConfigError(f'unknown config key config.{key}{hint}')
    if not _same_kind(value, reference[key]):
      raise ConfigError(f'config.{key} must be of type {type(reference[key]).__name__}, '
                        f'got {value!r} ({type(value).__name__})')
  missing = sorted(set(reference) - set(given))
  if missing:
    name = config.agent.agent_name
    raise ConfigError(
        f'config is missing keys {["config." + k for k in missing]} that agent {name!r} needs '
        f'(use its own config file, experiments/configs/{name}.py, rather than overriding '
        f'config.agent.agent_name; or the config file is out of date)')


def validate(config, num_devices: int = None) -> None:
  """Every check that can run before anything is built or written; raises ConfigError.

  Keys (unknown / missing / wrong type), the agent name, value ranges, and the batch size
  against `num_devices` (default: jax.device_count(); the batch is split over the devices).
  Task-specific checks (names, files, optional packages) belong to the task's maker:
  tasks.check_config(config). This module imports neither the data layer nor parallel.py.
  """
  import math  # pylint: disable=g-import-not-at-top
  _require('agent' in config and 'agent_name' in config.agent,
           'config.agent.agent_name is missing')
  check_keys(config)
  _require(config.variant in VARIANTS,
           f'config.variant must be one of {VARIANTS}, got {config.variant!r}')
  agent = config.agent

  def positive_int(name, value, minimum=1):
    _require(isinstance(value, int) and value >= minimum,
             f'config.{name} must be an integer >= {minimum}, got {value!r}')

  _require(math.isfinite(agent.lr) and agent.lr > 0, f'config.agent.lr must be > 0, got {agent.lr}')
  _require(0 < agent.tau <= 1, f'config.agent.tau must be in (0, 1], got {agent.tau}')
  _require(0 <= agent.discount <= 1,
           f'config.agent.discount must be in [0, 1], got {agent.discount}')
  _require(agent.max_grad_norm >= 0,
           f'config.agent.max_grad_norm must be >= 0 (0 disables clipping), got '
           f'{agent.max_grad_norm}')
  positive_int('agent.horizon', agent.horizon)
  positive_int('agent.batch_size', agent.batch_size)
  positive_int('agent.num_critics', agent.num_critics)
  _require(agent.q_agg in ('min', 'mean'),
           f'config.agent.q_agg must be min or mean, got {agent.q_agg!r}')
  from lps_jax import networks  # pylint: disable=g-import-not-at-top
  _require(agent.activation in networks.ACTIVATIONS,
           f'config.agent.activation must be one of {sorted(networks.ACTIVATIONS)}, '
           f'got {agent.activation!r}')
  for name in ('flow_hidden_dims', 'actor_hidden_dims', 'critic_hidden_dims'):
    dims = agent[name]
    _require(len(dims) >= 1 and all(isinstance(d, int) and d >= 1 for d in dims),
             f'config.agent.{name} must be a non-empty tuple of positive ints, got {dims!r}')
  _require(agent.time_std > 0, f'config.agent.time_std must be > 0, got {agent.time_std}')
  _require(0 <= agent.equal_time_fraction <= 1,
           f'config.agent.equal_time_fraction must be in [0, 1], got {agent.equal_time_fraction}')
  _require(agent.compute_dtype in networks.COMPUTE_DTYPES,
           f'config.agent.compute_dtype must be one of {sorted(networks.COMPUTE_DTYPES)}, '
           f'got {agent.compute_dtype!r}')
  from lps_jax import meanflow  # pylint: disable=g-import-not-at-top
  _require(agent.latent_prior in meanflow.LATENT_PRIORS,
           f'config.agent.latent_prior must be one of {meanflow.LATENT_PRIORS}, '
           f'got {agent.latent_prior!r}')

  positive_int('steps_per_call', config.steps_per_call)
  positive_int('num_steps', config.num_steps)
  _require(config.num_steps <= MAX_STEPS,
           f'config.num_steps must be <= {MAX_STEPS} (the step counters are int32), got '
           f'{config.num_steps}')
  positive_int('eval_episodes', config.eval_episodes)
  positive_int('checkpoint_max_to_keep', config.checkpoint_max_to_keep)
  # Any values: a run ends with one shorter call, and an interval that does not divide the
  # call boundaries fires at the first boundary after it falls due (engine.call_lengths).
  for name in ('num_steps', 'log_interval', 'eval_interval', 'checkpoint_interval'):
    minimum = 0 if name == 'checkpoint_interval' else 1
    positive_int(name, config[name], minimum)
  if num_devices is None:
    import jax  # pylint: disable=g-import-not-at-top
    num_devices = jax.device_count()
  _require(agent.batch_size % num_devices == 0,
           f'config.agent.batch_size={agent.batch_size} must be divisible by the number of '
           f'devices ({num_devices})')
  module = agent_module(agent.agent_name)
  if hasattr(module, 'validate_config'):   # agent-specific ranges (e.g. alpha >= 0)
    try:
      module.validate_config(config.agent)
    except ValueError as e:               # agents do not import config_lib (no cycle)
      raise ConfigError(str(e)) from None
