"""ReBRAC (Tarasov et al. 2023): TD3+BC with behaviour penalties in both actor and critic.

  pi(s) = tanh(MLP(s))   deterministic actor with a Polyak target pi'
  Q_k(s, a)              critic ensemble on flattened action chunks, Polyak target

Losses (one fused jax.grad):
  L_actor  = mean[ -lam * agg_k Q_k(s, pi(s)) + alpha_actor * ||pi(s) - a||^2 ],
             lam = stop_grad(1 / mean |Q|) if normalize_q_loss else 1
  L_critic = mean_k (Q_k(s, a) - y)^2,
             a~' = clip(pi'(s') + clip(N(0, noise^2), -noise_clip, noise_clip), -1, 1)
             y   = r + gamma^h * mask * (agg_k Q'_k(s', a~') - alpha_critic * ||a~' - a'||^2)
with a' the dataset's next action chunk (batch['next_actions']); squared norms sum over the
D action dims (as in CORL / FQL's reference). The actor and its target move only every
`actor_freq` critic steps (TD3's delayed update); on the other steps their params AND
optimiser state are kept bit-identical (common.select_tree), all inside the fused update.
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


class ReBRACAgent(flax.struct.PyTreeNode):
  rng: jax.Array
  actor: train_state.TargetTrainState
  critic: train_state.TargetTrainState
  hparams: Dict[str, jax.Array]         # vmappable: tau, alpha_actor, alpha_critic
  config: Any = flax.struct.field(pytree_node=False)

  # ----------------------------------------------------------------- construction
  @classmethod
  def create(cls, seed: int, observation_dim: int, action_dim: int, config):
    """action_dim is the flattened chunk size D = horizon * env action dim."""
    key_actor, key_critic, rng = jax.random.split(jax.random.PRNGKey(seed), 3)
    actor = common.make_state_net(config, config.actor_hidden_dims, observation_dim,
                                  action_dim, key_actor)
    return cls(
        rng=rng,
        actor=train_state.TargetTrainState.create(actor.apply_fn, actor.params, actor.tx),
        critic=critic_lib.make_critic(config, observation_dim, action_dim, key_critic),
        hparams={'tau': jnp.float32(config.tau),
                 'alpha_actor': jnp.float32(config.alpha_actor),
                 'alpha_critic': jnp.float32(config.alpha_critic)},
        config=config)

  # ----------------------------------------------------------------- policy
  def policy_actions(self, observations, actor_params=None):
    """pi(s) = tanh(MLP(s)): [B, O] -> [B, D]."""
    return jnp.tanh(self.actor(observations, params=actor_params))

  def sample_actions(self, observations, key=None):
    """Deterministic action [B, D] (key unused; kept for a common signature)."""
    del key
    return self.policy_actions(observations)

  # ----------------------------------------------------------------- losses
  def critic_loss(self, params, batch, key):
    cfg = self.config
    next_obs = batch['next_observations']
    next_actions = self.policy_actions(next_obs, self.actor.target_params)
    noise = jnp.clip(cfg.target_noise * jax.random.normal(key, next_actions.shape),
                     -cfg.target_noise_clip, cfg.target_noise_clip)
    next_actions = sg(jnp.clip(next_actions + noise, -1.0, 1.0))
    penalty = jnp.sum((next_actions - batch['next_actions']) ** 2, axis=-1)
    # agg_k(q_k - p) = agg_k(q_k) - p: the BC penalty shifts every member's target Q.
    loss, info = critic_lib.td_critic_loss(self.critic, params['critic'], batch, next_actions, cfg,
                                           next_penalty=self.hparams['alpha_critic'] * penalty)
    info['critic/next_bc_penalty'] = penalty.mean()
    return loss, info

  def actor_loss(self, params, batch):
    """Gradient reaches the actor only (the critic is frozen in this loss)."""
    actions = self.policy_actions(batch['observations'], params['actor'])
    q = critic_lib.aggregate(
        self.critic(batch['observations'], actions, params=sg(params['critic'])), self.config.q_agg)
    q_loss = critic_lib.normalized_q_objective(q) if self.config.normalize_q_loss else -q.mean()
    bc_loss = jnp.mean(jnp.sum((actions - batch['actions']) ** 2, axis=-1))
    loss = q_loss + self.hparams['alpha_actor'] * bc_loss
    return loss, {'actor/loss': loss, 'actor/q': q.mean(), 'actor/bc_mse': bc_loss,
                  'actor/action_abs': jnp.abs(actions).mean()}

  def loss(self, params, batch, key):
    """params {'actor', 'critic'} -> (L_critic + L_actor, info)."""
    critic_loss, info = self.critic_loss(params, batch, key)
    actor_loss, actor_info = self.actor_loss(params, batch)
    info.update(actor_info)
    total = critic_loss + actor_loss
    info['loss'] = total
    return total, info

  # ----------------------------------------------------------------- update
  def params(self):
    return {'actor': self.actor.params, 'critic': self.critic.params}

  def update(self, batch):
    """One fused step: critic every step, actor (+ its target) every actor_freq steps."""
    new, info = common.gradient_step(self, batch, polyak=('critic', 'actor'))
    update_actor = self.critic.step % self.config.actor_freq == 0
    return new.replace(actor=common.select_tree(update_actor, new.actor, self.actor)), info


def get_config() -> ml_collections.ConfigDict:
  """ReBRAC hyperparameters (CORL / FQL-reference defaults; OGBench sizes)."""
  config = common.base_config()
  config.agent_name = 'rebrac'
  config.alpha_actor = 1.0            # alpha1: actor BC weight (vmappable)
  config.alpha_critic = 0.0           # alpha2: critic-target BC penalty (vmappable)
  config.normalize_q_loss = True      # lam = stop_grad(1 / mean |Q|)
  config.target_noise = 0.2
  config.target_noise_clip = 0.5
  config.actor_freq = 2               # delayed actor / target-actor updates
  return config


def validate_config(config) -> None:
  """ReBRAC-specific ranges; ValueError, which config_lib.validate reports as a ConfigError."""
  for name in ('alpha_actor', 'alpha_critic', 'target_noise', 'target_noise_clip'):
    if not config[name] >= 0:
      raise ValueError(f'config.agent.{name} must be >= 0, got {config[name]}')
  if not (isinstance(config.actor_freq, int) and config.actor_freq >= 1):
    raise ValueError(f'config.agent.actor_freq must be an integer >= 1, got '
                                 f'{config.actor_freq!r}')
