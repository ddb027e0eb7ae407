"""Can a one-step MeanFlow decoder cover both toy rings? (latent prior x time sampling)

Trains the MeanFlow base policy alone (behaviour cloning, no critic, no actor) on the two-rings
toy data and decodes fixed latents with 1 and 16 mean-flow jumps. For every
(prior, time setting, seed) it reports the fraction of decoded actions
  off_support   on neither ring (|radius - ring radius| >= 0.1)
  outer, inner  on the outer / inner ring (the data has half on each)

Why the prior matters in 2-D: the spherical latent of radius sqrt(2) is a circle. The data
and the prior are rotation invariant, so the exact flow map is rotation equivariant and sends
the whole circle to a single radius; that radius is the separatrix between the rings (half
the mass goes in, half out), i.e. off support. A network can only cover both rings by
breaking the symmetry, against its training signal. Gaussian noise keeps a radial degree
of freedom. In D >> 2 (OGBench chunks) the sphere holds almost all of a Gaussian's mass and
loses one of D directions.

Why the time setting matters: (t, r) are the max and min of two logit-normal draws, so with
the paper's (mean -0.4, std 1) the instantaneous velocity near t = 0, where samples snap onto
the thin rings, is almost never trained (P(t < 0.05) ~ 3e-5).

  python experiments/toy_decoder_study.py --workdir=/tmp/decoder_study
Writes results.csv, summary.json and samples.png (one-step decoded actions per setting).
"""
import csv
import json
import os
from typing import Dict, List, Optional

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from lps_jax import cli, meanflow
from lps_jax.agents import common
from lps_jax.data import toy

FLAGS = flags.FLAGS
TIME_SETTINGS = {'paper': (-0.4, 1.0), 'wide': (-1.0, 1.6)}   # (time_mean, time_std)


def flow_config(prior: str, time_setting: str, lr: float, hidden_dims):
  config = common.base_config()
  config.flow_hidden_dims = tuple(hidden_dims)
  config.lr = lr
  config.time_mean, config.time_std = TIME_SETTINGS[time_setting]
  config.prior = prior
  return config


def train_decoder(config, actions: jax.Array, seed: int, num_steps: int, batch_size: int,
                  steps_per_call: int = 500):
  """BC-only MeanFlow on actions [N, 2] -> trained flow TrainState (dummy observation 1)."""
  flow = common.make_flow(config, 1, actions.shape[-1], jax.random.PRNGKey(seed))
  observations = jnp.ones((batch_size, 1))

  def step(carry, _):
    flow, key = carry
    key, key_index, key_loss = jax.random.split(key, 3)
    batch = actions[jax.random.randint(key_index, (batch_size,), 0, actions.shape[0])]
    loss_fn = lambda params: meanflow.meanflow_loss(
        common.bind(flow, params), observations, batch, key_loss, prior=config.prior,
        **common.meanflow_kwargs(config))[0]
    return (flow.apply_gradients(jax.grad(loss_fn)(flow.params)), key), None

  run = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps_per_call)[0])
  carry = (flow, jax.random.PRNGKey(seed + 1))
  for _ in range(num_steps // steps_per_call):
    carry = run(carry)
  return carry[0]


def ring_fractions(actions: np.ndarray) -> Dict[str, float]:
  reward, off = toy.rings_reward(actions)
  return {'off_support': float(off.mean()), 'outer': float((reward >= 0.6).mean()),
          'inner': float((reward == 0.3).mean())}


def evaluate_decoder(flow, prior: str, num_samples: int = 2000):
  """Decoded actions [N, 2] for 1 and 16 jumps, and their ring fractions."""
  latents = meanflow.sample_latents(jax.random.PRNGKey(12345), (num_samples, 2), prior)
  observations = jnp.ones((num_samples, 1))
  out, samples = {}, None
  for jumps in (1, 16):
    actions = np.asarray(meanflow.multi_step_action(common.bind(flow), observations, latents, jumps))
    out.update({f'{key}_{jumps}step': value for key, value in ring_fractions(actions).items()})
    samples = actions if jumps == 1 else samples
  return out, samples


def summarize(rows: List[Dict]) -> Dict:
  summary = {}
  for row in rows:
    summary.setdefault(f"{row['prior']}/{row['time']}", []).append(row)
  return {name: {key: float(np.mean([r[key] for r in group])) for key in group[0]
                 if key.endswith('step')} for name, group in summary.items()}


def plot_samples(path: str, data_actions: np.ndarray, scatters: Dict[str, np.ndarray]):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(scatters), figsize=(3.2 * len(scatters), 3.4), squeeze=False)
  for ax, (name, actions) in zip(axes[0], scatters.items()):
    toy.plot_actions('', data_actions, actions[:500], title=f'one-step decoder: {name}', ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _unknown_error(flag: str, values, known) -> Optional[str]:
  unknown = [v for v in values if v not in known]
  return f'--{flag}: unknown {unknown}; choose from {sorted(known)}' if unknown else None


def main(argv):
  del argv
  error = cli.first_error(   # before any work or output; the first failing check is reported
      cli.workdir_error(FLAGS.workdir),
      _unknown_error('priors', FLAGS.priors, meanflow.LATENT_PRIORS),
      _unknown_error('time_settings', FLAGS.time_settings, TIME_SETTINGS))
  if error:
    cli.fail(error)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  data_actions = toy.make_rings_transitions(10_000, 0, FLAGS.outer_fraction)['actions']
  actions = jnp.asarray(data_actions)
  rows, scatters = [], {}
  for prior in FLAGS.priors:
    for time_setting in FLAGS.time_settings:
      config = flow_config(prior, time_setting, FLAGS.lr, [int(h) for h in FLAGS.hidden_dims])
      for seed in [int(s) for s in FLAGS.seeds]:
        flow = train_decoder(config, actions, seed, FLAGS.num_steps, FLAGS.batch_size)
        metrics, samples = evaluate_decoder(flow, prior)
        rows.append({'prior': prior, 'time': time_setting, 'seed': seed, **metrics})
        scatters.setdefault(f'{prior}/{time_setting}', samples)
        print(json.dumps(rows[-1]), flush=True)
  with open(os.path.join(FLAGS.workdir, 'results.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  summary = {'outer_fraction': FLAGS.outer_fraction, 'num_steps': FLAGS.num_steps, 'lr': FLAGS.lr, 'batch_size': FLAGS.batch_size,
             'hidden_dims': FLAGS.hidden_dims, 'time_settings': TIME_SETTINGS,
             'mean_over_seeds': summarize(rows)}
  with open(os.path.join(FLAGS.workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  plot_samples(os.path.join(FLAGS.workdir, 'samples.png'), data_actions, scatters)
  print(json.dumps(summary['mean_over_seeds'], indent=2))


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Output folder.')
  flags.DEFINE_list('priors', list(meanflow.LATENT_PRIORS), 'Latent priors to compare.')
  flags.DEFINE_list('time_settings', list(TIME_SETTINGS), f'From {list(TIME_SETTINGS)}.')
  flags.DEFINE_list('seeds', ['0', '1'], 'Seeds.')
  flags.DEFINE_integer('num_steps', 16_000, 'BC steps per decoder.')
  flags.DEFINE_integer('batch_size', 1024, 'Batch size.')
  flags.DEFINE_float('lr', 1e-3, 'Adam learning rate.')
  flags.DEFINE_float('outer_fraction', 0.5, 'Fraction of the data on the outer ring.')
  flags.DEFINE_list('hidden_dims', ['128', '128', '128'], 'Flow MLP hidden sizes.')
  flags.mark_flag_as_required('workdir')
  cli.run(main)
