"""Alpha-sensitivity study (LPS paper, Fig. 2): behaviour-regularised agents vs alpha-free LPS.

Sweeps the regularisation weight alpha over a log grid for FQL (distillation weight, hparams
'alpha') and ReBRAC (actor BC weight alpha1, hparams 'alpha_actor'; alpha2 stays at its config
value -- on the toy bandit masks = 0, so the critic penalty never acts), and runs LPS and DSRL
once per seed (no alpha). Every run trains with the core engine (engine.make_train_fn: one
jit(lax.scan) of `steps_per_call` fused updates), then evaluates the final policy.

Toy task (default):
  python experiments/alpha_sensitivity.py --workdir=/tmp/alpha --alphas=0.1,1,10,100,1000 \
      --num_steps=3000 --seeds=0,1
OGBench (datasets must exist under dataset_dir):
  python experiments/alpha_sensitivity.py --workdir=/tmp/alpha_og \
      --config=experiments/configs/fql.py:ogbench_small --config.dataset_dir=~/.ogbench/data
The run-level settings of --config (task, dataset, batch size, horizon, network sizes, lr,
discount, eval episodes) are applied to every agent; each agent keeps its own other
hyperparameters.

Writes to --workdir:
  results.csv       agent, alpha, seed, <eval metrics: reward/success, out_of_support, ...>
  reward_vs_alpha.png   metric vs alpha (log x), LPS/DSRL as flat reference lines
  actions_grid.png  (toy) action scatters per agent x alpha, like the LPS paper's Fig. 2
  summary.json      per (agent, alpha) means over seeds
"""
import csv
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

from absl import flags
import numpy as np
from ml_collections import config_flags

from lps_jax import cli, config_lib, tasks, toy_study
from lps_jax.agents import dsrl, fql, lps, rebrac
from lps_jax.data import dataset as dataset_lib
from lps_jax.data import toy

AGENT_MODULES = {'fql': fql, 'rebrac': rebrac, 'lps': lps, 'dsrl': dsrl}
# The hparams entry each alpha-swept agent's alpha is written to (others have no alpha).
ALPHA_HPARAM = {'fql': 'alpha', 'rebrac': 'alpha_actor'}
# Run-level agent keys copied from --config onto every agent of the study.
SHARED_AGENT_KEYS = ('batch_size', 'horizon', 'discount', 'lr', 'flow_hidden_dims',
                     'critic_hidden_dims', 'actor_hidden_dims')
SHARED_RUN_KEYS = ('task', 'dataset_dir', 'download', 'sparse_reward', 'eval_episodes')
DEFAULT_ALPHAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
FLAGS = flags.FLAGS

# --------------------------------------------------------------------------- configs
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OGBENCH_CONFIG = os.path.join(REPO, 'experiments', 'configs', 'fql.py') + ':ogbench_small'


def agent_run_config(name: str, base=None, variant: str = 'toy', hidden_dims: Sequence[int] = (),
                     batch_size: Optional[int] = None):
  """Run config for agent `name`: its own defaults, the run-level settings of `base` on top."""
  config = config_lib.make_run_config(AGENT_MODULES[name].get_config(), variant)
  if base is not None:
    for key in SHARED_RUN_KEYS:
      if key in base:
        config[key] = base[key]
    for key in SHARED_AGENT_KEYS:
      if key in base.agent:
        config.agent[key] = base.agent[key]
  if hidden_dims:
    for key in ('flow_hidden_dims', 'critic_hidden_dims', 'actor_hidden_dims'):
      config.agent[key] = tuple(hidden_dims)
  if batch_size:
    config.agent.batch_size = batch_size
  return config


# --------------------------------------------------------------------------- training
def members_of(name: str, alphas: Sequence[float], seeds: Sequence[int]) -> List[dict]:
  """One vmapped program per agent: alpha x seed members (alpha-free agents: seeds only)."""
  if name not in ALPHA_HPARAM:
    return [{'seed': int(s)} for s in seeds]
  return [{'seed': int(s), f'agent.{ALPHA_HPARAM[name]}': float(a)} for a in alphas
          for s in seeds]


def run_study(base_config, workdir: str, alphas: Sequence[float], seeds: Sequence[int],
              agent_names: Sequence[str], num_steps: int, steps_per_call: int = 500,
              hidden_dims: Sequence[int] = (), eval_episodes: Optional[int] = None,
              variant: str = 'toy', batch_size: Optional[int] = None, log=print,
              toy_reward: Optional[Dict[str, float]] = None) -> List[Dict]:
  """Train every (agent, alpha, seed) -- one vmapped program per agent -- and write CSV / JSON /
  plots; return the result rows. toy_reward: a toy variant's reward settings (toy.ring_reward
  keywords: peak_width, support_band, radial_bonus)."""
  if num_steps < 1 or steps_per_call < 1 or num_steps % steps_per_call:
    raise ValueError(f'--num_steps={num_steps} must be a positive multiple of '
                     f'--steps_per_call={steps_per_call}')
  configs = {n: agent_run_config(n, base_config, variant, hidden_dims, batch_size)
             for n in agent_names}
  first = configs[agent_names[0]]
  if eval_episodes:
    for c in configs.values():
      c.eval_episodes = eval_episodes
  for c in configs.values():
    c.num_steps, c.steps_per_call = num_steps, steps_per_call
    c.log_interval = c.eval_interval = num_steps
    config_lib.validate(c)
  if first.task == tasks.TOY_TASK and toy_reward:
    task = tasks.make_toy_task(**toy_reward)
  else:
    task = tasks.make_task(first)
  is_toy = task.name == tasks.TOY_TASK
  rows, scatters = [], {}
  os.makedirs(workdir, exist_ok=True)     # after every check above: bad input writes nothing
  with open(os.path.join(workdir, 'study_config.json'), 'w') as f:
    json.dump({'alphas': list(alphas), 'seeds': list(seeds), 'agents': list(agent_names),
               'toy_reward': toy_reward or {},
               'num_steps': num_steps, 'configs': {n: c.to_dict() for n, c in configs.items()}},
              f, indent=2, default=str)
  plot_contexts = np.repeat(np.asarray(tasks.PLOT_CONTEXTS, np.float32), 32)[:, None]
  for name in agent_names:
    config = configs[name]
    runs = toy_study.train_members(config, members_of(name, alphas, seeds), task, num_steps)
    metrics = toy_study.evaluate_members(runs, task, config.eval_episodes)
    if is_toy:
      actions = toy_study.member_actions(runs, plot_contexts)[..., :toy.ACTION_DIM]
    for index, (member, member_metrics) in enumerate(zip(runs.members, metrics)):
      alpha = member.get(f'agent.{ALPHA_HPARAM.get(name)}', '')
      row = {'agent': name, 'alpha': alpha, 'seed': member['seed'],
             **{k: float(v) for k, v in member_metrics.items()},
             'critic_loss': float(runs.train_metrics.get('critic/loss',
                                                         np.full(len(metrics), np.nan))[index]),
             'seconds': runs.seconds / len(metrics)}
      rows.append(row)
      log(f'{name:7s} alpha={row["alpha"]!s:7s} seed={member["seed"]} ' + ' '.join(
          f'{k}={v:.3f}' for k, v in member_metrics.items()))
      if is_toy and member['seed'] == seeds[0]:
        scatters[(name, alpha if alpha != '' else None)] = actions[index]
    log(f'{name}: {len(metrics)} members in one program, {runs.seconds:.1f}s')
  write_csv(os.path.join(workdir, 'results.csv'), rows)
  summary = summarize(rows)
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  plot_metric_vs_alpha(os.path.join(workdir, 'reward_vs_alpha.png'), summary,
                       dataset_reward=float(task.transitions['rewards'].mean()) if is_toy else None)
  if is_toy:
    plot_action_grid(os.path.join(workdir, 'actions_grid.png'), task.transitions['actions'],
                     scatters, alphas, rows)
  return rows


# --------------------------------------------------------------------------- outputs
def write_csv(path: str, rows: List[Dict]) -> None:
  columns = []
  for row in rows:
    columns += [k for k in row if k not in columns]
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)


def main_metric(keys) -> str:
  for name in ('reward', 'success', 'return'):
    if name in keys:
      return name
  raise ValueError(f'no reward/success metric among {sorted(keys)}')


def summarize(rows: List[Dict]) -> Dict:
  """{'metric': name, 'entries': [{agent, alpha, n, <metric>_mean/_std, ...}]}."""
  metric = main_metric(rows[0])
  extra = [k for k in ('out_of_support', 'near_peak', 'on_arc', 'dataset_reward') if k in rows[0]]
  groups = {}
  for row in rows:
    groups.setdefault((row['agent'], row['alpha']), []).append(row)
  entries = []
  for (agent, alpha), group in groups.items():
    entry = {'agent': agent, 'alpha': alpha, 'n': len(group)}
    for key in (metric, *extra):
      values = np.array([r[key] for r in group])
      entry[f'{key}_mean'], entry[f'{key}_std'] = float(values.mean()), float(values.std())
    entries.append(entry)
  return {'metric': metric, 'entries': entries}


def plot_metric_vs_alpha(path: str, summary: Dict, dataset_reward: Optional[float] = None):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  metric = summary['metric']
  entries = summary['entries']
  has_oos = any('out_of_support_mean' in e for e in entries)
  fig, axes = plt.subplots(1, 2 if has_oos else 1, figsize=(10 if has_oos else 5, 3.8),
                           squeeze=False)
  colors = {'fql': 'tab:blue', 'rebrac': 'tab:orange', 'lps': 'tab:red', 'dsrl': 'tab:green'}
  keys = [metric] + (['out_of_support'] if has_oos else [])
  for ax, key in zip(axes[0], keys):
    swept = [e for e in entries if e['alpha'] != '']
    for agent in sorted({e['agent'] for e in swept}):
      pts = sorted((e['alpha'], e[f'{key}_mean'], e[f'{key}_std'])
                   for e in swept if e['agent'] == agent)
      x, y, s = map(np.array, zip(*pts))
      ax.errorbar(x, y, yerr=s, marker='o', capsize=3, label=agent, color=colors.get(agent))
    for e in entries:
      if e['alpha'] == '':
        ax.axhline(e[f'{key}_mean'], ls='--', color=colors.get(e['agent']),
                   label=f"{e['agent']} (no alpha)")
    if key == metric and dataset_reward is not None:
      ax.axhline(dataset_reward, ls=':', color='0.4', label='dataset mean')
    ax.set_xscale('log')
    ax.set_xlabel('alpha')
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_action_grid(path: str, dataset_actions, scatters: Dict, alphas: Sequence[float],
                     rows: List[Dict]):
  """Rows: swept agents (one panel per alpha) then the alpha-free agents; toy only."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  swept = [n for n in ALPHA_HPARAM if any(k[0] == n for k in scatters)]
  free = [n for n, a in scatters if a is None]
  ncols = max(len(alphas), len(free), 1)
  nrows = len(swept) + (1 if free else 0)
  fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.4 * nrows), squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  reward = {(r['agent'], r['alpha'] if r['alpha'] != '' else None): r.get('reward')
            for r in rows if r['seed'] == rows[0]['seed']}
  panels = [(i, j, n, a) for i, n in enumerate(swept) for j, a in enumerate(alphas)]
  panels += [(len(swept), j, n, None) for j, n in enumerate(free)]
  for i, j, name, alpha in panels:
    if (name, alpha) not in scatters:
      continue
    ax = axes[i][j]
    ax.axis('on')
    ax.set_xticks([])
    ax.set_yticks([])
    r = reward.get((name, alpha))
    title = name + ('' if alpha is None else f' a={alpha:g}') + (
        '' if r is None else f'\nreward {r:.2f}')
    actions = scatters[(name, alpha)].reshape(len(tasks.PLOT_CONTEXTS), -1, toy.ACTION_DIM)
    toy.plot_context_actions(ax, dataset_actions, tasks.PLOT_CONTEXTS, actions)
    ax.set_title(title, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


# --------------------------------------------------------------------------- CLI
def _define_flags():
  """CLI flags (defined only when run as a script, so tests can import this module)."""
  flags.DEFINE_string('workdir', None, 'Output folder (CSV, plots, JSON).')
  flags.DEFINE_list('alphas', [str(a) for a in DEFAULT_ALPHAS], 'Alpha grid (comma-separated).')
  flags.DEFINE_integer('num_steps', 4000, 'Training steps per run.')
  flags.DEFINE_integer('steps_per_call', 500, 'Fused updates per jit call (divides num_steps).')
  flags.DEFINE_enum('task', 'toy', ['toy', 'ogbench'],
                    'toy: the contextual one-ring bandit; ogbench: the task of --config (default '
                    'experiments/configs/fql.py:ogbench_small).')
  flags.DEFINE_list('seeds', ['0'], 'Seeds (comma-separated).')
  flags.DEFINE_list('agents', ['fql', 'rebrac', 'lps', 'dsrl'], 'Agents to run.')
  flags.DEFINE_list('hidden_dims', [], 'Override every network\'s hidden sizes, e.g. 128,128.')
  flags.DEFINE_integer('batch_size', None, 'Override every agent\'s batch size.')
  flags.DEFINE_integer('eval_episodes', None, 'Override the evaluation episodes / toy samples.')
  flags.DEFINE_float('toy_peak_width', None, 'Toy variant: reward peak width (degrees; 30).')
  flags.DEFINE_float('toy_support_band', None, 'Toy variant: ring half-width (0.25).')
  flags.DEFINE_float('toy_radial_bonus', None, 'Toy variant: outward reward bonus (0.1).')
  config_flags.DEFINE_config_file('config', None, 'Optional run config whose task and sizes are '
                                  'used for every agent (implies --task=ogbench if not toy).',
                                  lock_config=False)


def toy_reward_flags() -> Dict[str, float]:
  """The toy variant named by --toy_peak_width / --toy_support_band / --toy_radial_bonus."""
  names = {'toy_peak_width': 'peak_width', 'toy_support_band': 'support_band',
           'toy_radial_bonus': 'radial_bonus'}
  reward = {key: FLAGS[flag].value for flag, key in names.items() if FLAGS[flag].value is not None}
  limits = {'peak_width': (0.0, 180.0), 'support_band': (0.0, 0.7), 'radial_bonus': (0.0, 0.1)}
  for key, value in reward.items():
    low, high = limits[key]
    if not low < value <= high:
      cli.fail(f'--toy_{key}={value} must be in ({low}, {high}]')
  return reward


def main(argv):
  del argv   # cli.run refuses positional arguments
  error = cli.workdir_error(FLAGS.workdir)   # before any work or output
  if error:
    cli.fail(error)
  base = FLAGS.config
  if base is None and FLAGS.task == 'ogbench':
    base = config_lib.load_config_file(DEFAULT_OGBENCH_CONFIG)
  variant = base.variant if base is not None else 'toy'
  unknown = [a for a in FLAGS.agents if a not in AGENT_MODULES]
  if unknown:
    cli.fail(f'unknown agents {unknown}; choose from {sorted(AGENT_MODULES)}')
  try:
    run_study(base, FLAGS.workdir, [float(a) for a in FLAGS.alphas],
              [int(s) for s in FLAGS.seeds], FLAGS.agents, FLAGS.num_steps,
              FLAGS.steps_per_call, [int(h) for h in FLAGS.hidden_dims], FLAGS.eval_episodes,
              variant, FLAGS.batch_size, toy_reward=toy_reward_flags())
  except (config_lib.ConfigError, dataset_lib.DatasetError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, config_flag=None)
