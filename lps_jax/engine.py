"""The fused training step: sample on device, update, repeat K times under lax.scan.

    agent, data --(split rng)--> batch = sample_batch(data, key)   # gather inside jit
                --> agent.update(batch)                            # all losses, one grad
                --> ... K times (lax.scan) --> (agent, mean metrics over the K steps)

The agent (all train states, RNG, step counters) is donated: XLA reuses its buffers.
"""
import functools

import jax
import jax.numpy as jnp

from lps_jax.data import dataset as dataset_lib


def train_step(agent, data: dataset_lib.DeviceDataset, batch_sharding=None):
  """One minibatch + one update. Reads batch_size/horizon/discount from agent.config.

  batch_sharding (data-parallel runs): a sharding the sampled batch is constrained to, e.g.
  NamedSharding(mesh, P('data')); the RNG use is the same as on one device.
  """
  cfg = agent.config
  rng, batch_key = jax.random.split(agent.rng)
  batch = dataset_lib.sample_batch(data, batch_key, cfg.batch_size, cfg.horizon, cfg.discount)
  if batch_sharding is not None:
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
  return agent.replace(rng=rng).update(batch)


def train_steps(agent, data: dataset_lib.DeviceDataset, num_steps: int, step_fn=train_step,
                unroll: int = 1):
  """K = num_steps scanned updates -> (agent, metrics averaged over the K steps).

  unroll: updates per iteration of the compiled loop (lax.scan's unroll; the same updates)."""
  agent, infos = jax.lax.scan(lambda a, _: step_fn(a, data), agent, None, length=num_steps,
                              unroll=unroll)
  return agent, jax.tree.map(jnp.mean, infos)


@functools.lru_cache(maxsize=None)
def make_train_fn(num_steps: int, step_fn=train_step, unroll: int = 1):
  """jit(train_steps) for a fixed K, donating the agent.

  One jitted function per (K, step_fn, unroll): agents of one structure (train_state shares
  their static parts) then reuse one compiled program, however often the fn is asked for.
  """
  return jax.jit(functools.partial(train_steps, num_steps=num_steps, step_fn=step_fn,
                                   unroll=unroll), donate_argnums=(0,))


# ---------------------------------------------------------------------------------- schedule
def call_lengths(start: int, num_steps: int, steps_per_call: int):
  """Updates per jit call from step `start` to `num_steps`: K, K, ..., then one shorter call
  for the remainder (so any positive num_steps runs, with at most two compiled lengths).

  A generator (a huge num_steps with K = 1 builds no list): list(call_lengths(0, 10, 4)) ->
  [4, 4, 2]; (8, 10, 4) -> [2]; (10, 10, 4) -> [].
  """
  full, remainder = divmod(max(num_steps - start, 0), steps_per_call)
  for _ in range(full):
    yield steps_per_call
  if remainder:
    yield remainder


def falls_due(previous_step: int, step: int, interval: int) -> bool:
  """Did a multiple of `interval` fall in (previous_step, step]? (interval 0: never.)

  Calls end on boundaries; an interval that does not divide them fires at the first boundary
  at or after it falls due (e.g. interval 3, K = 2: at steps 4, 6, 10, 12, ...).
  """
  return interval > 0 and step // interval > previous_step // interval
