"""Flow Q-Learning (FQL, Park et al. 2025, arXiv 2502.02538; reference: seohongpark/fql agents/fql.py).

  v_theta(s, x_t, t)  BC flow-matching velocity net (networks.FlowNet with h = 0)
  mu_omega(s, z)      one-step policy, z ~ N(0, I)         -> the policy that acts
  Q_k(s, a)           critic ensemble on flattened action chunks, Polyak target

Flow convention -- FQL's, the OPPOSITE of lps_jax.meanflow's: t = 0 is noise, t = 1 is data.
  x_t = (1 - t) z + t a,   velocity target a - z,   t ~ U(0, 1).
  flow_euler(s, z): x_0 = z, x_{k+1} = x_k + v(s, x_k, k / K) / K for K = flow_steps (10),
  then clipped to [-1, 1].

One fused update minimises, with a single jax.grad over all parameters,
  L = L_flow(theta) + L_critic(Q) + L_actor(omega),
  L_actor = -lam * mean_k Q_k(s, mu(s, z)) + alpha * mean((mu(s, z) - stop_grad(flow_euler(s, z)))^2)
  lam = stop_grad(1 / mean |Q|) if normalize_q_loss else 1.
As in the reference the distillation term is a mean over batch *and* action dims, so the
published alpha values (FQL 300 / 1000, QC-FQL 1..30 with normalisation) carry over.
Critic target: y = r + gamma^h * mask * agg_k Q'_k(s', clip(mu(s', z'))).
"""
from typing import Any, Dict

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from lps_jax import critic as critic_lib
from lps_jax import train_state
from lps_jax.agents import common

sg = jax.lax.stop_gradient
MAX_UNROLLED_EULER_STEPS = 16


class FQLAgent(flax.struct.PyTreeNode):
  rng: jax.Array
  flow: train_state.TrainState          # BC velocity field v(s, x_t, t, 0)
  onestep: train_state.TrainState       # mu(s, z) over concat(s, z)
  critic: train_state.TargetTrainState
  hparams: Dict[str, jax.Array]         # vmappable scalars: tau, alpha
  action_dim: int = flax.struct.field(pytree_node=False)   # D
  config: Any = flax.struct.field(pytree_node=False)

  # ----------------------------------------------------------------- construction
  @classmethod
  def create(cls, seed: int, observation_dim: int, action_dim: int, config):
    """action_dim is the flattened chunk size D = horizon * env action dim."""
    key_flow, key_onestep, key_critic, rng = jax.random.split(jax.random.PRNGKey(seed), 4)
    return cls(
        rng=rng,
        flow=common.make_flow(config, observation_dim, action_dim, key_flow),
        onestep=common.make_state_net(config, config.actor_hidden_dims,
                                      observation_dim + action_dim, action_dim, key_onestep),
        critic=critic_lib.make_critic(config, observation_dim, action_dim, key_critic),
        hparams={'tau': jnp.float32(config.tau), 'alpha': jnp.float32(config.alpha)},
        action_dim=action_dim, config=config)

  # ----------------------------------------------------------------- policies
  def onestep_actions(self, observations, noises, onestep_params=None):
    """mu(s, z), unclipped: [B, O], [B, D] -> [B, D]."""
    return self.onestep(jnp.concatenate([observations, noises], axis=-1), params=onestep_params)

  def flow_actions(self, observations, noises, flow_params=None):
    """The BC flow's action: flow_steps Euler steps from z at t=0 to t=1, clipped. [B, D]."""
    velocity = common.bind(self.flow, flow_params)
    num_steps = self.config.flow_steps
    zeros = jnp.zeros(noises.shape[:-1] + (1,), noises.dtype)

    def euler_step(x, k):
      return x + velocity(observations, x, zeros + k / num_steps, zeros) / num_steps, None

    # Unrolled when short: no while loop in the HLO, XLA fuses across the steps (and counts
    # every step's FLOPs).
    actions, _ = jax.lax.scan(euler_step, noises, jnp.arange(num_steps, dtype=noises.dtype),
                              unroll=num_steps <= MAX_UNROLLED_EULER_STEPS)
    return jnp.clip(actions, -1.0, 1.0)

  def sample_actions(self, observations, key):
    """clip(mu(s, z), -1, 1), z ~ N(0, I): [B, O] -> [B, D] (stochastic)."""
    noises = jax.random.normal(key, observations.shape[:-1] + (self.action_dim,))
    return jnp.clip(self.onestep_actions(observations, noises), -1.0, 1.0)

  # ----------------------------------------------------------------- losses
  def flow_loss(self, params, batch, key):
    """Conditional flow matching (FQL convention: t = 0 noise, t = 1 data)."""
    actions = batch['actions']
    key_noise, key_time = jax.random.split(key)
    noises = jax.random.normal(key_noise, actions.shape)
    t = jax.random.uniform(key_time, actions.shape[:-1] + (1,))
    x_t = (1.0 - t) * noises + t * actions
    pred = self.flow(batch['observations'], x_t, t, jnp.zeros_like(t), params=params['flow'])
    loss = jnp.mean((pred - (actions - noises)) ** 2)
    return loss, {'flow/loss': loss}

  def critic_loss(self, params, batch, key):
    cfg = self.config
    next_obs = batch['next_observations']
    noises = jax.random.normal(key, batch['actions'].shape)
    next_actions = sg(jnp.clip(self.onestep_actions(next_obs, noises, params['onestep']), -1.0, 1.0))
    return critic_lib.td_critic_loss(self.critic, params['critic'], batch, next_actions, cfg)

  def actor_loss(self, params, batch, key):
    """-lam Q(s, mu(s, z)) + alpha * distill; gradient reaches the one-step policy only."""
    observations = batch['observations']
    noises = jax.random.normal(key, batch['actions'].shape)
    # Distillation target: the BC flow's Euler action for the same noise, fully stopped.
    target_actions = sg(self.flow_actions(observations, noises, sg(params['flow'])))
    actions = self.onestep_actions(observations, noises, params['onestep'])
    distill_loss = jnp.mean((actions - target_actions) ** 2)

    # Q term: the critic is frozen here; the gradient reaches omega through the action.
    q = self.critic(observations, jnp.clip(actions, -1.0, 1.0),
                    params=sg(params['critic'])).mean(axis=0)
    q_loss = (critic_lib.normalized_q_objective(q) if self.config.normalize_q_loss
              else -q.mean())
    loss = q_loss + self.hparams['alpha'] * distill_loss
    return loss, {'actor/loss': loss, 'actor/q': q.mean(), 'actor/distill_loss': distill_loss,
                  'actor/action_abs': jnp.abs(actions).mean()}

  def loss(self, params, batch, key):
    """params {'flow', 'onestep', 'critic'} -> (L_flow + L_critic + L_actor, info)."""
    key_flow, key_critic, key_actor = jax.random.split(key, 3)
    flow_loss, info = self.flow_loss(params, batch, key_flow)
    critic_loss, critic_info = self.critic_loss(params, batch, key_critic)
    actor_loss, actor_info = self.actor_loss(params, batch, key_actor)
    info.update(critic_info)
    info.update(actor_info)
    total = flow_loss + critic_loss + actor_loss
    info['loss'] = total
    return total, info

  # ----------------------------------------------------------------- update
  def params(self):
    return {'flow': self.flow.params, 'onestep': self.onestep.params, 'critic': self.critic.params}

  def update(self, batch):
    """One fused gradient step on all three networks (+ Polyak target) -> (agent, info)."""
    return common.gradient_step(self, batch)


def get_config() -> ml_collections.ConfigDict:
  """FQL hyperparameters (reference defaults; OGBench sizes)."""
  config = common.base_config()
  config.agent_name = 'fql'
  config.alpha = 10.0                 # distillation weight (vmappable: hparams['alpha'])
  config.flow_steps = 10              # Euler steps of the BC flow
  config.normalize_q_loss = False     # scale the Q term by stop_grad(1 / mean |Q|)
  config.q_agg = 'mean'               # FQL reference default
  return config


def validate_config(config) -> None:
  """FQL-specific ranges; ValueError, which config_lib.validate reports as a ConfigError."""
  if not config.alpha >= 0:
    raise ValueError(f'config.agent.alpha must be >= 0, got {config.alpha}')
  if not (isinstance(config.flow_steps, int) and config.flow_steps >= 1):
    raise ValueError(f'config.agent.flow_steps must be an integer >= 1, got '
                                 f'{config.flow_steps!r}')
