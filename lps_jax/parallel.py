"""Data-parallel and sweep-parallel training on a device mesh, and multi-host start-up.

The mesh has two axes, ('sweep', 'data'):

    devices  [S * M]  ->  Mesh(devices.reshape(S, M), ('sweep', 'data'))

    dataset          replicated on every device (a global array on every host)
    agent params     replicated (one agent), or split over 'sweep' (a stacked sweep [N, ...])
    batch [B, ...]   sampled inside jit from the replicated dataset, then constrained to
                     P('data'): each device holds B / M rows (stacked sweep: P('sweep', 'data'))
    gradients        the losses are means over the global batch, so GSPMD turns each batch
                     reduction into an all-reduce over 'data': every device ends the step
                     with the same (replicated) update, equal to the 1-device update up to
                     float summation order.

One jit call still runs K scanned updates (engine.train_steps); the only change from the
1-device path is the sharding constraint on the sampled batch plus explicit in/out shardings.

Multi-host: `maybe_initialize_distributed()` calls jax.distributed.initialize from the
--coordinator_address/--num_processes/--process_id flags (or the env vars LPS_COORDINATOR_ADDRESS,
LPS_NUM_PROCESSES, LPS_PROCESS_ID); it does nothing when none is set. Every host then builds the
same agent and dataset from the same seed and `put_global` turns them into global arrays, each
host feeding only the shards its own devices hold (jax.make_array_from_callback).
"""
import functools
import os
from typing import Optional

from absl import flags
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from lps_jax import engine
from lps_jax.data import dataset as dataset_lib

SWEEP_AXIS = 'sweep'
DATA_AXIS = 'data'

flags.DEFINE_string('coordinator_address', None,
                    'Multi-host: host:port of process 0 (env LPS_COORDINATOR_ADDRESS).')
flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes (env LPS_NUM_PROCESSES).')
flags.DEFINE_integer('process_id', None, 'Multi-host: this process (env LPS_PROCESS_ID).')


class ShardingError(ValueError):
  """A batch, sweep or mesh size that does not divide evenly; one line naming the sizes."""


# ------------------------------------------------------------------------------ multi-host
def _flag_value(name: str):
  """FLAGS.<name> when the flags have been parsed, else None (library / test use)."""
  if not flags.FLAGS.is_parsed():
    return None
  return getattr(flags.FLAGS, name)


def distributed_settings(coordinator_address: Optional[str] = None,
                         num_processes: Optional[int] = None,
                         process_id: Optional[int] = None):
  """(address, num_processes, process_id) from the arguments, else the flags, else the env."""
  env = os.environ
  address = (coordinator_address or _flag_value('coordinator_address')
             or env.get('LPS_COORDINATOR_ADDRESS') or None)

  def pick(value, flag, var):
    for candidate in (value, _flag_value(flag), env.get(var)):
      if candidate is not None and candidate != '':
        return int(candidate)
    return None

  return (address, pick(num_processes, 'num_processes', 'LPS_NUM_PROCESSES'),
          pick(process_id, 'process_id', 'LPS_PROCESS_ID'))


def maybe_initialize_distributed(coordinator_address: Optional[str] = None,
                                 num_processes: Optional[int] = None,
                                 process_id: Optional[int] = None) -> bool:
  """jax.distributed.initialize when a coordinator address is set; returns whether it ran.

  Call before anything touches a JAX device. On CPU the cross-process collectives use gloo.
  """
  address, count, index = distributed_settings(coordinator_address, num_processes, process_id)
  if address is None:
    if count not in (None, 1) or index not in (None, 0):
      raise ShardingError(f'num_processes={count} / process_id={index} given without a '
                          'coordinator address (--coordinator_address or LPS_COORDINATOR_ADDRESS)')
    return False
  if count is None or index is None:
    raise ShardingError(f'coordinator address {address} needs both num_processes and process_id '
                        f'(got {count}, {index})')
  if not 0 <= index < count:
    raise ShardingError(f'process_id={index} must be in [0, num_processes={count})')
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(address, count, index)
  return True


def is_main_process() -> bool:
  """True on the process that should write logs and checkpoints."""
  return jax.process_index() == 0


# ------------------------------------------------------------------------------ mesh
def make_mesh(sweep_size: int = 1, devices=None) -> Mesh:
  """Mesh ('sweep', 'data') of shape [sweep_size, n / sweep_size] over all (global) devices."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  if sweep_size < 1 or devices.size % sweep_size:
    raise ShardingError(f'sweep axis size {sweep_size} must divide the {devices.size} devices')
  return Mesh(devices.reshape(sweep_size, devices.size // sweep_size), (SWEEP_AXIS, DATA_AXIS))


def check_sizes(mesh: Mesh, batch_size: int, num_members: Optional[int] = None) -> None:
  """ShardingError unless batch_size % |data| == 0 (and num_members % |sweep| == 0)."""
  data_size, sweep_size = mesh.shape[DATA_AXIS], mesh.shape[SWEEP_AXIS]
  if batch_size % data_size:
    raise ShardingError(f'batch_size={batch_size} is not divisible by the data axis size '
                        f'{data_size} ({mesh.devices.size} devices, sweep axis {sweep_size})')
  if num_members is None:
    if sweep_size != 1:
      raise ShardingError(f'a single agent needs sweep axis size 1, got {sweep_size}')
  elif num_members % sweep_size:
    raise ShardingError(f'{num_members} sweep members are not divisible by the sweep axis '
                        f'size {sweep_size}')


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def member_sharding(mesh: Mesh) -> NamedSharding:
  """Leading [N] member axis split over 'sweep', the rest replicated."""
  return NamedSharding(mesh, P(SWEEP_AXIS))


# ------------------------------------------------------------------------------ global arrays
def put_global(tree, sharding: NamedSharding):
  """Host values (numpy or single-device jax) -> global arrays with `sharding` on every leaf.

  Works across hosts: every process passes the same full values and feeds only the shards
  its own devices hold. Leaves must be plain arrays (uint32 PRNGKey arrays are fine).
  """

  def put(leaf):
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def put_dataset(data: dataset_lib.DeviceDataset, mesh: Mesh) -> dataset_lib.DeviceDataset:
  """The dataset replicated on every device of the mesh (a global array on multi-host)."""
  return put_global(data, replicated(mesh))


def put_agent(agent, mesh: Mesh, stacked: bool = False):
  """One agent replicated, or a stacked sweep [N, ...] split over 'sweep'."""
  return put_global(agent, member_sharding(mesh) if stacked else replicated(mesh))


def fetch(tree):
  """Global arrays -> numpy on this host (all-gathers what this host does not hold)."""

  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)

  return jax.tree.map(get, tree)


def local_replica(tree):
  """A replicated global tree -> the same values on this host's first device (for eval)."""
  return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


# ------------------------------------------------------------------------------ training
def train_step(agent, data: dataset_lib.DeviceDataset, mesh: Mesh):
  """engine.train_step with the sampled batch split over the 'data' axis (same RNG use)."""
  return engine.train_step(agent, data, batch_sharding=NamedSharding(mesh, P(DATA_AXIS)))


def make_train_fn(num_steps: int, mesh: Mesh, stacked: bool = False, step_fn=None):
  """jit of K scanned data-parallel updates on `mesh`, donating the agent.

  stacked=False: fn(agent, data) -> (agent, metrics), agent and metrics replicated.
  stacked=True:  fn(agents [N, ...], data) -> (agents, metrics [N]); members split over
                 'sweep' (vmap with spmd_axis_name), each member's batch over 'data'; with
                 |data| = 1, make_member_parallel_train_fn (exact on any device count).
  Inputs should come from put_agent / put_dataset. `step_fn(agent, data)` overrides the
  default sharded step (it must constrain its own batch).
  """
  if stacked and step_fn is None and mesh.shape[DATA_AXIS] == 1:
    return make_member_parallel_train_fn(num_steps, mesh)
  step_fn = step_fn or functools.partial(train_step, mesh=mesh)
  scan = functools.partial(engine.train_steps, num_steps=num_steps, step_fn=step_fn)
  if stacked:
    spmd_axis = SWEEP_AXIS if mesh.shape[SWEEP_AXIS] > 1 else None
    fn = jax.vmap(scan, in_axes=(0, None), spmd_axis_name=spmd_axis)
    out = member_sharding(mesh)
  else:
    fn = scan
    out = replicated(mesh)
  return jax.jit(fn, in_shardings=(out, replicated(mesh)), out_shardings=(out, out),
                 donate_argnums=(0,))


def make_member_parallel_train_fn(num_steps: int, mesh: Mesh, step_fn=engine.train_step):
  """K scanned updates of a stacked sweep whose members are only split over 'sweep' (|data| = 1).

  Each local device runs the 1-device program jit(vmap(train_steps)) on the members it holds
  (one asynchronous call per device; no collectives), so every member computes exactly what
  it computes on one device: a sweep resumed on another device count continues bit-identically
  (an SPMD-partitioned program may fuse differently and differ in the last float bits).
  fn(agents [N, ...] split over 'sweep', data replicated) -> (agents, metrics [N]), both split
  over 'sweep'; donates the agents. Works across hosts (each feeds its own devices).
  """
  scan = functools.partial(engine.train_steps, num_steps=num_steps, step_fn=step_fn)
  local_fn = jax.jit(jax.vmap(scan, in_axes=(0, None)), donate_argnums=(0,))
  sharding = member_sharding(mesh)

  def per_device(tree):
    """{device: the tree of that device's shards} for the local devices."""
    leaves, treedef = jax.tree.flatten(tree)
    shards = [{s.device: s.data for s in leaf.addressable_shards} for leaf in leaves]
    return {d: jax.tree.unflatten(treedef, [leaf[d] for leaf in shards]) for d in shards[0]}

  def train(agents, data):
    local_agents, local_data = per_device(agents), per_device(data)
    outputs = {d: local_fn(local_agents[d], local_data[d]) for d in local_agents}
    devices = list(outputs)
    flat = [jax.tree.flatten(outputs[d]) for d in devices]
    treedef = flat[0][1]
    leaves = []
    for i, first in enumerate(flat[0][0]):
      shape = (first.shape[0] * mesh.shape[SWEEP_AXIS],) + first.shape[1:]
      leaves.append(jax.make_array_from_single_device_arrays(
          shape, sharding, [flat[j][0][i] for j in range(len(devices))]))
    return jax.tree.unflatten(treedef, leaves)

  return train


def data_parallel_setup(agent, data: dataset_lib.DeviceDataset, steps_per_call: int,
                        mesh: Optional[Mesh] = None):
  """(agent, data, train_fn) for one agent: the 1-device engine path when there is one device
  and no mesh, else agent and dataset replicated on `mesh` (default: all devices on 'data')
  and the data-parallel train_fn. Call after restoring a checkpoint into the agent."""
  if mesh is None and jax.device_count() == 1:
    return agent, data, make_agent_train_fn(steps_per_call)
  mesh = make_mesh() if mesh is None else mesh
  check_sizes(mesh, agent.config.batch_size)
  return (put_agent(agent, mesh), put_dataset(data, mesh),
          make_agent_train_fn(steps_per_call, mesh))


def make_agent_train_fn(num_steps: int, mesh: Optional[Mesh] = None):
  """The train_fn data_parallel_setup returns, for any number of updates per call (e.g. the
  shorter last call of a run): the engine's on one device without a mesh, else data-parallel
  on `mesh` (default: all devices on 'data', the same mesh data_parallel_setup makes)."""
  if mesh is None and jax.device_count() == 1:
    return engine.make_train_fn(num_steps)
  return make_train_fn(num_steps, make_mesh() if mesh is None else mesh)

