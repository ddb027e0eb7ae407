"""The 2-D "two rings" bandit of the LPS paper's alpha-sensitivity figure.

One dummy state (observation [1] = 1). Behaviour actions lie on two noisy rings; the reward
of an action depends on the ring it is on: inner 0.3, outer 0.6, and 1.0 on the outer ring's
top-right arc (angle in (60, 90) degrees). Actions on neither ring get 0 and count as out of
support. Each row is its own one-step episode: masks = 0 (no bootstrapping), terminals = 1.
"""
import numpy as np

INNER_RADIUS = 0.45
OUTER_RADIUS = 0.85
RING_NOISE = 0.03
SUPPORT_BAND = 0.1          # |radius - ring radius| < band counts as on the ring
ARC_DEGREES = (60.0, 90.0)
OBSERVATION_DIM = 1
ACTION_DIM = 2


def rings_reward(actions: np.ndarray):
  """actions [B, 2] -> (reward [B], out_of_support [B] bool)."""
  actions = np.asarray(actions, np.float64)
  radius = np.linalg.norm(actions, axis=-1)
  angle = np.degrees(np.arctan2(actions[:, 1], actions[:, 0]))
  on_outer = np.abs(radius - OUTER_RADIUS) < SUPPORT_BAND
  on_inner = np.abs(radius - INNER_RADIUS) < SUPPORT_BAND
  on_arc = on_outer & (angle > ARC_DEGREES[0]) & (angle < ARC_DEGREES[1])
  reward = np.where(on_arc, 1.0, np.where(on_outer, 0.6, np.where(on_inner, 0.3, 0.0)))
  return reward.astype(np.float32), ~(on_outer | on_inner)


def make_rings_transitions(num_samples: int = 10_000, seed: int = 0,
                           outer_fraction: float = 0.5):
  """outer_fraction of the rows on the outer ring, the rest inner; uniform angles, radial
  noise RING_NOISE."""
  if not 0.0 <= outer_fraction <= 1.0:
    raise ValueError(f'outer_fraction must be in [0, 1], got {outer_fraction}')
  rng = np.random.default_rng(seed)
  index = np.arange(num_samples)   # interleaved; 0.5 alternates inner, outer, inner, ...
  on_outer = np.floor((index + 1) * outer_fraction) > np.floor(index * outer_fraction)
  radius = np.where(on_outer, OUTER_RADIUS, INNER_RADIUS)
  radius = radius + RING_NOISE * rng.standard_normal(num_samples)
  angle = rng.uniform(-np.pi, np.pi, num_samples)
  actions = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1).astype(np.float32)
  observations = np.ones((num_samples, OBSERVATION_DIM), np.float32)
  rewards, _ = rings_reward(actions)
  return {
      'observations': observations,
      'actions': actions,
      'next_observations': observations.copy(),
      'rewards': rewards,
      'masks': np.zeros(num_samples, np.float32),
      'terminals': np.ones(num_samples, np.float32),
  }


def evaluate_actions(actions: np.ndarray, dataset_rewards: np.ndarray):
  """Policy actions [B, 2] -> {reward, out_of_support, dataset_reward, on_arc}."""
  reward, off = rings_reward(actions)
  return {'reward': float(reward.mean()), 'out_of_support': float(off.mean()),
          'on_arc': float((reward == 1.0).mean()), 'dataset_reward': float(dataset_rewards.mean())}


def plot_actions(path: str, dataset_actions: np.ndarray, policy_actions: np.ndarray,
                 title: str = '', ax=None):
  """Scatter of the behaviour data (grey) and the policy's actions (red); saves a PNG."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  own_figure = ax is None
  if own_figure:
    fig, ax = plt.subplots(figsize=(4, 4))
  ax.scatter(dataset_actions[:2000, 0], dataset_actions[:2000, 1], s=2, c='0.75', label='data')
  theta = np.radians(np.linspace(*ARC_DEGREES, 50))
  ax.plot(OUTER_RADIUS * np.cos(theta), OUTER_RADIUS * np.sin(theta), c='gold', lw=4,
          alpha=0.6, label='reward 1.0')
  ax.scatter(policy_actions[:, 0], policy_actions[:, 1], s=12, c='tab:red', marker='x',
             label='policy')
  ax.set_xlim(-1.05, 1.05)
  ax.set_ylim(-1.05, 1.05)
  ax.set_aspect('equal')
  ax.set_title(title, fontsize=9)
  if own_figure:
    ax.legend(loc='lower left', fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
