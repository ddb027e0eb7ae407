"""HL-Gauss histogram losses (Imani & White 2018; Farebrother et al. 2024, "Stop Regressing").

A scalar value y in [v_min, v_max] is represented by a categorical distribution over
`num_bins` equal-width bins. The regression target becomes the histogram of a Gaussian
N(y, sigma^2) integrated over each bin (mass outside [v_min, v_max] is renormalised away),
and the loss is the cross-entropy between that histogram and the network's softmax:

  p_i(y) = [Phi((e_{i+1} - y) / sigma) - Phi((e_i - y) / sigma)] / [Phi((e_K - y)/sigma) - Phi((e_0 - y)/sigma)]
  loss   = -sum_i p_i(y) log softmax(logits)_i,       value = sum_i softmax(logits)_i c_i

with edges e_0..e_K and centres c_i. sigma = sigma_ratio * bin width (0.75 by default: the
value the "Stop Regressing" paper recommends).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Support(NamedTuple):
  edges: jax.Array       # [K + 1]
  centers: jax.Array     # [K]
  sigma: float


def make_support(v_min: float, v_max: float, num_bins: int, sigma_ratio: float = 0.75) -> Support:
  if not v_max > v_min or num_bins < 2:
    raise ValueError(f'need v_max > v_min and num_bins >= 2, got [{v_min}, {v_max}], {num_bins}')
  edges = jnp.linspace(v_min, v_max, num_bins + 1, dtype=jnp.float32)
  width = (v_max - v_min) / num_bins
  return Support(edges, (edges[:-1] + edges[1:]) / 2, sigma_ratio * width)


def target_probs(values: jax.Array, support: Support) -> jax.Array:
  """Scalar targets [...] -> Gaussian-smoothed histograms [..., K] (rows sum to 1)."""
  values = jnp.clip(values, support.edges[0], support.edges[-1])
  cdf = jax.scipy.special.erf((support.edges - values[..., None]) / (jnp.sqrt(2.0) * support.sigma))
  mass = cdf[..., 1:] - cdf[..., :-1]
  return mass / jnp.maximum(cdf[..., -1:] - cdf[..., :1], 1e-6)


def expected_value(logits: jax.Array, support: Support) -> jax.Array:
  """Logits [..., K] -> scalar value [...]: the mean of the categorical distribution."""
  return jnp.sum(jax.nn.softmax(logits, axis=-1) * support.centers, axis=-1)


def loss(logits: jax.Array, values: jax.Array, support: Support) -> jax.Array:
  """Cross-entropy of logits [..., K] against the HL-Gauss histogram of stop_grad(values) [...]."""
  probs = jax.lax.stop_gradient(target_probs(values, support))
  return -jnp.sum(probs * jax.nn.log_softmax(logits, axis=-1), axis=-1)
