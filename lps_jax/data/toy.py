"""The 2-D toy bandits of the LPS paper's alpha-sensitivity figure (Fig. 2).

Default, 'toy': a CONTEXTUAL bandit on ONE ring. The observation is a context c ~ U[-1, 1];
the behaviour actions lie on one noisy ring, radius uniform in RING_RADIUS +- SUPPORT_BAND,
angle uniform, independent of c. The reward of an action a in the ring's band
(|r - RING_RADIUS| <= SUPPORT_BAND) is

    reward(c, a) = exp(-dtheta^2 / (2 PEAK_WIDTH^2)) * (1 - RADIAL_BONUS * (r_out - r) / (2 band))

with dtheta the angle between a and the peak angle theta*(c) = PEAK_CENTER + PEAK_SWING * c,
and r_out = RING_RADIUS + SUPPORT_BAND: its maximum 1 is at the band's outer edge at the peak,
and the ring's centre line at the peak earns 1 - RADIAL_BONUS / 2 (0.95). Actions outside the
band earn 0 and count as out of support. A critic fitted on the data sees the reward grow
outward near the peak and extrapolates it past the band, so a weakly regularised actor leaves
the support (the failure of Fig. 2), while a strongly regularised one stays near the data.
The support (one ring) is connected, so the one-step image of the 2-D spherical latent (a
circle) can cover it.

Variant, 'toy-rings': the old two-rings bandit, one dummy state. Behaviour actions on two
concentric rings; reward 0.3 on the inner ring, 0.6 on the outer ring, 1.0 on the outer ring's
top-right arc (60..90 degrees). Finding (experiments/toy_decoder_study.py, docs/toy.md): with a 2-D
action the spherical latent is a circle, and a one-step decoder's image of a circle is one
closed curve: it cannot cover two disjoint rings, so LPS cannot reliably land on the arc.

Every row is its own one-step episode: masks = 0 (no bootstrapping), terminals = 1.
"""
import numpy as np

ACTION_DIM = 2
# ------------------------------------------------------------------ contextual one ring
RING_RADIUS = 0.7
SUPPORT_BAND = 0.25           # data radius ~ U[0.45, 0.95]; |radius - RING_RADIUS| <= band is on it
PEAK_CENTER = 45.0            # degrees: theta*(c) = PEAK_CENTER + PEAK_SWING * c
PEAK_SWING = 90.0
PEAK_WIDTH = 30.0             # degrees: std of the Gaussian fall-off in angle
RADIAL_BONUS = 0.1            # reward grows by this fraction across the band, toward the outside
NEAR_PEAK_DEGREES = 15.0      # an evaluation counts actions within this angle of the peak
CONTEXT_DIM = 1


def wrap_degrees(angle):
  """Angles (degrees) -> (-180, 180]."""
  return (np.asarray(angle) + 180.0) % 360.0 - 180.0


def peak_angle(contexts, peak_center=PEAK_CENTER, peak_swing=PEAK_SWING):
  """contexts [B] -> the reward's peak angle in degrees [B]."""
  return peak_center + peak_swing * np.asarray(contexts, np.float64)


def ring_reward(contexts, actions, peak_width=PEAK_WIDTH, support_band=SUPPORT_BAND,
                radial_bonus=RADIAL_BONUS):
  """contexts [B] (or [B, 1]), actions [B, 2] -> (reward [B], out_of_support [B] bool,
  angle to the peak [B] in degrees)."""
  contexts = np.asarray(contexts, np.float64).reshape(-1)
  actions = np.asarray(actions, np.float64)
  radius = np.linalg.norm(actions, axis=-1)
  angle = np.degrees(np.arctan2(actions[:, 1], actions[:, 0]))
  to_peak = wrap_degrees(angle - peak_angle(contexts))
  on_ring = np.abs(radius - RING_RADIUS) <= support_band
  angular = np.exp(-0.5 * (to_peak / peak_width) ** 2)
  radial = 1.0 - radial_bonus * (RING_RADIUS + support_band - radius) / (2 * support_band)
  reward = np.where(on_ring, angular * radial, 0.0)
  return reward.astype(np.float32), ~on_ring, to_peak


def make_ring_transitions(num_samples: int = 10_000, seed: int = 0, **reward_kwargs):
  """Contexts ~ U[-1, 1]; actions on the ring: uniform angle, radius uniform over the band
  (both independent of c)."""
  support_band = reward_kwargs.get('support_band', SUPPORT_BAND)
  rng = np.random.default_rng(seed)
  contexts = rng.uniform(-1.0, 1.0, (num_samples, CONTEXT_DIM)).astype(np.float32)
  radius = RING_RADIUS + rng.uniform(-support_band, support_band, num_samples)
  angle = rng.uniform(-np.pi, np.pi, num_samples)
  actions = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1).astype(np.float32)
  rewards, _, _ = ring_reward(contexts, actions, **reward_kwargs)
  return {
      'observations': contexts,
      'actions': actions,
      'next_observations': contexts.copy(),
      'rewards': rewards,
      'masks': np.zeros(num_samples, np.float32),
      'terminals': np.ones(num_samples, np.float32),
  }


def evaluation_contexts(num_contexts: int = 256):
  """An even grid of contexts over [-1, 1]: [N, 1] (deterministic, so runs compare)."""
  return np.linspace(-1.0, 1.0, num_contexts, dtype=np.float32)[:, None]


def evaluate_ring_actions(contexts, actions, dataset_rewards, **reward_kwargs):
  """Policy actions [B, 2] at contexts [B, 1] -> {reward, out_of_support, near_peak,
  dataset_reward}. near_peak: on the ring and within NEAR_PEAK_DEGREES of the peak."""
  reward, off, to_peak = ring_reward(contexts, actions, **reward_kwargs)
  near = ~off & (np.abs(to_peak) <= NEAR_PEAK_DEGREES)
  return {'reward': float(reward.mean()), 'out_of_support': float(off.mean()),
          'near_peak': float(near.mean()), 'dataset_reward': float(np.mean(dataset_rewards))}


def plot_ring_policy(path, dataset_actions, contexts, policy_actions, title='',
                     reward_kwargs=None, axes=None):
  """One panel per context: the reward (colour), the data (grey), the policy's actions (red x).

  contexts [C]; policy_actions [C, S, 2] (S samples per context). Saves a PNG if path.
  """
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  reward_kwargs = reward_kwargs or {}
  own_figure = axes is None
  if own_figure:
    fig, axes = plt.subplots(1, len(contexts), figsize=(2.6 * len(contexts), 2.9))
  axes = np.atleast_1d(axes)
  grid = np.linspace(-1.05, 1.05, 161)
  xx, yy = np.meshgrid(grid, grid)
  points = np.stack([xx.ravel(), yy.ravel()], -1)
  for ax, context, actions in zip(axes, contexts, policy_actions):
    reward, _, _ = ring_reward(np.full(len(points), context), points, **reward_kwargs)
    ax.imshow(reward.reshape(xx.shape), origin='lower', extent=(-1.05, 1.05, -1.05, 1.05),
              cmap='Greens', vmin=0, vmax=1)
    ax.scatter(dataset_actions[:1500, 0], dataset_actions[:1500, 1], s=1, c='0.6')
    ax.scatter(actions[:, 0], actions[:, 1], s=14, c='tab:red', marker='x')
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect('equal')
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f'c = {context:+.2f}', fontsize=8)
  if own_figure:
    if title:
      fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_context_actions(ax, dataset_actions, contexts, actions):
  """One panel, several contexts: data (grey), each context's peak direction (dashed) and its
  actions (same colour). contexts [C]; actions [C, S, 2]."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ax.scatter(dataset_actions[:1500, 0], dataset_actions[:1500, 1], s=1, c='0.75')
  colors = plt.cm.viridis(np.linspace(0, 1, len(contexts)))
  for context, context_actions, color in zip(contexts, actions, colors):
    peak = np.radians(peak_angle([context])[0])
    ax.plot([0, 1.4 * np.cos(peak)], [0, 1.4 * np.sin(peak)], ls='--', lw=0.8, color=color)
    ax.scatter(context_actions[:, 0], context_actions[:, 1], s=8, marker='x', color=color)
  ax.set_xlim(-1.05, 1.05)
  ax.set_ylim(-1.05, 1.05)
  ax.set_aspect('equal')


# ------------------------------------------------------------------ two rings (variant)
INNER_RADIUS = 0.45
OUTER_RADIUS = 0.85
RINGS_NOISE = 0.03
RINGS_BAND = 0.1
ARC_DEGREES = (60.0, 90.0)
RINGS_OBSERVATION_DIM = 1


def rings_reward(actions: np.ndarray):
  """actions [B, 2] -> (reward [B], out_of_support [B] bool)."""
  actions = np.asarray(actions, np.float64)
  radius = np.linalg.norm(actions, axis=-1)
  angle = np.degrees(np.arctan2(actions[:, 1], actions[:, 0]))
  on_outer = np.abs(radius - OUTER_RADIUS) < RINGS_BAND
  on_inner = np.abs(radius - INNER_RADIUS) < RINGS_BAND
  on_arc = on_outer & (angle > ARC_DEGREES[0]) & (angle < ARC_DEGREES[1])
  reward = np.where(on_arc, 1.0, np.where(on_outer, 0.6, np.where(on_inner, 0.3, 0.0)))
  return reward.astype(np.float32), ~(on_outer | on_inner)


def make_rings_transitions(num_samples: int = 10_000, seed: int = 0,
                           outer_fraction: float = 0.5):
  """outer_fraction of the rows on the outer ring, the rest inner; uniform angles, radial
  noise RINGS_NOISE."""
  if not 0.0 <= outer_fraction <= 1.0:
    raise ValueError(f'outer_fraction must be in [0, 1], got {outer_fraction}')
  rng = np.random.default_rng(seed)
  index = np.arange(num_samples)   # interleaved; 0.5 alternates inner, outer, inner, ...
  on_outer = np.floor((index + 1) * outer_fraction) > np.floor(index * outer_fraction)
  radius = np.where(on_outer, OUTER_RADIUS, INNER_RADIUS)
  radius = radius + RINGS_NOISE * rng.standard_normal(num_samples)
  angle = rng.uniform(-np.pi, np.pi, num_samples)
  actions = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1).astype(np.float32)
  observations = np.ones((num_samples, RINGS_OBSERVATION_DIM), np.float32)
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
