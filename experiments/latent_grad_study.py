"""Does DSRL's latent critic give the right steering gradient? (LPS paper Fig. 3; toy, 2-D latent)

Trains DSRL (noise-aliased) on the contextual one-ring toy task, then, at each of a few
contexts c, walks the latent circle z(theta) = sqrt(2) (cos theta, sin theta) (the whole
spherical prior for D = 2) and compares
  g_W(theta) = grad_z Q^W(s, z)                    what DSRL's latent actor follows
  g_A(theta) = grad_z Qbar^A(s, pi_beta(s, z))     what LPS's latent actor follows
(ensemble means) after projecting both onto the sphere's tangent space at z:
  g -> g - (g . z) z / |z|^2.
Summary numbers (JSON; over all contexts, and per context under 'contexts'):
  mean_cosine     mean over angles of cos(g_W, g_A) (tangent-projected). For D = 2 the tangent
                  space is a line, so each cosine is +-1 (the two derivatives along the circle
                  agree or disagree in sign); angles where either projected norm is ~0 are skipped.
  weighted_cosine sum_theta <g_W, g_A> / sqrt(sum |g_W|^2 sum |g_A|^2): agreement weighted by
                  gradient size (= the correlation of the two tangential derivatives around 0).
  value_corr      Pearson correlation of Q^W(z) and Qbar^A(pi_beta(z)) along the circle.

  python experiments/latent_grad_study.py --workdir=/tmp/latent_grad --num_steps=4000
Writes latent_grad.png (values and tangential derivatives vs angle) and latent_grad.json.
"""
import json
import os

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from lps_jax import cli, tasks, toy_study
from lps_jax.data import toy

FLAGS = flags.FLAGS


def tangent(g: jax.Array, z: jax.Array) -> jax.Array:
  """Project [N, D] vectors g onto the tangent space of the sphere at z [N, D]."""
  return g - jnp.sum(g * z, -1, keepdims=True) * z / jnp.sum(z * z, -1, keepdims=True)


def latent_gradients(agent, latents: jax.Array, context: float = 0.0):
  """Values and tangent-projected gradients of Q^W and Qbar^A o pi_beta at latents [N, D],
  all at the context `context` (the observation)."""
  obs = jnp.full((latents.shape[0], 1), context, jnp.float32)
  q_w = lambda z: agent.latent_q(obs, z)
  q_a = lambda z: agent.action_q_of_latent(obs, z)
  # Every row depends only on its own latent, so the gradient of the sum is per-row.
  g_w = jax.grad(lambda z: q_w(z).sum())(latents)
  g_a = jax.grad(lambda z: q_a(z).sum())(latents)
  return {'q_w': q_w(latents), 'q_a': q_a(latents), 'g_w': tangent(g_w, latents),
          'g_a': tangent(g_a, latents), 'actions': agent.decode(obs, latents)}


def summarize(out, eps: float = 1e-6):
  g_w, g_a = np.asarray(out['g_w'], np.float64), np.asarray(out['g_a'], np.float64)
  n_w, n_a = np.linalg.norm(g_w, axis=-1), np.linalg.norm(g_a, axis=-1)
  valid = (n_w > eps) & (n_a > eps)
  cos = np.sum(g_w * g_a, -1)[valid] / (n_w * n_a)[valid]
  weighted = np.sum(g_w * g_a) / np.sqrt(np.sum(g_w ** 2) * np.sum(g_a ** 2) + 1e-30)
  q_w, q_a = np.asarray(out['q_w']), np.asarray(out['q_a'])
  return {'mean_cosine': float(cos.mean()) if cos.size else float('nan'),
          'weighted_cosine': float(weighted),
          'value_corr': float(np.corrcoef(q_w, q_a)[0, 1]),
          'num_angles': int(len(q_w)), 'num_valid': int(valid.sum()),
          'q_w_argmax_deg': None, 'q_a_argmax_deg': None}


def run(workdir: str, num_steps: int = 4000, num_angles: int = 720, seed: int = 0,
        contexts=tuple(tasks.PLOT_CONTEXTS), log=print):
  """Train DSRL at the default toy config, then compare the two latent gradients per context."""
  os.makedirs(workdir, exist_ok=True)
  config = toy_study.run_config('dsrl')
  task = tasks.make_toy_task()
  runs = toy_study.train_members(config, [{'seed': seed}], task, num_steps)
  agent = jax.tree.map(lambda x: x[0], runs.agents)
  theta = np.linspace(-np.pi, np.pi, num_angles, endpoint=False)
  latents = jnp.asarray(np.sqrt(2.0) * np.stack([np.cos(theta), np.sin(theta)], -1), jnp.float32)
  gradients = jax.jit(latent_gradients)
  outs, per_context = [], []
  degrees = np.degrees(theta)
  for context in contexts:
    out = jax.tree.map(np.asarray, gradients(agent, latents, context))
    entry = summarize(out)
    entry['context'] = float(context)
    entry['q_w_argmax_deg'] = float(degrees[int(np.argmax(out['q_w']))])
    entry['q_a_argmax_deg'] = float(degrees[int(np.argmax(out['q_a']))])
    chosen = np.asarray(agent.latents(jnp.full((1, 1), context, jnp.float32)))[0]
    entry['actor_latent_deg'] = float(np.degrees(np.arctan2(chosen[1], chosen[0])))
    outs.append(out)
    per_context.append(entry)
  pooled = summarize({k: np.concatenate([o[k] for o in outs]) for k in outs[0]})
  summary = {k: pooled[k] for k in ('mean_cosine', 'weighted_cosine', 'value_corr')}
  summary.update(toy_study.evaluate_members(runs, task)[0])
  summary.update({'num_steps': num_steps, 'seed': seed, 'contexts': per_context,
                  'flow_hidden_dims': list(config.agent.flow_hidden_dims),
                  'batch_size': config.agent.batch_size,
                  'latent_critic_loss': float(runs.train_metrics['latent_critic/loss'][0])})
  with open(os.path.join(workdir, 'latent_grad.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  plot(os.path.join(workdir, 'latent_grad.png'), degrees, outs, per_context)
  log(json.dumps({k: summary[k] for k in ('mean_cosine', 'weighted_cosine', 'value_corr',
                                           'reward')}))
  return summary


def plot(path, degrees, outs, per_context):
  """One column per context: values, tangential derivatives, and the decoded action's reward."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  # Signed tangential derivative dQ/dtheta = <g, dz/dtheta>, dz/dtheta = sqrt(2)(-sin, cos).
  rad = np.radians(degrees)
  dz = np.sqrt(2.0) * np.stack([-np.sin(rad), np.cos(rad)], -1)
  fig, axes = plt.subplots(3, len(outs), figsize=(3.2 * len(outs), 7), sharex=True,
                           squeeze=False)
  for col, (out, entry) in enumerate(zip(outs, per_context)):
    context = entry['context']
    reward, _, _ = toy.ring_reward(np.full(len(degrees), context), out['actions'])
    ax = axes[0][col]
    ax.plot(degrees, out['q_w'], label='Q^W(s, z) (latent critic)')
    ax.plot(degrees, out['q_a'], label='Q^A(s, pi_beta(s, z))')
    ax.axvline(entry['actor_latent_deg'], color='k', ls=':', label='latent actor l(s)')
    ax.set_title(f'c = {context:+.2f}', fontsize=9)
    ax = axes[1][col]
    ax.plot(degrees, np.sum(out['g_w'] * dz, -1), label='dQ^W/dtheta')
    ax.plot(degrees, np.sum(out['g_a'] * dz, -1), label='dQ^A(pi_beta)/dtheta')
    ax.axhline(0, color='0.6', lw=0.8)
    ax.set_title(f"cos {entry['mean_cosine']:.2f}, weighted {entry['weighted_cosine']:.2f}",
                 fontsize=8)
    axes[2][col].plot(degrees, reward, color='tab:green')
    axes[2][col].set_xlabel('latent angle (deg)')
  axes[0][0].set_ylabel('value')
  axes[1][0].set_ylabel('tangential derivative')
  axes[2][0].set_ylabel('reward of pi_beta(s, z)')
  axes[0][0].legend(fontsize=6)
  axes[1][0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv   # cli.run refuses positional arguments
  steps_per_call = toy_study.run_config('dsrl').steps_per_call
  error = cli.first_error(   # before any work or output; the first failing check is reported
      cli.workdir_error(FLAGS.workdir),
      (f'--num_steps={FLAGS.num_steps} must be a positive multiple of {steps_per_call}'
       if FLAGS.num_steps < 1 or FLAGS.num_steps % steps_per_call else None),
      f'--num_angles must be >= 1, got {FLAGS.num_angles}' if FLAGS.num_angles < 1 else None,
      cli.seed_error(FLAGS.seed))
  if error:
    cli.fail(error)
  run(FLAGS.workdir, FLAGS.num_steps, FLAGS.num_angles, FLAGS.seed)


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Output folder.')
  flags.DEFINE_integer('num_steps', 4000, 'DSRL training steps (a multiple of 500).')
  flags.DEFINE_integer('num_angles', 720, 'Latent angles on the circle.')
  flags.DEFINE_integer('seed', 0, 'Seed.')
  cli.run(main)
