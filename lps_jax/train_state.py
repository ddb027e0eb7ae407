"""Pure-functional train states (flax.struct) and the optimiser factory.

The learning rate lives inside the optimiser state (optax.inject_hyperparams), so it is an
ordinary array leaf: a vmapped sweep can give every member its own learning rate.
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import optax


@functools.lru_cache(maxsize=None)
def make_optimizer(learning_rate: float, max_grad_norm: float = 0.0) -> optax.GradientTransformation:
  """Adam with an injectable learning rate, optionally after global-norm clipping.

  Cached: tx is a static field of every train state, compared by identity in jit's cache key,
  so agents created apart with the same (lr, max_grad_norm) share one compiled program.
  """

  def build(learning_rate):
    adam = optax.adam(learning_rate)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam) if max_grad_norm > 0 else adam

  return optax.inject_hyperparams(build)(learning_rate=learning_rate)


@functools.lru_cache(maxsize=None)
def _shared_module(module: nn.Module) -> nn.Module:
  """The first module built with these fields (flax modules hash and compare by their fields)."""
  return module


def shared_apply_fn(apply_fn: Callable) -> Callable:
  """module.apply of one shared module per configuration; other functions unchanged.

  apply_fn is a static field, part of jit's cache key, and bound methods compare by the
  identity of their module: without this, two agents created apart would compile twice.
  """
  module = getattr(apply_fn, '__self__', None)
  if isinstance(module, nn.Module) and getattr(apply_fn, '__name__', '') == 'apply':
    return _shared_module(module).apply
  return apply_fn


class TrainState(flax.struct.PyTreeNode):
  """params + optimiser state of one network; apply_fn and tx are static."""
  step: jax.Array
  params: Any
  opt_state: Any
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, apply_fn, params, tx):
    return cls(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
               opt_state=tx.init(params), apply_fn=shared_apply_fn(apply_fn), tx=tx)

  def __call__(self, *args, params=None, **kwargs):
    """Apply the network with `params` (default: the state's own)."""
    return self.apply_fn(self.params if params is None else params, *args, **kwargs)

  def apply_gradients(self, grads):
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                        opt_state=opt_state)


class TargetTrainState(TrainState):
  """TrainState with a Polyak-averaged copy of the params (critic targets)."""
  target_params: Any = None

  @classmethod
  def create(cls, apply_fn, params, tx):
    state = super().create(apply_fn, params, tx)
    # A real copy: aliased buffers cannot both be donated to the fused update.
    return state.replace(target_params=jax.tree.map(jax.numpy.copy, params))

  def polyak_update(self, tau):
    """target <- tau * params + (1 - tau) * target."""
    target = jax.tree.map(lambda p, t: tau * p + (1.0 - tau) * t, self.params, self.target_params)
    return self.replace(target_params=target)


def learning_rate(state: TrainState) -> jax.Array:
  return state.opt_state.hyperparams['learning_rate']
