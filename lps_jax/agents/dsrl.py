"""DSRL, noise-aliased variant (Wagenmaker et al. 2025, arXiv 2506.15799), on a MeanFlow base policy.

  pi_beta(s, w)  one-step MeanFlow decoder, trained by BC exactly as in LPS
  Q^A_k(s, a)    action critic, TD in action space, Polyak target
  Q^W_k(s, w)    latent ("noise") critic, distilled from Q^A through the frozen decoder
  l(s)           latent actor, output projected onto the sphere of radius sqrt(D)
  policy         a = pi_beta(s, l(s))

One fused jax.grad over all parameters of
  L_flow   = MeanFlow BC loss                                       -> beta only
  L_critic = mean_k (Q^A_k(s, a) - y)^2,
             y = r + gamma^h * mask * agg_k Q^A'_k(s', pi_beta(s', l(s')))   -> Q^A only
  L_latent = mean_k (Q^W_k(s, w) - stop_grad(mean_j Q^A_j(s, pi_beta(s, w))))^2,
             w ~ the spherical latent prior                                   -> Q^W only
  L_actor  = -actor_scale * mean_s mean_k Q^W_k(s, l(s)) / stop_grad(mean |.|)  -> l only
Unlike LPS, the actor never differentiates through pi_beta: its gradient is grad_w Q^W.
actor_scale (default 1) is the reference code's DSRL "alpha" (jellyho/LPS agents/dsrl.py: it
multiplies the latent actor's normalised Q loss only, as LPS's does).
"""
from typing import Any, Dict

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from lps_jax import critic as critic_lib
from lps_jax import meanflow, networks, train_state
from lps_jax.agents import common

sg = jax.lax.stop_gradient


def make_latent_critic(config, observation_dim: int, latent_dim: int, key):
  """Q^W(s, w) ensemble (same architecture as the action critic, no target network)."""
  module = networks.QEnsemble(tuple(config.critic_hidden_dims), config.num_critics,
                              config.activation, config.critic_layer_norm,
                              networks.compute_dtype(config))
  params = module.init(key, jnp.zeros((1, observation_dim)), jnp.zeros((1, latent_dim)))
  return train_state.TrainState.create(
      module.apply, params, train_state.make_optimizer(config.lr, config.max_grad_norm))


class DSRLAgent(flax.struct.PyTreeNode):
  rng: jax.Array
  flow: train_state.TrainState
  latent_actor: train_state.TrainState
  critic: train_state.TargetTrainState          # Q^A
  latent_critic: train_state.TrainState         # Q^W
  hparams: Dict[str, jax.Array]                 # vmappable scalars: tau, actor_scale
  config: Any = flax.struct.field(pytree_node=False)

  # ----------------------------------------------------------------- construction
  @classmethod
  def create(cls, seed: int, observation_dim: int, action_dim: int, config):
    """action_dim is the flattened chunk size D = horizon * env action dim."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    return cls(
        rng=keys[4],
        flow=common.make_flow(config, observation_dim, action_dim, keys[0]),
        latent_actor=common.make_state_net(config, config.actor_hidden_dims, observation_dim,
                                           action_dim, keys[1]),
        critic=critic_lib.make_critic(config, observation_dim, action_dim, keys[2]),
        latent_critic=make_latent_critic(config, observation_dim, action_dim, keys[3]),
        hparams={'tau': jnp.float32(config.tau),
                 'actor_scale': jnp.float32(config.actor_scale)},
        config=config)

  # ----------------------------------------------------------------- policy
  def latents(self, observations, actor_params=None):
    """l(s) on the sphere: [B, O] -> [B, D]."""
    return common.sphere_latents(self.latent_actor, observations, actor_params)

  def decode(self, observations, latents, flow_params=None):
    """pi_beta(s, w): [B, O], [B, D] -> [B, D]."""
    return meanflow.one_step_action(common.bind(self.flow, flow_params), observations, latents)

  def sample_actions(self, observations, key=None):
    """Deterministic action pi_beta(s, l(s)) [B, D] (key unused)."""
    del key
    return self.decode(observations, self.latents(observations))

  def latent_q(self, observations, latents, latent_critic_params=None):
    """mean_k Q^W_k(s, w): [B]."""
    return self.latent_critic(observations, latents, params=latent_critic_params).mean(axis=0)

  def action_q_of_latent(self, observations, latents, critic_params=None, flow_params=None):
    """mean_k Q^A_k(s, pi_beta(s, w)): [B] (the quantity Q^W is distilled on)."""
    actions = self.decode(observations, latents, flow_params)
    return self.critic(observations, actions, params=critic_params).mean(axis=0)

  # ----------------------------------------------------------------- losses
  def flow_loss(self, params, batch, key):
    return meanflow.meanflow_loss(common.bind(self.flow, params['flow']), batch['observations'],
                                  batch['actions'], key, **common.meanflow_kwargs(self.config))

  def critic_loss(self, params, batch, key):
    """TD for Q^A; a' = pi_beta(s', l(s')) with every network stopped."""
    del key
    cfg = self.config
    next_obs = batch['next_observations']
    next_actions = sg(self.decode(next_obs, self.latents(next_obs, params['latent_actor']),
                                  params['flow']))
    return critic_lib.td_critic_loss(self.critic, params['critic'], batch, next_actions, cfg)

  def latent_critic_loss(self, params, batch, key):
    """Distil Q^W(s, w) on stop_grad(Q^A(s, pi_beta(s, w))), w ~ sphere prior."""
    observations = batch['observations']
    latents = meanflow.sample_sphere(key, batch['actions'].shape)
    target = sg(self.action_q_of_latent(observations, latents, sg(params['critic']),
                                        sg(params['flow'])))
    q_w = self.latent_critic(observations, latents, params=params['latent_critic'])
    loss = jnp.mean((q_w - target[None]) ** 2)
    return loss, {'latent_critic/loss': loss, 'latent_critic/q_mean': q_w.mean()}

  def actor_loss(self, params, batch):
    """Maximise Q^W(s, l(s)); Q^W is frozen here, so only the latent actor moves."""
    observations = batch['observations']
    latents = self.latents(observations, params['latent_actor'])
    q = self.latent_q(observations, latents, sg(params['latent_critic']))
    loss = self.hparams['actor_scale'] * critic_lib.normalized_q_objective(q)
    return loss, {'actor/loss': loss, 'actor/q_w': q.mean()}

  def loss(self, params, batch, key):
    """params {'flow', 'latent_actor', 'critic', 'latent_critic'} -> (sum of the four, info)."""
    key_flow, key_critic, key_latent = jax.random.split(key, 3)
    flow_loss, info = self.flow_loss(params, batch, key_flow)
    critic_loss, critic_info = self.critic_loss(params, batch, key_critic)
    latent_loss, latent_info = self.latent_critic_loss(params, batch, key_latent)
    actor_loss, actor_info = self.actor_loss(params, batch)
    for extra in (critic_info, latent_info, actor_info):
      info.update(extra)
    total = flow_loss + critic_loss + latent_loss + actor_loss
    info['loss'] = total
    return total, info

  # ----------------------------------------------------------------- update
  def params(self):
    return {'flow': self.flow.params, 'latent_actor': self.latent_actor.params,
            'critic': self.critic.params, 'latent_critic': self.latent_critic.params}

  def update(self, batch):
    """One fused gradient step on all four networks (+ Polyak target) -> (agent, info)."""
    return common.gradient_step(self, batch)


def get_config() -> ml_collections.ConfigDict:
  """DSRL-NA hyperparameters (LPS-paper sizes for the shared parts)."""
  config = common.base_config()
  config.agent_name = 'dsrl'
  config.actor_hidden_dims = (256, 256)
  config.actor_scale = 1.0            # the reference's alpha on the actor loss (vmappable)
  return config


def validate_config(config) -> None:
  """DSRL-specific ranges; ValueError, which config_lib.validate reports as a ConfigError."""
  if not config.actor_scale > 0:
    raise ValueError(f'config.agent.actor_scale must be > 0, got {config.actor_scale}')
