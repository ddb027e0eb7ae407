"""Latent Policy Steering (LPS): a MeanFlow base policy steered through its spherical latent.

  pi_beta(s, z)  one-step MeanFlow decoder (x-prediction), trained only by behaviour cloning
  l_phi(s)       latent actor, output projected onto the sphere of radius sqrt(D)
  Q_k(s, a)      double-Q critic on flattened action chunks, Polyak target
  policy         a = pi_beta(s, l_phi(s))

One fused update minimises, with a single jax.grad over all parameters,
  L = L_flow(beta) + L_critic(Q) + L_actor(phi),
  L_actor = -actor_scale * mean Qbar(s, pi_beta(s, l_phi(s))) / stop_grad(mean |Qbar|),
with explicit stop-gradients so that each loss reaches only its own parameters: the actor's
gradient flows *through* pi_beta's input into phi, never into beta or the critic.
actor_scale (default 1) is the reference code's "alpha" (jellyho/LPS agents/lps.py: the actor
loss is alpha * normalised Q loss). It only scales the latent actor's gradient, which its own
Adam all but undoes (docs/alpha_ogbench.md measures how little it changes).
"""
from typing import Any, Dict

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from lps_jax import critic as critic_lib
from lps_jax import meanflow, train_state
from lps_jax.agents import common


class LPSAgent(flax.struct.PyTreeNode):
  rng: jax.Array
  flow: train_state.TrainState
  latent_actor: train_state.TrainState
  critic: train_state.TargetTrainState
  hparams: Dict[str, jax.Array]        # vmappable scalars: tau, actor_scale
  config: Any = flax.struct.field(pytree_node=False)

  # ----------------------------------------------------------------- construction
  @classmethod
  def create(cls, seed: int, observation_dim: int, action_dim: int, config):
    """action_dim is the flattened chunk size D = horizon * env action dim."""
    key_flow, key_actor, key_critic, rng = jax.random.split(jax.random.PRNGKey(seed), 4)
    return cls(
        rng=rng,
        flow=common.make_flow(config, observation_dim, action_dim, key_flow),
        latent_actor=common.make_state_net(config, config.actor_hidden_dims, observation_dim,
                                           action_dim, key_actor),
        critic=critic_lib.make_critic(config, observation_dim, action_dim, key_critic),
        hparams={'tau': jnp.float32(config.tau),
                 'actor_scale': jnp.float32(config.actor_scale)},
        config=config)

  # ----------------------------------------------------------------- policy
  def latents(self, observations, actor_params=None):
    """l_phi(s) on the sphere: [B, O] -> [B, D]."""
    return common.sphere_latents(self.latent_actor, observations, actor_params)

  def policy_actions(self, observations, flow_params=None, actor_params=None):
    """a = pi_beta(s, l_phi(s)): [B, O] -> [B, D]."""
    return common.steered_actions(self.flow, self.latent_actor, observations, flow_params,
                                  actor_params)

  def sample_actions(self, observations, key=None):
    """Deterministic LPS action [B, D] (key unused; kept for a common signature)."""
    del key
    return self.policy_actions(observations)

  # ----------------------------------------------------------------- losses
  def loss(self, params, batch, key):
    """params {'flow', 'latent_actor', 'critic'}; batch as in lps_jax/data/dataset.py."""
    cfg = self.config

    flow_loss, info = meanflow.meanflow_loss(
        common.bind(self.flow, params['flow']), batch['observations'], batch['actions'], key,
        **common.meanflow_kwargs(cfg))

    # The actor's pass on s (gradient to phi only: the base policy is frozen here, it learns
    # from the BC loss alone) and the TD target's pass on s' (no gradient at all). Two passes,
    # not one over [s; s']: the backward of a joint pass would also run over the B rows of s'
    # whose cotangent is zero (~10% of the update's FLOPs at 2x256, measured on the jaxpr).
    sg = jax.lax.stop_gradient
    policy_actions = self.policy_actions(batch['observations'], sg(params['flow']),
                                         params['latent_actor'])
    next_actions = sg(self.policy_actions(batch['next_observations'], params['flow'],
                                          params['latent_actor']))

    critic_loss, critic_info = critic_lib.td_critic_loss(
        self.critic, params['critic'], batch, next_actions, cfg)

    # Actor: the critic is frozen too; the gradient reaches phi through pi_beta's input.
    q_policy = self.critic(batch['observations'], policy_actions,
                           params=jax.lax.stop_gradient(params['critic'])).mean(axis=0)
    actor_loss = self.hparams['actor_scale'] * critic_lib.normalized_q_objective(q_policy)

    info.update(critic_info)
    info.update({'actor/loss': actor_loss, 'actor/q': q_policy.mean(),
                 'actor/action_abs': jnp.abs(policy_actions).mean()})
    return flow_loss + critic_loss + actor_loss, info

  # ----------------------------------------------------------------- update
  def params(self):
    return {'flow': self.flow.params, 'latent_actor': self.latent_actor.params,
            'critic': self.critic.params}

  def update(self, batch):
    """One fused gradient step on all three networks (+ Polyak target) -> (agent, info)."""
    return common.gradient_step(self, batch)


def get_config() -> ml_collections.ConfigDict:
  """LPS hyperparameters (paper / jellyho/LPS values: flow 4x512, critic 4x256 LN, latent actor 2x256)."""
  config = common.base_config()
  config.agent_name = 'lps'
  config.actor_hidden_dims = (256, 256)          # latent actor l_phi
  config.critic_hidden_dims = (256, 256, 256, 256)  # LayerNorm; 4x512 only for larger settings
  # flow_hidden_dims stays 4x512 (common.base_config)
  config.actor_scale = 1.0            # the reference's alpha on the actor loss (vmappable)
  return config


def validate_config(config) -> None:
  """LPS-specific ranges; ValueError, which config_lib.validate reports as a ConfigError."""
  if not config.actor_scale > 0:
    raise ValueError(f'config.agent.actor_scale must be > 0, got {config.actor_scale}')
