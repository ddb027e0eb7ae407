"""Run-level configs shared by every experiment config (big_vision style variants).

`experiments/configs/<agent>.py:get_config(variant)` calls make_run_config with its agent's
own get_config(). Variants:
  toy            the 2-D two-rings task, small nets, a few minutes on a CPU (default)
  test           a tiny config for the 1-step CLI test
  ogbench        the LPS paper's OGBench setting (4x512, batch 256, h=5, 1M steps)
  ogbench_small  the OGBench pipeline sized for a CPU (2x64 nets, batch 64)
"""
import ml_collections

VARIANTS = ('toy', 'test', 'ogbench', 'ogbench_small')
DEFAULT_OGBENCH_TASK = 'cube-single-play-singletask-task1-v0'


def _set_sizes(agent, hidden: tuple, actor_hidden: tuple):
  agent.flow_hidden_dims = hidden
  agent.critic_hidden_dims = hidden
  agent.actor_hidden_dims = actor_hidden


def make_run_config(agent: ml_collections.ConfigDict, variant: str = 'toy'):
  """The whole run config: loop, task and the agent's hyperparameters under .agent."""
  variant = variant or 'toy'
  if variant not in VARIANTS:
    raise ValueError(f'unknown config variant {variant!r}; choose from {VARIANTS}')
  config = ml_collections.ConfigDict()
  config.variant = variant
  config.task = 'toy-rings'
  config.dataset_dir = ''             # OGBench: folder holding <dataset>.npz files
  config.download = False             # OGBench: fetch the official files if missing
  config.sparse_reward = False        # OGBench scene/puzzle: r := -1 if r != 0 else 0
  config.num_steps = 10_000
  config.steps_per_call = 250         # K updates fused into one jit call (lax.scan)
  config.log_interval = 1_000
  config.eval_interval = 5_000
  config.eval_episodes = 256          # toy: sampled actions; OGBench: env episodes
  config.agent = agent
  if variant == 'toy':
    agent.horizon = 1
    _set_sizes(agent, (256, 256, 256), (128, 128))
  elif variant == 'test':
    agent.horizon = 1
    agent.batch_size = 16
    _set_sizes(agent, (16, 16), (16,))
    config.num_steps, config.steps_per_call = 4, 2
    config.log_interval, config.eval_interval, config.eval_episodes = 2, 4, 16
  elif variant == 'ogbench':
    config.task = DEFAULT_OGBENCH_TASK
    config.num_steps = 1_000_000
    config.steps_per_call = 1_000
    config.log_interval = 5_000
    config.eval_interval = 100_000
    config.eval_episodes = 50
  elif variant == 'ogbench_small':
    config.task = DEFAULT_OGBENCH_TASK
    agent.batch_size = 64
    _set_sizes(agent, (64, 64), (64, 64))
    config.num_steps = 5_000
    config.steps_per_call = 250
    config.log_interval = 500
    config.eval_interval = 2_500
    config.eval_episodes = 10
  return config


class ConfigError(ValueError):
  """A bad config value; the message is one line naming the key."""


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def validate(config) -> None:
  """Range checks on the values every run uses; raises ConfigError."""
  agent = config.agent
  _require(agent.lr > 0, f'config.agent.lr must be > 0, got {agent.lr}')
  _require(0 < agent.tau <= 1, f'config.agent.tau must be in (0, 1], got {agent.tau}')
  _require(0 <= agent.discount <= 1, f'config.agent.discount must be in [0, 1], got {agent.discount}')
  _require(agent.horizon >= 1, f'config.agent.horizon must be >= 1, got {agent.horizon}')
  _require(agent.batch_size >= 1, f'config.agent.batch_size must be >= 1, got {agent.batch_size}')
  _require(agent.q_agg in ('min', 'mean'), f'config.agent.q_agg must be min or mean, got {agent.q_agg!r}')
  _require(config.steps_per_call >= 1, f'config.steps_per_call must be >= 1, got {config.steps_per_call}')
  _require(config.num_steps >= 1, f'config.num_steps must be >= 1, got {config.num_steps}')
  for name in ('num_steps', 'log_interval', 'eval_interval'):
    _require(config[name] % config.steps_per_call == 0,
             f'config.{name}={config[name]} must be a multiple of config.steps_per_call='
             f'{config.steps_per_call}')
