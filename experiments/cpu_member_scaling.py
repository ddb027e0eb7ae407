"""Agent-steps/s of N cpu-size LPS members on this machine: plain engine vs vmap vs sharded.

    plain   engine.make_train_fn (one member)
    vmap    multitask.make_train_fn (N members in one program, one device)
    shard   N members split over the host's devices (set
            XLA_FLAGS=--xla_force_host_platform_device_count=2 before the run)

  python experiments/cpu_member_scaling.py --mode=vmap --members=10
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python experiments/cpu_member_scaling.py \\
      --mode=shard --members=10

Synthetic data in cube-single shapes (obs 28, action 5, h = 5); 2x128 networks, batch 128.
"""
import functools
import os
import sys
import time

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

FLAGS = flags.FLAGS
flags.DEFINE_enum('mode', 'vmap', ['plain', 'vmap', 'shard'], 'How the members run.')
flags.DEFINE_integer('members', 1, 'Members (plain: 1).')
flags.DEFINE_integer('steps_per_call', 500, 'Updates per jit call.')
flags.DEFINE_integer('calls', 3, 'Timed calls after the first (compiling) one.')


def cpu_size_lps_config():
  from lps_jax import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(
      os.path.join(REPO, 'experiments', 'configs', 'lps.py') + ':ogbench,domain=cube-single')
  agent = config.agent
  agent.flow_hidden_dims = agent.critic_hidden_dims = agent.actor_hidden_dims = (128, 128)
  agent.batch_size = 128
  return agent


def synthetic_transitions(num=100_000, obs_dim=28, action_dim=5, seed=0):
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  return dict(
      observations=rng.normal(size=(num, obs_dim)).astype(np.float32),
      actions=rng.uniform(-1, 1, (num, action_dim)).astype(np.float32),
      next_observations=rng.normal(size=(num, obs_dim)).astype(np.float32),
      rewards=-np.ones(num, np.float32), masks=np.ones(num, np.float32),
      terminals=(np.arange(num) % 1000 == 999).astype(np.float32))


def build(mode, members, steps):
  """-> (train_fn(agents, data) -> (agents, metrics), agents, data)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax import sharding  # pylint: disable=g-import-not-at-top
  from lps_jax import engine, multitask  # pylint: disable=g-import-not-at-top
  config = cpu_size_lps_config()
  data = multitask.stack_task_datasets([synthetic_transitions()], config.horizon)
  agents = multitask.create_agents(config, list(range(members)), 1, 28, config.horizon * 5)
  if mode == 'vmap':
    return multitask.make_train_fn(steps, data), agents, data
  single = data.replace(rewards=data.rewards[0], masks=data.masks[0])
  flat = jax.tree.map(lambda x: x[0], agents)           # [N, ...]
  if mode == 'plain':
    return engine.make_train_fn(steps), multitask.member(agents, 0, 0), single
  mesh = sharding.Mesh(np.array(jax.devices()), ('members',))
  split = sharding.NamedSharding(mesh, sharding.PartitionSpec('members'))
  shared = sharding.NamedSharding(mesh, sharding.PartitionSpec())
  scan = functools.partial(engine.train_steps, num_steps=steps)
  train = jax.jit(jax.vmap(scan, in_axes=(0, None), spmd_axis_name='members'),
                  donate_argnums=(0,))
  return train, jax.device_put(flat, split), jax.device_put(single, shared)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  members = 1 if FLAGS.mode == 'plain' else FLAGS.members
  if FLAGS.mode == 'shard' and members % jax.device_count():
    print(f'error: --members={members} must be a multiple of the {jax.device_count()} devices',
          file=sys.stderr)
    sys.exit(2)
  train, agents, data = build(FLAGS.mode, members, FLAGS.steps_per_call)
  start = time.perf_counter()
  agents, metrics = train(agents, data)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(FLAGS.calls):
    agents, metrics = train(agents, data)
  jax.block_until_ready(metrics)
  rate = FLAGS.calls * FLAGS.steps_per_call / (time.perf_counter() - start)
  print(f'{FLAGS.mode} members={members} devices={jax.device_count()}: first call {first:.1f} s, '
        f'{rate:.0f} steps/s, {rate * members:.0f} agent-steps/s')


if __name__ == '__main__':
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)
