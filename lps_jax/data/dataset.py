"""Transitions on the device, and chunked minibatch sampling inside jit.

Host format (`transitions`, float32 numpy, N rows):
  observations [N, O], actions [N, A] in [-1, 1], next_observations [N, O],
  rewards   [N]  r(s_i, a_i),
  masks     [N]  0 where s_{i+1} is a true terminal state of the task (no bootstrapping
                 from it), else 1,
  terminals [N]  1 on the last stored transition of an episode (an episode boundary,
                 which is not necessarily a terminal state), else 0.

A sampled batch (B rows, horizon h, D = h * A):
  observations [B, O]        s_t
  actions      [B, D]        a_t .. a_{t+h-1}, flattened; never crosses an episode boundary
  rewards      [B]           sum_k gamma^k alive_k r_{t+k}, alive_k = prod_{j<k} masks_{t+j}
  masks        [B]           prod_k masks_{t+k}: may y bootstrap from s_{t+h}?
  next_observations [B, O]   s_{t+h}
  next_actions [B, D]        a_{t+h} .. a_{t+2h-1} (ReBRAC's a'); row indices clipped to the
                             dataset, and near an episode's end they may cross into the next
                             episode (as in FQL's reference); only meaningful where masks = 1.
                             Unused keys cost nothing: XLA drops the gather inside jit.
"""
from typing import Dict

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

REQUIRED_KEYS = ('observations', 'actions', 'next_observations', 'rewards', 'masks', 'terminals')
ACTION_TOL = 1e-5


class DatasetError(ValueError):
  """A malformed dataset; the message is one line naming the source and the problem."""


def validate_transitions(transitions: Dict[str, np.ndarray], source: str = 'dataset') -> None:
  """Raise DatasetError on missing keys, ragged lengths, empty feature axes, NaN/Inf,
  out-of-range actions, masks outside [0, 1] or terminals other than 0/1."""
  missing = [k for k in REQUIRED_KEYS if k not in transitions]
  if missing:
    raise DatasetError(f'{source}: missing keys {missing}')
  n = len(transitions['observations'])
  if n == 0:
    raise DatasetError(f'{source}: no transitions')
  for key in REQUIRED_KEYS:
    value = np.asarray(transitions[key])
    if len(value) != n:
      raise DatasetError(f'{source}: {key} has {len(value)} rows, observations has {n}')
    if value.ndim == 2 and value.shape[1] == 0:
      raise DatasetError(f'{source}: {key} has shape {value.shape}: no features')
    if not np.all(np.isfinite(value)):
      raise DatasetError(f'{source}: {key} contains NaN or Inf')
  max_abs = float(np.abs(transitions['actions']).max())
  if max_abs > 1.0 + ACTION_TOL:
    raise DatasetError(f'{source}: actions outside [-1, 1] (max |a| = {max_abs:.7g})')
  masks, terminals = np.asarray(transitions['masks']), np.asarray(transitions['terminals'])
  if masks.min() < 0 or masks.max() > 1:
    raise DatasetError(f'{source}: masks must be in [0, 1] (1: bootstrap from s_(i+1), 0: a '
                       f'terminal state), got values in [{masks.min():.7g}, {masks.max():.7g}]')
  odd = terminals[(terminals != 0) & (terminals != 1)]
  if odd.size:
    raise DatasetError(f'{source}: terminals must be 0 or 1 (1 on the last row of an episode), '
                       f'got {odd.size} other values, e.g. {odd[0]:.7g}')


def chunk_starts(terminals: np.ndarray, horizon: int) -> np.ndarray:
  """Indices i whose chunk i..i+h-1 stays inside one episode: [M] int32."""
  n = len(terminals)
  ends = np.concatenate([[0], np.cumsum(terminals > 0)])
  starts = np.arange(max(n - horizon + 1, 0))
  # No episode ends among rows i .. i+h-2 (the chunk's last row may end the episode).
  return starts[ends[starts + horizon - 1] - ends[starts] == 0].astype(np.int32)


class DeviceDataset(flax.struct.PyTreeNode):
  """The transitions as device arrays plus the valid chunk starts [M]."""
  observations: jax.Array
  actions: jax.Array
  next_observations: jax.Array
  rewards: jax.Array
  masks: jax.Array
  starts: jax.Array

  @property
  def size(self) -> int:
    return self.observations.shape[0]


def to_device(transitions: Dict[str, np.ndarray], horizon: int, source: str = 'dataset',
              device=None) -> DeviceDataset:
  """Validate, find the chunk starts and place the dataset on `device` (default device)."""
  validate_transitions(transitions, source)
  starts = chunk_starts(np.asarray(transitions['terminals']), horizon)
  if len(starts) == 0:
    raise DatasetError(f'{source}: no episode is at least horizon={horizon} steps long')
  arrays = {k: np.asarray(transitions[k], np.float32) for k in REQUIRED_KEYS if k != 'terminals'}
  return jax.device_put(DeviceDataset(starts=starts, **arrays), device)


def sample_batch(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int,
                 discount: float) -> Dict[str, jax.Array]:
  """Uniform chunk sampling, jit-friendly (batch_size, horizon and discount are static)."""
  start = data.starts[jax.random.randint(key, (batch_size,), 0, data.starts.shape[0])]
  rows = start[:, None] + jnp.arange(horizon)[None]                  # [B, h]
  step_masks = data.masks[rows]                                      # [B, h]
  alive = jnp.cumprod(jnp.concatenate(
      [jnp.ones((batch_size, 1)), step_masks[:, :-1]], axis=1), axis=1)
  discounts = discount ** jnp.arange(horizon, dtype=jnp.float32)
  return {
      'observations': data.observations[start],
      'actions': data.actions[rows].reshape(batch_size, -1),
      'rewards': jnp.sum(discounts * alive * data.rewards[rows], axis=1),
      'masks': jnp.prod(step_masks, axis=1),
      'next_observations': data.next_observations[rows[:, -1]],
      'next_actions': data.actions[jnp.minimum(rows + horizon, data.size - 1)].reshape(
          batch_size, -1),
  }
