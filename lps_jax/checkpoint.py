"""Orbax checkpoints of the whole train state, wrapped once (kauldron style).

    workdir/checkpoints/<step>/state   the agent as a state dict: every network's params and
                                       optimiser state (incl. the injected learning rate), the
                                       critic's target params, per-state step counters, hparams
                                       and the rng (which also drives the on-device batch sampler)
                              /meta    JSON {step, fingerprint}: one uint32 per leaf, checked on
                                       restore
    workdir/checkpoints.bad/<step>.<time>   corrupted or partial checkpoints, moved aside (never
                                       deleted)

The loop step is the checkpoint's step number. Static fields (apply_fn, tx, config) are not
saved: `restore` fills a freshly created agent (the template), so the restored agent is the
template's class with the checkpoint's arrays, laid out with the template's shardings.

Saving is asynchronous: `save` returns once the arrays are copied off the device (the train
loop may then donate them), the files are written in the background; `wait`/`close` block
until every save is committed. Orbax writes each step to `<step>.orbax-checkpoint-tmp` and
renames it when complete, so a process killed mid-save leaves only a tmp directory, which the
next `restore` moves aside with a warning.
"""
import datetime
import logging as std_logging
import os
import shutil
import sys
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

CHECKPOINT_DIR = 'checkpoints'
BAD_DIR = 'checkpoints.bad'
TMP_MARKER = '.orbax-checkpoint-tmp'


def _orbax():
  """orbax.checkpoint, imported on first use: it adds ~0.4 s to every process that imports
  this module, and runs refused on bad input (exit 2) never write a checkpoint."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp


def __getattr__(name: str):
  """`checkpoint.ocp` (tests build raw orbax saves with it) without importing it up front."""
  if name == 'ocp':
    return _orbax()
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


class CheckpointError(RuntimeError):
  """No usable checkpoint; the message is one line."""


class IncompatibleCheckpointError(CheckpointError):
  """A readable checkpoint whose arrays do not fit the agent (a config or code change)."""


# ---------------------------------------------------------------------------------- fingerprint
def _leaf_fingerprint(x: jax.Array) -> jax.Array:
  """Position-weighted sum of the leaf's bits, mod 2**32 (exact on any device and sharding)."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  else:
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
  bits = bits.reshape(-1)
  weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
  return jnp.sum(bits * weights, dtype=jnp.uint32)


@jax.jit
def _fingerprint(leaves):
  if not leaves:
    return jnp.zeros((0,), jnp.uint32)
  return jnp.stack([_leaf_fingerprint(x) for x in leaves])


def fingerprint(tree) -> List[int]:
  """One uint32 per leaf of `tree` (sorted-key order), as Python ints."""
  return [int(v) for v in np.asarray(_fingerprint(jax.tree.leaves(tree)))]


def _leaf_specs(tree) -> Dict[str, Tuple[tuple, str]]:
  """{'a.b.c': (shape, dtype)} for the leaves of a nested dict of arrays or ArrayMetadata."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {'.'.join(str(getattr(k, 'key', k)) for k in path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in flat}


_QUIETED = []


def _quiet_abandoned_reads() -> None:
  """When a checkpoint cannot be read, the tensorstore reads orbax started for it and abandoned
  fail later, as unraisable 'Event loop is closed' tracebacks (callbacks on orbax's closed event
  loop) and 'exception was never retrieved' asyncio errors: dozens of lines that say nothing
  restore's one-line warning does not. Drop exactly those, for the rest of the process."""
  if _QUIETED:
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'):
      previous(unraisable)

  sys.unraisablehook = hook
  std_logging.getLogger('asyncio').addFilter(
      lambda record: 'exception was never retrieved' not in record.getMessage())
  _QUIETED.append(True)


# ---------------------------------------------------------------------------------- manager
class Checkpointer:
  """Save / restore the agent every N steps in `directory` (orbax CheckpointManager)."""

  def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True,
               keep_steps=()):
    """keep_steps: steps kept besides the latest max_to_keep (e.g. evaluation points whose
    evaluations may have to be redone after a preemption)."""
    self.directory = os.path.abspath(directory)
    self.bad_directory = os.path.join(os.path.dirname(self.directory), BAD_DIR)
    ocp = _orbax()
    policy = ocp.checkpoint_managers.LatestN(max_to_keep)
    if keep_steps:
      policy = ocp.checkpoint_managers.AnyPreservationPolicy(
          [policy, ocp.checkpoint_managers.CustomSteps(sorted(int(s) for s in keep_steps))])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=False,    # partial saves are moved aside by restore() instead
        create=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'meta': ocp.JsonCheckpointHandler()})

  # -------------------------------------------------------------- queries
  @property
  def steps(self) -> List[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    steps = self.steps
    return steps[-1] if steps else None

  def path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  # -------------------------------------------------------------- save
  def save(self, step: int, agent) -> bool:
    """Checkpoint `agent` as step `step` (no-op if that step exists). Returns True if saved."""
    if step in self._manager.all_steps():
      return False
    state = flax.serialization.to_state_dict(agent)
    meta = {'step': int(step), 'fingerprint': fingerprint(state)}
    ocp = _orbax()
    return self._manager.save(
        int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           meta=ocp.args.JsonSave(meta)), force=True)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  # -------------------------------------------------------------- restore
  def _move_aside(self, name: str) -> str:
    os.makedirs(self.bad_directory, exist_ok=True)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
    destination = os.path.join(self.bad_directory, f'{name}.{stamp}')
    shutil.move(os.path.join(self.directory, name), destination)
    return destination

  def _move_aside_partial_saves(self) -> None:
    if not os.path.isdir(self.directory):
      return
    for name in sorted(os.listdir(self.directory)):
      if TMP_MARKER in name:
        destination = self._move_aside(name)
        logging.warning('checkpoint %s was never completed (the process stopped while saving); '
                        'moved it to %s', os.path.join(self.directory, name), destination)

  def _check_fits(self, step: int, template_state) -> None:
    """IncompatibleCheckpointError if the checkpoint's arrays do not match the agent's (a
    config/code change, not a corruption: such a checkpoint is left in place); CheckpointError
    if its metadata cannot be read."""
    try:
      metadata = self._manager.item_metadata(step)['state']
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f'unreadable metadata ({type(e).__name__})') from None
    if metadata is None:
      raise CheckpointError('missing state metadata')
    saved = _leaf_specs(metadata)
    wanted = _leaf_specs(template_state)
    if saved == wanted:
      return
    only_saved = sorted(set(saved) - set(wanted))[:3]
    only_wanted = sorted(set(wanted) - set(saved))[:3]
    shapes = [f'{k}: {saved[k]} vs {wanted[k]}' for k in sorted(set(saved) & set(wanted))
              if saved[k] != wanted[k]][:3]
    raise IncompatibleCheckpointError(
        f'checkpoint {self.path(step)} does not fit this agent (was the config or the code '
        f'changed?): only in checkpoint {only_saved}, only in agent {only_wanted}, '
        f'shape/dtype differs {shapes}')

  def restore(self, template, step: Optional[int] = None) -> Tuple[Any, Optional[int]]:
    """(agent, step) from the latest readable checkpoint (or exactly `step`).

    Returns (template, None) if there is no checkpoint. A checkpoint that cannot be read or
    fails its fingerprint is moved to checkpoints.bad/ with a warning and the previous one is
    tried; CheckpointError if checkpoints existed but none is readable.
    """
    _quiet_abandoned_reads()
    self._move_aside_partial_saves()
    self._manager.reload()
    template_state = flax.serialization.to_state_dict(template)
    ocp = _orbax()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template_state)
    steps = [step] if step is not None else sorted(self._manager.all_steps(), reverse=True)
    bad = []
    for candidate in steps:
      try:
        self._check_fits(candidate, template_state)
        restored = self._manager.restore(
            candidate, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                               meta=ocp.args.JsonRestore()))
        meta = restored['meta'] or {}
        if meta.get('step') != candidate:
          raise CheckpointError(f'meta step {meta.get("step")} != {candidate}')
        if fingerprint(restored['state']) != list(meta.get('fingerprint', [])):
          raise CheckpointError('fingerprint mismatch: the stored arrays are corrupted')
      except IncompatibleCheckpointError:
        raise
      except CheckpointError as e:
        reason = str(e)
      except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many types)
        reason = f'{type(e).__name__}: {" ".join(str(e).split())[:200]}'
      else:
        if bad:
          self._manager.reload()
          logging.warning('resumed from the previous good checkpoint %s', self.path(candidate))
        state = _uncommitted_like(restored['state'], template_state)
        return flax.serialization.from_state_dict(template, state), candidate
      destination = self._move_aside(str(candidate))
      bad.append(candidate)
      logging.warning('checkpoint %s is corrupted or partial (%s); moved it to %s; falling back to '
                      'the previous checkpoint', self.path(candidate), reason, destination)
    self._manager.reload()
    if bad:
      raise CheckpointError(
          f'no readable checkpoint in {self.directory}: steps {bad} are corrupted (moved to '
          f'{self.bad_directory}); rerun with --resume to start this run from step 0')
    return template, None


def _uncommitted_like(state, template_state):
  """Restored leaves are committed to their device; where the template's leaf is not (an
  agent freshly created on the default device), an uncommitted copy, so that a jitted train
  step called on the restored agent reuses the compilation made for a fresh one."""

  def like(leaf, template):
    if (isinstance(template, jax.Array) and not template.committed
        and not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)):
      return jnp.asarray(np.asarray(leaf))
    return leaf

  return jax.tree.map(like, state, template_state)


def latest_step_on_disk(directory: str) -> Optional[int]:
  """The highest completed step directory under `directory` (no orbax, no validation)."""
  names = os.listdir(directory) if os.path.isdir(directory) else []
  steps = [int(n) for n in names if n.isdigit()]
  return max(steps) if steps else None


def load_state_dict(directory: str, step: Optional[int] = None) -> Tuple[Dict[str, Any], int]:
  """(state dict of numpy arrays, step) of a checkpoint, without an agent (for analysis).

  The arrays are restored onto this process's first device, whatever device count or mesh
  the checkpoint was written with (as resume restores onto the current agent's layout).
  """
  directory = os.path.abspath(directory)
  step = latest_step_on_disk(directory) if step is None else step
  if step is None:
    raise CheckpointError(f'no checkpoint in {directory}')
  path = os.path.join(directory, str(step), 'state')
  checkpointer = _orbax().StandardCheckpointer()
  try:
    metadata = checkpointer.metadata(path)
  except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many types)
    raise CheckpointError(f'checkpoint {path} is unreadable ({type(e).__name__})') from None
  tree = getattr(getattr(metadata, 'item_metadata', metadata), 'tree', metadata)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
  state = checkpointer.restore(path, target)
  return jax.tree.map(np.asarray, state), step
