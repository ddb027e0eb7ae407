"""Pieces every agent file shares: the base config, network/train-state builders, binding."""
import jax
import jax.numpy as jnp
import ml_collections

from lps_jax import meanflow, networks, train_state


def base_config() -> ml_collections.ConfigDict:
  """Hyperparameters common to all agents (LPS paper / FQL OGBench values)."""
  config = ml_collections.ConfigDict()
  config.agent_name = ''
  config.lr = 3e-4
  config.max_grad_norm = 0.0          # 0 disables global-norm clipping
  config.batch_size = 256
  config.horizon = 5                  # action-chunk length h (1 = no chunking)
  config.discount = 0.99
  config.tau = 0.005                  # Polyak rate of the critic target
  config.activation = 'gelu'
  config.flow_hidden_dims = (512, 512, 512, 512)
  config.flow_layer_norm = False
  config.actor_hidden_dims = (512, 512, 512, 512)
  config.critic_hidden_dims = (512, 512, 512, 512)
  config.critic_layer_norm = True
  config.num_critics = 2
  config.q_agg = 'min'                # 'min' or 'mean' over the ensemble in the TD target
  # MeanFlow time sampling and adaptive loss weighting.
  config.time_mean = -0.4
  config.time_std = 1.0
  config.equal_time_fraction = 0.75   # fraction of the batch with r = t
  config.adaptive_power = 0.5
  # Base noise of the MeanFlow decoder: 'sphere' (LPS) or 'gaussian' (a prior ablation, as in
  # the LPS paper; the latent actor still outputs on the sphere of radius sqrt(D)).
  config.latent_prior = 'sphere'
  # Matmul precision: 'float32', or 'bfloat16' (accelerators: bf16 matmuls, float32 params,
  # optimiser state and loss reductions; see lps_jax/networks.py).
  config.compute_dtype = 'float32'
  return config


def meanflow_kwargs(config) -> dict:
  return dict(time_mean=config.time_mean, time_std=config.time_std,
              equal_fraction=config.equal_time_fraction, adaptive_power=config.adaptive_power,
              prior=config.latent_prior)


def bind(state: train_state.TrainState, params=None):
  """A state's network as a plain function of its inputs, with `params` (default: own)."""
  params = state.params if params is None else params
  return lambda *inputs: state.apply_fn(params, *inputs)


def sphere_latents(actor: train_state.TrainState, observations, params=None):
  """A latent actor's output projected on the sphere of radius sqrt(D): [B, O] -> [B, D]."""
  return meanflow.project_to_sphere(actor(observations, params=params))


def steered_actions(flow: train_state.TrainState, actor: train_state.TrainState, observations,
                    flow_params=None, actor_params=None):
  """pi_beta(s, l(s)): the one-step decoder at the actor's latent, [B, O] -> [B, D]."""
  return meanflow.one_step_action(bind(flow, flow_params), observations,
                                  sphere_latents(actor, observations, actor_params))


def make_flow(config, observation_dim: int, action_dim: int, key) -> train_state.TrainState:
  """Flow / MeanFlow network f(s, z, t, h) -> [B, D] with its optimiser."""
  module = networks.FlowNet(tuple(config.flow_hidden_dims), action_dim, config.activation,
                            config.flow_layer_norm, networks.compute_dtype(config))
  zeros = lambda d: jnp.zeros((1, d))
  params = module.init(key, zeros(observation_dim), zeros(action_dim), zeros(1), zeros(1))
  return train_state.TrainState.create(
      module.apply, params, train_state.make_optimizer(config.lr, config.max_grad_norm))


def make_state_net(config, hidden_dims, observation_dim: int, output_dim: int, key,
                   final_init_scale: float = 1.0) -> train_state.TrainState:
  """A deterministic state -> [B, output_dim] MLP (actors, latent actors, V) with its optimiser."""
  module = networks.StateMLP(tuple(hidden_dims), output_dim, config.activation,
                             final_init_scale=final_init_scale,
                             dtype=networks.compute_dtype(config))
  params = module.init(key, jnp.zeros((1, observation_dim)))
  return train_state.TrainState.create(
      module.apply, params, train_state.make_optimizer(config.lr, config.max_grad_norm))


def select_tree(pred, on_true, on_false):
  """Leafwise jnp.where(pred, on_true, on_false) over two pytrees of one structure.

  Used for exact freezing / delayed updates inside a fused update: the unselected branch's
  params *and* optimiser state are kept bit-identical (zero gradients are not enough: Adam's
  momentum would still move the params).
  """
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def gradient_step(agent, batch, polyak=('critic',)):
  """The fused update every agent shares -> (agent, info).

  One jax.grad of agent.loss over agent.params() (a dict: state name -> params); each named
  train state applies its own gradient; the states in `polyak` then move their targets by
  hparams['tau']. The loss's stop-gradients decide which loss reaches which network.
  """
  rng, key = jax.random.split(agent.rng)
  grads, info = jax.grad(agent.loss, has_aux=True)(agent.params(), batch, key)
  states = {}
  for name, grad in grads.items():
    state = getattr(agent, name).apply_gradients(grad)
    states[name] = state.polyak_update(agent.hparams['tau']) if name in polyak else state
  return agent.replace(rng=rng, **states), info
