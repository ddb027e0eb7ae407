"""The critic backbone every agent shares: ensemble Q(s, a) on flattened action chunks.

Batch semantics (see lps_jax/data/dataset.py):
  rewards [B]  discounted sum of the h rewards of the chunk (zeroed after a terminal state)
  masks   [B]  1 if the value of next_observations (s_{t+h}) may be bootstrapped, else 0
The TD target is y = rewards + discount**h * masks * agg_k Q'_k(s_{t+h}, a').
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from lps_jax import networks, train_state


def make_critic(config, observation_dim: int, action_dim: int, key) -> train_state.TargetTrainState:
  """Q ensemble with a Polyak target; config needs critic_hidden_dims, num_critics, lr."""
  module = networks.QEnsemble(tuple(config.critic_hidden_dims), config.num_critics,
                              config.activation, config.critic_layer_norm,
                              networks.compute_dtype(config),
                              config.get('critic_member_batched_input', True))
  params = module.init(key, jnp.zeros((1, observation_dim)), jnp.zeros((1, action_dim)))
  tx = train_state.make_optimizer(config.lr, config.max_grad_norm)
  return train_state.TargetTrainState.create(module.apply, params, tx)


def aggregate(q: jax.Array, how: str) -> jax.Array:
  """[E, B] -> [B] by 'min' or 'mean' over the ensemble."""
  if how == 'min':
    return q.min(axis=0)
  if how == 'mean':
    return q.mean(axis=0)
  raise ValueError(f'q_agg must be "min" or "mean", got {how!r}')


def td_target(rewards, masks, next_q, discount_h, q_agg: str) -> jax.Array:
  """rewards, masks [B]; next_q [E, B] from the target critic -> stop_grad(y) [B]."""
  return jax.lax.stop_gradient(rewards + discount_h * masks * aggregate(next_q, q_agg))


def td_loss(q: jax.Array, target: jax.Array):
  """q [E, B] from the online critic, target [B] -> (scalar, info)."""
  loss = jnp.mean((q - target[None]) ** 2)
  return loss, {'critic/loss': loss, 'critic/q_mean': q.mean(), 'critic/target_mean': target.mean()}


def td_critic_loss(critic, critic_params, batch, next_actions, config, next_penalty=None):
  """The shared critic loss: online Q_k(s, a) vs y from the target critic at (s', a').

  next_actions [B, D] must already carry stop_gradient; next_penalty [B] (ReBRAC) is
  subtracted from every member's target Q before aggregation. -> (scalar, info)
  """
  next_q = critic(batch['next_observations'], next_actions, params=critic.target_params)
  if next_penalty is not None:
    next_q = next_q - next_penalty[None]
  target = td_target(batch['rewards'], batch['masks'], next_q,
                     config.discount ** config.horizon, config.q_agg)
  return td_loss(critic(batch['observations'], batch['actions'], params=critic_params), target)


def normalized_q_objective(q: jax.Array):
  """-mean(q) / stop_grad(mean|q|): the scale-free actor loss of FQL/LPS. q [B]."""
  scale = jax.lax.stop_gradient(1.0 / jnp.maximum(jnp.abs(q).mean(), 1e-6))
  return -scale * q.mean()
