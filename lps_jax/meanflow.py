"""MeanFlow base policy in x-prediction ("noise-to-action") form, and the spherical latent.

Conventions (t = 1 is noise, t = 0 is data):
  x   [B, D]  flattened action chunk,  e [B, D] latent on the sphere of radius sqrt(D)
  z_t = (1 - t) x + t e,   v = e - x   (instantaneous velocity dz/dt)
  f(s, z_t, t, t - r) -> x_hat         (the network predicts the action)
  u(z_t, r, t) = z_t - x_hat           (mean velocity over [r, t])
  MeanFlow identity: u = v - (t - r) du/dt, with du/dt the total derivative along the
  trajectory, i.e. the JVP of u over (z, t, r) with tangents (v, 1, 0).
One-step sampling: a = clip(f(s, e, t=1, t-r=1), -1, 1).
"""
from typing import Callable

import jax
import jax.numpy as jnp

# f(observations [B,O], z [B,D], t [B,1], h [B,1]) -> x_hat [B,D], params already bound.
XPredFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def project_to_sphere(v: jax.Array, eps: float = 1e-6) -> jax.Array:
  """[..., D] -> [..., D] with norm sqrt(D) along the last axis (smooth norm: finite grads at 0)."""
  dim = v.shape[-1]
  norm = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + eps * eps)
  return v / norm * jnp.sqrt(jnp.asarray(dim, v.dtype))


def sample_sphere(key: jax.Array, shape) -> jax.Array:
  """Spherical latent prior: Gaussian rescaled to norm sqrt(D); shape [..., D]."""
  return project_to_sphere(jax.random.normal(key, shape))


LATENT_PRIORS = ('sphere', 'gaussian')


def sample_latents(key: jax.Array, shape, prior: str = 'sphere') -> jax.Array:
  """Base noise [..., D]: 'sphere' (LPS) or 'gaussian' (only for studies of the prior)."""
  if prior == 'sphere':
    return sample_sphere(key, shape)
  if prior == 'gaussian':
    return jax.random.normal(key, shape)
  raise ValueError(f'unknown latent prior {prior!r}; choose from {LATENT_PRIORS}')


def sample_times(key: jax.Array, batch_size: int, mean: float = -0.4, std: float = 1.0,
                 equal_fraction: float = 0.75):
  """(t, r) each [B, 1]: logit-normal, sorted so t >= r; a fraction has r := t."""
  key_tr, key_eq = jax.random.split(key)
  samples = jax.nn.sigmoid(mean + std * jax.random.normal(key_tr, (2, batch_size, 1)))
  t = jnp.maximum(samples[0], samples[1])
  r = jnp.minimum(samples[0], samples[1])
  equal = jax.random.uniform(key_eq, (batch_size, 1)) < equal_fraction
  return t, jnp.where(equal, t, r)


def mean_velocity_and_derivative(x_pred: XPredFn, observations, z_t, t, r, v):
  """u(z_t, r, t) [B, D] and its total derivative du/dt [B, D] via one jax.jvp."""

  def mean_velocity(z, t_, r_):
    return z - x_pred(observations, z, t_, t_ - r_)

  return jax.jvp(mean_velocity, (z_t, t, r), (v, jnp.ones_like(t), jnp.zeros_like(r)))


def meanflow_target(v, t, r, du_dt):
  """u_tgt = stop_grad(v - clip(t - r, 0, 1) du/dt); all [B, D] (t, r [B, 1])."""
  return jax.lax.stop_gradient(v - jnp.clip(t - r, 0.0, 1.0) * du_dt)


def meanflow_loss(x_pred: XPredFn, observations, actions, key, *, time_mean=-0.4,
                  time_std=1.0, equal_fraction=0.75, adaptive_power=0.5, adaptive_eps=1e-3,
                  prior='sphere'):
  """Adaptive-weighted MeanFlow BC loss. observations [B, O], actions [B, D] -> (scalar, info)."""
  batch_size, dim = actions.shape
  key_noise, key_time = jax.random.split(key)
  noise = sample_latents(key_noise, (batch_size, dim), prior)
  t, r = sample_times(key_time, batch_size, time_mean, time_std, equal_fraction)
  z_t = (1.0 - t) * actions + t * noise
  v = noise - actions
  u, du_dt = mean_velocity_and_derivative(x_pred, observations, z_t, t, r, v)
  u_target = meanflow_target(v, t, r, du_dt)
  sq_err = jnp.mean((u - u_target) ** 2, axis=-1)
  weight = jax.lax.stop_gradient(1.0 / (sq_err + adaptive_eps) ** adaptive_power)
  loss = jnp.mean(weight * sq_err)
  return loss, {'flow/loss': loss, 'flow/mse': jnp.mean(sq_err)}


def multi_step_action(x_pred: XPredFn, observations, latents, num_steps: int):
  """Mean-flow sampling in num_steps equal jumps z_r = z_t - (t - r) u(z_t, r, t); [B, D]."""
  ones = jnp.ones(latents.shape[:-1] + (1,), latents.dtype)
  z = latents
  for i in range(num_steps):
    t, r = 1.0 - i / num_steps, 1.0 - (i + 1) / num_steps
    z = z - (t - r) * (z - x_pred(observations, z, t * ones, (t - r) * ones))
  return jnp.clip(z, -1.0, 1.0)


def one_step_action(x_pred: XPredFn, observations, latents):
  """a = clip(f(s, e, t=1, t-r=1), -1, 1): observations [B, O], latents [B, D] -> [B, D]."""
  ones = jnp.ones(latents.shape[:-1] + (1,), latents.dtype)
  return jnp.clip(x_pred(observations, latents, ones, ones), -1.0, 1.0)
