"""Network modules shared by every agent (Flax linen).

Shapes: B = batch, O = observation dim, D = flattened action-chunk dim (h * action_dim),
E = ensemble size.

Mixed precision (config.agent.compute_dtype = 'bfloat16'): every Dense and LayerNorm computes
in bfloat16 while the parameters stay float32 (so do the optimiser state and updates); each
network casts its output back to float32, so every loss and reduction runs in float32.
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {'gelu': nn.gelu, 'relu': nn.relu, 'silu': nn.silu, 'tanh': jnp.tanh}
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(config) -> Any:
  """config.compute_dtype ('float32' if absent) -> the jnp dtype of the matmuls."""
  return COMPUTE_DTYPES[config.get('compute_dtype', 'float32')]


def default_init(scale: float = 1.0):
  return nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform')


class MLP(nn.Module):
  """[..., in] -> [..., hidden_dims[-1]]; optional LayerNorm after each hidden layer."""
  hidden_dims: Sequence[int]
  activation: str = 'gelu'
  layer_norm: bool = False
  activate_final: bool = False
  final_init_scale: float = 1.0
  dtype: Any = jnp.float32            # compute dtype; params are always float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act: Callable = ACTIVATIONS[self.activation]
    last = len(self.hidden_dims) - 1
    for i, size in enumerate(self.hidden_dims):
      is_final = i == last
      scale = self.final_init_scale if is_final else 1.0
      x = nn.Dense(size, kernel_init=default_init(scale), dtype=self.dtype,
                   param_dtype=jnp.float32)(x)
      if not is_final or self.activate_final:
        if self.layer_norm:
          x = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32)(x)
        x = act(x)
    return x.astype(jnp.float32)


class FlowNet(nn.Module):
  """Velocity / x-prediction network f(s, z, t, t-r) -> [B, D].

  `observations` [B, O], `z` [B, D], `t` [B, 1], `h` [B, 1] (= t - r; pass zeros for
  plain flow matching, which ignores it).
  """
  hidden_dims: Sequence[int]
  action_dim: int
  activation: str = 'gelu'
  layer_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, observations, z, t, h):
    x = jnp.concatenate([observations, z, t, h], axis=-1)
    return MLP((*self.hidden_dims, self.action_dim), self.activation, self.layer_norm,
               dtype=self.dtype)(x)


class StateMLP(nn.Module):
  """Deterministic head on the state: [B, O] -> [B, output_dim] (latent actor, actors, V)."""
  hidden_dims: Sequence[int]
  output_dim: int
  activation: str = 'gelu'
  layer_norm: bool = False
  final_init_scale: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, observations):
    return MLP((*self.hidden_dims, self.output_dim), self.activation, self.layer_norm,
               final_init_scale=self.final_init_scale, dtype=self.dtype)(observations)


class Ensemble(nn.Module):
  """E independent copies of an MLP over concat(inputs): -> [E, B, output_dim].

  member_batched_input=False feeds the input shared (in_axes=None), the layout before the
  member-batched one: same parameters and values, more transposes (kept for the benchmark's
  kernel-count comparison).
  """
  hidden_dims: Sequence[int]
  output_dim: int = 1
  num_members: int = 2
  activation: str = 'gelu'
  layer_norm: bool = True
  dtype: Any = jnp.float32
  member_batched_input: bool = True

  @nn.compact
  def __call__(self, *inputs):
    x = jnp.concatenate(inputs, axis=-1)
    # The input goes in with a member axis in front ([E, B, in], a broadcast): every layer is
    # then a member-batched matmul whose output is already [E, B, H]. A shared input
    # (in_axes=None) makes the first matmul [B, E, H] and costs a transpose of it in every
    # forward pass and two in every backward pass (seen in the compiled HLO).
    if self.member_batched_input:
      x = jnp.broadcast_to(x, (self.num_members, *x.shape))
    members = nn.vmap(
        MLP, variable_axes={'params': 0}, split_rngs={'params': True},
        in_axes=0 if self.member_batched_input else None, out_axes=0,
        axis_size=self.num_members)
    return members((*self.hidden_dims, self.output_dim), self.activation, self.layer_norm,
                   dtype=self.dtype)(x)


class QEnsemble(nn.Module):
  """Q(s, a) ensemble: observations [B, O], actions [B, D] -> [E, B]."""
  hidden_dims: Sequence[int]
  num_members: int = 2
  activation: str = 'gelu'
  layer_norm: bool = True
  dtype: Any = jnp.float32
  member_batched_input: bool = True

  @nn.compact
  def __call__(self, observations, actions):
    q = Ensemble(self.hidden_dims, 1, self.num_members, self.activation,
                 self.layer_norm, self.dtype, self.member_batched_input)(observations, actions)
    return q[..., 0]
