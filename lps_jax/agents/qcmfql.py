"""QC-MFQL: FQL's one-step distillation on a MeanFlow BC policy, with action chunks.

The alpha-sensitive baseline of the LPS paper's alpha figure (reference: jellyho/LPS
agents/qcmfql.py).

  pi_beta(s, z)  one-step MeanFlow decoder (x-prediction), trained only by behaviour cloning
                 (lps_jax.meanflow, exactly as in LPS)
  mu_omega(s, z) one-step, noise-conditioned actor over concat(s, z)  -> the policy that acts
  Q_k(s, a)      critic ensemble on flattened action chunks, Polyak target
  z              the latent prior of the MeanFlow policy (config.latent_prior; the reference
                 default, and this config's, is 'gaussian': N(0, I))

One fused update minimises, with a single jax.grad over all parameters,
  L = L_flow(beta) + L_critic(Q) + L_actor(omega),
  L_actor = -mean_B Qbar(s, mu(s, z)) / stop_grad(mean_B |Qbar|)
            + alpha * mean_{B, D} (mu(s, z) - stop_grad(pi_beta(s, z)))^2,
  Qbar = mean_k Q_k (critic frozen in this loss), pi_beta(s, z) = clip(f(s, z, t=1, t-r=1)).
As in the reference, mu's action enters Q unclipped here (it is clipped when it acts and in the
TD target), and the distillation term is a mean over batch *and* action dims (as FQL's).
Critic target: y = r + gamma^h * mask * agg_k Q'_k(s', clip(mu(s', z'))), agg = config.q_agg
(reference: min).
"""
from typing import Any, Dict

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from lps_jax import critic as critic_lib
from lps_jax import meanflow, train_state
from lps_jax.agents import common

sg = jax.lax.stop_gradient


class QCMFQLAgent(flax.struct.PyTreeNode):
  rng: jax.Array
  flow: train_state.TrainState          # MeanFlow BC decoder f(s, z, t, t - r)
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
  def noises(self, key, batch_shape):
    """z from the MeanFlow policy's latent prior: [*batch_shape, D]."""
    return meanflow.sample_latents(key, (*batch_shape, self.action_dim),
                                   self.config.latent_prior)

  def onestep_actions(self, observations, noises, onestep_params=None):
    """mu(s, z), unclipped: [B, O], [B, D] -> [B, D]."""
    return self.onestep(jnp.concatenate([observations, noises], axis=-1), params=onestep_params)

  def bc_actions(self, observations, noises, flow_params=None):
    """The MeanFlow BC policy's one-step action clip(f(s, z, 1, 1)): [B, D]."""
    return meanflow.one_step_action(common.bind(self.flow, flow_params), observations, noises)

  def sample_actions(self, observations, key, onestep_params=None):
    """clip(mu(s, z), -1, 1), z from the prior: [B, O] -> [B, D] (stochastic)."""
    noises = self.noises(key, observations.shape[:-1])
    return jnp.clip(self.onestep_actions(observations, noises, onestep_params), -1.0, 1.0)

  # ----------------------------------------------------------------- losses
  def critic_loss(self, params, batch, key):
    """TD with a' = sample_actions(s', key) (every network stopped)."""
    next_actions = sg(self.sample_actions(batch['next_observations'], key, params['onestep']))
    return critic_lib.td_critic_loss(self.critic, params['critic'], batch, next_actions,
                                     self.config)

  def actor_loss(self, params, batch, noises):
    """Normalised -Qbar(s, mu(s, z)) + alpha * distill, at the given z [B, D].

    The gradient reaches the one-step actor only: the critic and the BC target are stopped.
    """
    observations = batch['observations']
    target_actions = sg(self.bc_actions(observations, noises, sg(params['flow'])))
    actions = self.onestep_actions(observations, noises, params['onestep'])
    distill_loss = jnp.mean((actions - target_actions) ** 2)
    q = self.critic(observations, actions, params=sg(params['critic'])).mean(axis=0)
    q_loss = critic_lib.normalized_q_objective(q)
    loss = q_loss + self.hparams['alpha'] * distill_loss
    return loss, {'actor/loss': loss, 'actor/q_loss': q_loss, 'actor/q': q.mean(),
                  'actor/distill_loss': distill_loss,
                  'actor/action_abs': jnp.abs(actions).mean()}

  def loss(self, params, batch, key):
    """params {'flow', 'onestep', 'critic'} -> (L_flow + L_critic + L_actor, info)."""
    key_flow, key_critic, key_actor = jax.random.split(key, 3)
    flow_loss, info = meanflow.meanflow_loss(
        common.bind(self.flow, params['flow']), batch['observations'], batch['actions'],
        key_flow, **common.meanflow_kwargs(self.config))
    critic_loss, critic_info = self.critic_loss(params, batch, key_critic)
    actor_loss, actor_info = self.actor_loss(
        params, batch, self.noises(key_actor, batch['actions'].shape[:-1]))
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
  """QC-MFQL hyperparameters (jellyho/LPS agents/qcmfql.py defaults; chunks h = 5)."""
  config = common.base_config()
  config.agent_name = 'qcmfql'
  config.alpha = 1.0                  # distillation weight (vmappable: hparams['alpha'])
  config.critic_hidden_dims = (256, 256, 256, 256)   # LayerNorm; flow, actor 4x512
  config.latent_prior = 'gaussian'    # the reference's latent_dist default ('normal')
  # q_agg stays 'min' (base_config; the reference's critic_agg default).
  return config


def validate_config(config) -> None:
  """QC-MFQL-specific ranges; ValueError, which config_lib.validate reports as a ConfigError."""
  if not config.alpha >= 0:
    raise ValueError(f'config.agent.alpha must be >= 0, got {config.alpha}')
