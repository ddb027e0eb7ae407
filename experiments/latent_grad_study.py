"""Does DSRL's latent critic give the right steering gradient? (toy task, 2-D latent)

Trains DSRL (noise-aliased) on the two-rings toy task, then walks the latent circle
z(theta) = sqrt(2) (cos theta, sin theta) (the whole spherical prior for D = 2) and compares
  g_W(theta) = grad_z Q^W(s, z)                    what DSRL's latent actor follows
  g_A(theta) = grad_z Qbar^A(s, pi_beta(s, z))     what LPS's latent actor follows
(ensemble means) after projecting both onto the sphere's tangent space at z:
  g -> g - (g . z) z / |z|^2.
Summary numbers (JSON):
  mean_cosine     mean over angles of cos(g_W, g_A) (tangent-projected). For D = 2 the tangent
                  space is a line, so each cosine is +-1 (the two derivatives along the circle
                  agree or disagree in sign); angles where either projected norm is ~0 are skipped.
  weighted_cosine sum_theta <g_W, g_A> / sqrt(sum |g_W|^2 sum |g_A|^2): agreement weighted by
                  gradient size (= the correlation of the two tangential derivatives around 0).
  value_corr      Pearson correlation of Q^W(z) and Qbar^A(pi_beta(z)) along the circle.

  python experiments/latent_grad_study.py --workdir=/tmp/latent_grad --num_steps=3000
Writes latent_grad.png (values and tangential derivatives vs angle) and latent_grad.json.
"""
import json
import os
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alpha_sensitivity as study  # pylint: disable=g-import-not-at-top,wrong-import-position

from lps_jax import tasks  # pylint: disable=g-import-not-at-top,wrong-import-position
from lps_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lps_jax.data import toy  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


def tangent(g: jax.Array, z: jax.Array) -> jax.Array:
  """Project [N, D] vectors g onto the tangent space of the sphere at z [N, D]."""
  return g - jnp.sum(g * z, -1, keepdims=True) * z / jnp.sum(z * z, -1, keepdims=True)


def latent_gradients(agent, latents: jax.Array):
  """Values and tangent-projected gradients of Q^W and Qbar^A o pi_beta at latents [N, D]."""
  obs = jnp.ones((latents.shape[0], 1), jnp.float32)
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


def run(workdir: str, num_steps: int = 3000, num_angles: int = 720, seed: int = 0,
        hidden_dims=(64, 64, 64), batch_size: int = 256, steps_per_call: int = 500, log=print):
  os.makedirs(workdir, exist_ok=True)
  config = study.agent_run_config('dsrl', hidden_dims=hidden_dims, batch_size=batch_size)
  task = tasks.make_toy_task()
  data = dataset_lib.to_device(task.transitions, 1)
  runner = study.AgentRunner('dsrl', config, task, data, steps_per_call)
  agent, train_info = runner.train(runner.fresh(seed), num_steps)

  theta = np.linspace(-np.pi, np.pi, num_angles, endpoint=False)
  latents = jnp.asarray(np.sqrt(2.0) * np.stack([np.cos(theta), np.sin(theta)], -1), jnp.float32)
  out = jax.jit(latent_gradients)(agent, latents)
  summary = summarize(out)
  degrees = np.degrees(theta)
  summary['q_w_argmax_deg'] = float(degrees[int(np.argmax(out['q_w']))])
  summary['q_a_argmax_deg'] = float(degrees[int(np.argmax(out['q_a']))])
  chosen = np.asarray(agent.latents(jnp.ones((1, 1))))[0]
  summary['actor_latent_deg'] = float(np.degrees(np.arctan2(chosen[1], chosen[0])))
  summary.update(toy.evaluate_actions(np.asarray(runner.sample_fn(
      agent, jnp.ones((64, 1)), jax.random.PRNGKey(0))), task.transitions['rewards']))
  summary.update({'num_steps': num_steps, 'seed': seed, 'hidden_dims': list(hidden_dims),
                  'batch_size': batch_size,
                  'latent_critic_loss': train_info.get('latent_critic/loss')})
  with open(os.path.join(workdir, 'latent_grad.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  plot(os.path.join(workdir, 'latent_grad.png'), degrees, out, summary)
  log(json.dumps({k: summary[k] for k in ('mean_cosine', 'weighted_cosine', 'value_corr',
                                           'reward')}))
  return summary


def plot(path, degrees, out, summary):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  # Signed tangential derivative dQ/dtheta = <g, dz/dtheta>, dz/dtheta = sqrt(2)(-sin, cos).
  rad = np.radians(degrees)
  dz = np.sqrt(2.0) * np.stack([-np.sin(rad), np.cos(rad)], -1)
  d_w = np.sum(np.asarray(out['g_w']) * dz, -1)
  d_a = np.sum(np.asarray(out['g_a']) * dz, -1)
  reward, _ = toy.rings_reward(np.asarray(out['actions']))
  fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
  axes[0].plot(degrees, out['q_w'], label='Q^W(s, z)  (latent critic)')
  axes[0].plot(degrees, out['q_a'], label='Q^A(s, pi_beta(s, z))')
  axes[0].axvline(summary['actor_latent_deg'], color='k', ls=':', label='latent actor l(s)')
  axes[0].set_ylabel('value')
  axes[0].legend(fontsize=7)
  axes[1].plot(degrees, d_w, label='dQ^W/dtheta')
  axes[1].plot(degrees, d_a, label='dQ^A(pi_beta)/dtheta')
  axes[1].axhline(0, color='0.6', lw=0.8)
  axes[1].set_ylabel('tangential derivative')
  axes[1].set_title(f"mean cosine {summary['mean_cosine']:.3f}, weighted "
                    f"{summary['weighted_cosine']:.3f}", fontsize=9)
  axes[1].legend(fontsize=7)
  axes[2].plot(degrees, reward, color='tab:green')
  axes[2].set_ylabel('reward of pi_beta(s, z)')
  axes[2].set_xlabel('latent angle theta (degrees)')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  run(FLAGS.workdir, FLAGS.num_steps, FLAGS.num_angles, FLAGS.seed,
      tuple(int(h) for h in FLAGS.hidden_dims), FLAGS.batch_size, FLAGS.steps_per_call)


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Output folder.')
  flags.DEFINE_integer('num_steps', 3000, 'DSRL training steps.')
  flags.DEFINE_integer('steps_per_call', 500, 'Fused updates per jit call.')
  flags.DEFINE_integer('num_angles', 720, 'Latent angles on the circle.')
  flags.DEFINE_integer('seed', 0, 'Seed.')
  flags.DEFINE_list('hidden_dims', ['64', '64', '64'], 'Hidden sizes of every network.')
  flags.DEFINE_integer('batch_size', 256, 'Batch size.')
  app.run(main)
