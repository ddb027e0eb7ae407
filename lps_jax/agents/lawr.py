"""L-AWR: advantage-weighted latent planning through a frozen one-step MeanFlow policy.

  pi_beta(s, z)   one-step MeanFlow decoder (as in LPS), trained by BC in phase 1, then FROZEN
  V(s), Q(s, a)   HL-Gauss distributional critics (categorical over [v_min, v_max], num_bins),
                  ensembles of num_critics; V has a Polyak target
  pi_phi(s)       deterministic latent planner, output projected onto the sphere
  policy          a = pi_beta(s, pi_phi(s))

Phases, switched INSIDE the jitted update on the agent's own step counter (lax.cond), so a
whole run is one fused scan:
  step <  flow_steps  phase 1: MeanFlow BC loss -> beta. (V, Q, phi untouched.)
  step >= flow_steps  phase 2: critic + planner -> V, Q, phi. beta and its optimiser state
                      are passed through untouched, i.e. bit-identical from then on.
Critic (both heads regress on the same bootstrapped target, HL-Gauss cross-entropy):
  y = r + gamma^h * mask * agg_k V'_k(s')          (V' = Polyak target of V)
  L_V = CE(V(s), y),  L_Q = CE(Q(s, a), y)
Advantage (config.advantage):
  'td' (default)  A = r + gamma^h * mask * mean_k V_k(s') - mean_k V_k(s)
  'q'             A = mean_k Q_k(s, a) - mean_k V_k(s)
both from the online critics, stop-gradded. Planner loss (gradient through the frozen
decoder's Jacobian into phi only):
  L_phi = mean_s  min(exp(A / temperature), max_weight) * ||pi_beta(s, pi_phi(s)) - a||^2.
"""
from typing import Any, Dict

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from lps_jax import critic as critic_lib
from lps_jax import hl_gauss, meanflow, networks, train_state
from lps_jax.agents import common

sg = jax.lax.stop_gradient


def make_distributional(config, input_dims, key) -> train_state.TargetTrainState:
  """Ensemble of num_critics MLPs over concat(inputs) -> logits [E, B, num_bins]."""
  module = networks.Ensemble(tuple(config.critic_hidden_dims), config.num_bins,
                             config.num_critics, config.activation, config.critic_layer_norm,
                             networks.compute_dtype(config))
  params = module.init(key, *[jnp.zeros((1, d)) for d in input_dims])
  tx = train_state.make_optimizer(config.lr, config.max_grad_norm)
  return train_state.TargetTrainState.create(module.apply, params, tx)


class LAWRAgent(flax.struct.PyTreeNode):
  rng: jax.Array
  step: jax.Array                            # updates done (drives the phase switch)
  flow: train_state.TrainState
  planner: train_state.TrainState
  value: train_state.TargetTrainState        # V(s) logits [E, B, K]
  qvalue: train_state.TargetTrainState       # Q(s, a) logits [E, B, K]
  hparams: Dict[str, jax.Array]              # vmappable: tau, temperature
  config: Any = flax.struct.field(pytree_node=False)

  # ----------------------------------------------------------------- construction
  @classmethod
  def create(cls, seed: int, observation_dim: int, action_dim: int, config):
    """action_dim is the flattened chunk size D = horizon * env action dim."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    return cls(
        rng=keys[4],
        step=jnp.zeros((), jnp.int32),
        flow=common.make_flow(config, observation_dim, action_dim, keys[0]),
        planner=common.make_state_net(config, config.actor_hidden_dims, observation_dim,
                                      action_dim, keys[1]),
        value=make_distributional(config, (observation_dim,), keys[2]),
        qvalue=make_distributional(config, (observation_dim, action_dim), keys[3]),
        hparams={'tau': jnp.float32(config.tau), 'temperature': jnp.float32(config.temperature)},
        config=config)

  @property
  def support(self) -> hl_gauss.Support:
    cfg = self.config
    return hl_gauss.make_support(cfg.v_min, cfg.v_max, cfg.num_bins, cfg.sigma_ratio)

  # ----------------------------------------------------------------- policy
  def latents(self, observations, planner_params=None):
    """pi_phi(s) on the sphere: [B, O] -> [B, D]."""
    return common.sphere_latents(self.planner, observations, planner_params)

  def policy_actions(self, observations, flow_params=None, planner_params=None):
    return common.steered_actions(self.flow, self.planner, observations, flow_params,
                                  planner_params)

  def sample_actions(self, observations, key=None):
    """Deterministic action pi_beta(s, pi_phi(s)) [B, D] (key unused)."""
    del key
    return self.policy_actions(observations)

  def values(self, observations, value_params=None):
    """Expected V_k(s): [E, B]."""
    return hl_gauss.expected_value(self.value(observations, params=value_params), self.support)

  # ----------------------------------------------------------------- losses
  def flow_loss(self, params, batch, key):
    return meanflow.meanflow_loss(common.bind(self.flow, params['flow']), batch['observations'],
                                  batch['actions'], key, **common.meanflow_kwargs(self.config))

  def critic_loss(self, params, batch):
    cfg = self.config
    support = self.support
    discount_h = cfg.discount ** cfg.horizon
    next_v = hl_gauss.expected_value(
        self.value(batch['next_observations'], params=self.value.target_params), support)
    target = critic_lib.td_target(batch['rewards'], batch['masks'], next_v, discount_h, cfg.q_agg)
    v_logits = self.value(batch['observations'], params=params['value'])
    q_logits = self.qvalue(batch['observations'], batch['actions'], params=params['qvalue'])
    v_loss = hl_gauss.loss(v_logits, target[None], support).mean()
    q_loss = hl_gauss.loss(q_logits, target[None], support).mean()
    return v_loss + q_loss, {'critic/v_loss': v_loss, 'critic/q_loss': q_loss,
                             'critic/v_mean': hl_gauss.expected_value(v_logits, support).mean(),
                             'critic/target_mean': target.mean()}

  def advantages(self, params, batch):
    """stop_grad(A) [B] from the online critics (see the module docstring)."""
    cfg = self.config
    support = self.support
    v = self.values(batch['observations'], params['value']).mean(axis=0)
    if cfg.advantage == 'td':
      next_v = self.values(batch['next_observations'], params['value']).mean(axis=0)
      adv = batch['rewards'] + cfg.discount ** cfg.horizon * batch['masks'] * next_v - v
    elif cfg.advantage == 'q':
      q = hl_gauss.expected_value(
          self.qvalue(batch['observations'], batch['actions'], params=params['qvalue']), support)
      adv = q.mean(axis=0) - v
    else:
      raise ValueError(f'advantage must be "td" or "q", got {cfg.advantage!r}')
    return sg(adv)

  def planner_loss(self, params, batch):
    """AWR on the latent: the gradient flows through the frozen decoder into phi only."""
    adv = self.advantages(params, batch)
    weights = sg(jnp.minimum(jnp.exp(adv / self.hparams['temperature']), self.config.max_weight))
    actions = self.policy_actions(batch['observations'], sg(params['flow']), params['planner'])
    sq_err = jnp.sum((actions - batch['actions']) ** 2, axis=-1)
    loss = jnp.mean(weights * sq_err)
    return loss, {'planner/loss': loss, 'planner/mse': sq_err.mean(),
                  'planner/weight_mean': weights.mean(), 'planner/adv_mean': adv.mean()}

  def phase2_loss(self, params, batch):
    critic_loss, info = self.critic_loss(params, batch)
    planner_loss, planner_info = self.planner_loss(params, batch)
    info.update(planner_info)
    info['loss'] = critic_loss + planner_loss
    return info['loss'], info

  def loss(self, params, batch, key):
    """Every L-AWR objective summed (for monitoring / tests): L_flow + L_V + L_Q + L_phi.

    `update` never differentiates this sum: each phase differentiates its own part only.
    """
    flow_loss, info = self.flow_loss(params, batch, key)
    phase2_loss, phase2_info = self.phase2_loss(params, batch)
    info.update(phase2_info)
    info['loss'] = flow_loss + phase2_loss
    return info['loss'], info

  # ----------------------------------------------------------------- update
  def params(self):
    return {'flow': self.flow.params, 'planner': self.planner.params,
            'value': self.value.params, 'qvalue': self.qvalue.params}

  def _phase1(self, key, batch):
    grads, info = jax.grad(lambda p: self.flow_loss(p, batch, key), has_aux=True)(self.params())
    info['loss'] = info['flow/loss']
    return self.replace(flow=self.flow.apply_gradients(grads['flow'])), info

  def _phase2(self, key, batch):
    del key
    grads, info = jax.grad(lambda p: self.phase2_loss(p, batch), has_aux=True)(self.params())
    tau = self.hparams['tau']
    return self.replace(
        planner=self.planner.apply_gradients(grads['planner']),
        value=self.value.apply_gradients(grads['value']).polyak_update(tau),
        qvalue=self.qvalue.apply_gradients(grads['qvalue']).polyak_update(tau),
    ), info

  def update(self, batch):
    """Phase 1 (flow BC) or phase 2 (critic + planner, flow frozen) -> (agent, info).

    Both branches report every metric (the other phase's as 0) plus 'lawr/phase2' in {0, 1};
    info['loss'] is the loss of the phase that ran.
    """
    rng, key = jax.random.split(self.rng)
    in_phase2 = self.step >= self.config.flow_steps
    shapes = [jax.eval_shape(branch, key, batch)[1] for branch in (self._phase1, self._phase2)]
    zeros = {k: jnp.zeros(v.shape, v.dtype) for s in shapes for k, v in s.items()}

    def run(branch, phase):
      agent, info = branch(key, batch)
      return agent, {**zeros, **info, 'lawr/phase2': jnp.float32(phase)}

    agent, info = jax.lax.cond(in_phase2, lambda: run(self._phase2, 1.0),
                               lambda: run(self._phase1, 0.0))
    return agent.replace(rng=rng, step=self.step + 1), info


def get_config() -> ml_collections.ConfigDict:
  """L-AWR hyperparameters (OGBench sizes; the seed paper publishes no code)."""
  config = common.base_config()
  config.agent_name = 'lawr'
  config.actor_hidden_dims = (256, 256)
  config.flow_steps = 500_000         # phase-1 length; then the flow is frozen
  config.num_bins = 101
  config.v_min = -100.0               # OGBench sparse reward r in {-1, 0}: V in [-1/(1-g), 0]
  config.v_max = 0.0
  config.sigma_ratio = 0.75           # HL-Gauss sigma = 0.75 * bin width
  config.advantage = 'td'             # 'td': r + g^h m V(s') - V(s);  'q': Q(s, a) - V(s)
  config.temperature = 1.0            # AWR temperature (vmappable)
  config.max_weight = 100.0           # clip of exp(A / temperature)
  return config


def validate_config(config) -> None:
  """L-AWR-specific ranges; ValueError, which config_lib.validate reports as a ConfigError."""

  def require(ok, message):
    if not ok:
      raise ValueError(message)

  require(isinstance(config.flow_steps, int) and config.flow_steps >= 0,
          f'config.agent.flow_steps must be an integer >= 0, got {config.flow_steps!r}')
  require(config.v_max > config.v_min, f'config.agent.v_max ({config.v_max}) must exceed '
          f'config.agent.v_min ({config.v_min})')
  require(isinstance(config.num_bins, int) and config.num_bins >= 2,
          f'config.agent.num_bins must be an integer >= 2, got {config.num_bins!r}')
  require(config.sigma_ratio > 0, f'config.agent.sigma_ratio must be > 0, got {config.sigma_ratio}')
  require(config.temperature > 0, f'config.agent.temperature must be > 0, got {config.temperature}')
  require(config.max_weight > 0, f'config.agent.max_weight must be > 0, got {config.max_weight}')
  require(config.advantage in ('td', 'q'),
          f'config.agent.advantage must be "td" or "q", got {config.advantage!r}')
