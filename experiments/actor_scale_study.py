"""Does LPS's actor_scale (the reference code's alpha) change anything under Adam?

actor_scale multiplies the latent actor's normalised Q loss, the only loss that reaches the
latent actor, and every network has its own Adam. Adam's step m / (sqrt(v) + eps) is invariant
to a constant gradient scale c except through eps (c g -> c m, c^2 v). This trains the toy LPS
at several actor_scales from the SAME seed, in one vmapped program (toy_study), and compares
each member with the actor_scale = 1 member: the largest parameter difference per network, the
toy reward and the actions.

  python experiments/actor_scale_study.py --scales=0.1,1,10 --workdir=experiments/results/actor_scale_toy

Writes <workdir>/actor_scale.json.
"""
import json
import os
import sys
import time

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

FLAGS = flags.FLAGS
flags.DEFINE_list('scales', ['0.1', '1', '10'], 'actor_scale values (1 is the reference).')
flags.DEFINE_integer('seed', 0, 'The one seed every member starts from.')
flags.DEFINE_string('workdir', None, 'Output folder.')


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lps_jax import tasks, toy_study, vmap_sweep  # pylint: disable=g-import-not-at-top
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  error = cli.workdir_error(FLAGS.workdir)   # before any work or output
  if error:
    cli.fail(error)
  try:
    scales = [float(s) for s in FLAGS.scales]
  except ValueError:
    cli.fail(f'--scales: not a list of numbers: {FLAGS.scales}')
  if 1.0 not in scales:
    scales = [1.0] + scales
  task = tasks.make_toy_task()
  config = toy_study.run_config('lps')
  start = time.perf_counter()
  members = [{'seed': FLAGS.seed, 'agent.actor_scale': s} for s in scales]
  runs = toy_study.train_members(config, members, task)
  metrics = toy_study.evaluate_members(runs, task)
  contexts = np.linspace(-1, 1, 256, dtype=np.float32)[:, None]
  actions = toy_study.member_actions(runs, contexts)
  ref = scales.index(1.0)
  reference = vmap_sweep.unstack(runs.agents, ref)
  rows = []
  for i, scale in enumerate(scales):
    member = vmap_sweep.unstack(runs.agents, i)
    diff = {name: float(max(np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in zip(
        jax.tree.leaves(getattr(member, name).params),
        jax.tree.leaves(getattr(reference, name).params))))
            for name in ('flow', 'latent_actor', 'critic')}
    scale_of = {name: float(max(np.max(np.abs(np.asarray(a))) for a in jax.tree.leaves(
        getattr(reference, name).params))) for name in diff}
    rows.append({'actor_scale': scale, **{k: float(v) for k, v in metrics[i].items()},
                 'max_abs_param_diff_vs_scale_1': diff, 'max_abs_param_at_scale_1': scale_of,
                 'max_abs_action_diff_vs_scale_1': float(np.max(np.abs(actions[i] -
                                                                        actions[ref])))})
  result = {'config': 'experiments/configs/lps.py:toy', 'seed': FLAGS.seed,
            'num_steps': config.num_steps, 'seconds': time.perf_counter() - start,
            'members': rows}
  os.makedirs(FLAGS.workdir, exist_ok=True)
  with open(os.path.join(FLAGS.workdir, 'actor_scale.json'), 'w') as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))


if __name__ == '__main__':
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)
