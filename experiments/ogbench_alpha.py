"""The LPS paper's alpha figure on OGBench: success after training against alpha, per agent.

    per domain  one task (default: OGBench's default task of the domain, the one the FQL /
                Q-chunking line tunes alpha on: cube 2, scene 2, puzzle 4); data
                <dataset_dir>/<domain>-play-v0.npz, generated if missing
    per agent   members = alphas x seeds in ONE vmapped program (ogbench_grid.train_agent with
                a member axis); alpha is the agent's vmappable weight (ALPHA_KEYS): QC-MFQL /
                QC-FQL / FQL `alpha` (distillation), LPS / DSRL `actor_scale` (the reference
                code's alpha on the actor loss)
    evaluate    after training (and at --eval_at steps), --eval_episodes per member in CPU
                worker processes, overlapping the next agent's training
    support     after training, each member's action chunks at 1,024 dataset states: distance
                to the nearest of 8,192 dataset chunks (RMS per action dim), beside the same
                distance for the data's own chunks at those states
    outputs     <workdir>/alpha.csv     agent, domain, task, alpha, seed, steps, success
                <workdir>/alpha.png     one panel per domain: success vs alpha (log axis), one
                                        line per agent (mean), seeds' min..max as a band
                <workdir>/table.md      per domain and agent: best alpha, 10x / 1/10 of it,
                                        min..max over alpha, beside the paper's figure
                <workdir>/support.csv   agent, domain, task, alpha, seed, steps,
                                        action_nn_dist, data_nn_dist
                <workdir>/train.csv, summary.json
    Every output is rewritten as evaluations arrive (and on SIGTERM). A rerun into the same
    --workdir keeps its rows and skips the (domain, agent) programs whose members are all there.

  python experiments/ogbench_alpha.py --domains=puzzle-3x3 --agents=qcmfql,lps \
      --alphas=0.1,1,3,10,100 --seeds=0..1 --size=cpu --num_steps=100000 --eval_episodes=50 \
      --dataset_dir=data/ogbench100 --workdir=runs/alpha

Runs of this driver (e.g. one process per domain sharing a GPU) are combined into one CSV,
table and figure by --merge=DIR1,DIR2 --workdir=DIR (no training).

Per-agent alphas: --agent_alphas='lps=0.1,1,10;dsrl=1' (agents not named use --alphas; DSRL
defaults to its default, 1). Time: --time_budget_s per program, --total_time_s for the whole
run (each program gets an equal share of what is left, less --reserve_s).
"""
import csv
import json
import math
import os
import signal
import sys
import time

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ogbench_grid  # pylint: disable=g-import-not-at-top,wrong-import-position

GridError = ogbench_grid.GridError
FIELDS = ('agent', 'domain', 'task', 'alpha', 'seed', 'steps')
CSV_FIELDS = FIELDS + ('success',)
SUPPORT_FIELDS = FIELDS + ('action_nn_dist', 'data_nn_dist')
# The agent config key each agent's alpha is written to (all vmappable hparams).
ALPHA_KEYS = {'qcmfql': 'alpha', 'qcfql': 'alpha', 'fql': 'alpha', 'lps': 'actor_scale',
              'dsrl': 'actor_scale'}
DEFAULT_AGENT_ALPHAS = {'dsrl': [1.0]}     # "DSRL at its default"
# OGBench's default task per domain (ogbench.manipspace envs with reward_task_id 0).
DEFAULT_TASKS = {'cube-single': 2, 'cube-double': 2, 'scene': 2, 'puzzle-3x3': 4,
                 'puzzle-4x4': 4}
# The LPS paper's alpha figure (values read from the figure; docs/alpha_ogbench.md).
PAPER_ALPHA = {
    'puzzle-3x3': {'qcmfql': '~0.43 at alpha 3, ~0 elsewhere', 'lps': '~1.0 at every alpha',
                   'dsrl': '0.82-0.93'},
    'scene': {'qcmfql': '~0.97 at alpha 1 and 3, ~0 elsewhere', 'lps': '0.97-1.0',
              'dsrl': '0.48-0.70'},
    'cube-double': {'qcmfql': '~0 at every alpha', 'lps': '0.27-0.54', 'dsrl': '0.03-0.07'},
    # Not a panel of the figure; its main table (5-task mean, 4x512, 1M steps) for scale.
    'cube-single': {'qcmfql': 'not in the figure', 'lps': 'not in the figure (table: 0.95)',
                    'qcfql': 'not in the figure (table: 0.99)'},
}
SIZE_CHECK = 0.3       # LPS at alpha 1 must reach this, or a flat curve means nothing
# ogbench_grid flags that have no meaning here (the alpha axis replaces them).
GRID_ONLY_FLAGS = ('domain', 'tasks', 'alpha', 'save_params', 'evaluate', 'evaluate_saved')

FLAGS = flags.FLAGS
flags.DEFINE_list('domains', ['puzzle-3x3', 'scene'], 'OGBench manipulation domains.')
flags.DEFINE_string('domain_tasks', '', "Task per domain instead of the default, e.g. "
                    "'puzzle-3x3=4,scene=2'.")
flags.DEFINE_list('alphas', ['0.03', '0.1', '0.3', '1', '3', '10', '30', '100', '300'],
                  'Alphas of every agent not named in --agent_alphas.')
flags.DEFINE_string('agent_alphas', '', "Per-agent alphas, e.g. 'lps=0.1,1,10;dsrl=1'.")
flags.DEFINE_float('total_time_s', 0.0, 'Training budget of the whole run in seconds (0: none): '
                   'each program gets (what is left - --reserve_s) / programs left.')
flags.DEFINE_float('reserve_s', 0.0, 'Seconds of --total_time_s kept for the evaluation tail.')
flags.DEFINE_integer('support_states', 1024, 'Dataset states of the support distance (0: off).')
FLAGS.set_default('agents', ['qcmfql', 'lps'])
FLAGS.set_default('eval_at', '')     # success after training only (plus any steps named here)


# ------------------------------------------------------------------------------ plan
def parse_floats(text, name):
  try:
    values = [float(v) for v in (text.split(',') if isinstance(text, str) else text) if v != '']
  except ValueError:
    raise GridError(f'{name}: not a list of numbers: {text!r}') from None
  if not values or any(not v > 0 for v in values):
    raise GridError(f'{name}: alphas must be > 0, got {text!r}')
  return values


def parse_plan():
  """-> (domains [(domain, task)], {agent: [alphas]}, seeds, eval_at), or GridError."""
  from lps_jax import cli, config_lib, multitask  # pylint: disable=g-import-not-at-top
  for name in GRID_ONLY_FLAGS:
    if FLAGS[name].present:
      raise GridError(f'--{name} is an ogbench_grid flag with no meaning here (see --help: '
                      '--domains, --domain_tasks, --alphas, --agent_alphas)')
  reason = cli.workdir_error(FLAGS.workdir)
  if reason:
    raise GridError(reason)
  try:
    seeds = multitask.parse_int_list(FLAGS.seeds)
    eval_at = multitask.parse_int_list(FLAGS.eval_at) if FLAGS.eval_at.strip() else []
  except ValueError as e:
    raise GridError(f'--seeds / --eval_at: {e}') from None
  error = cli.seeds_error(seeds)
  if error:
    raise GridError(error)
  if FLAGS.num_steps < 1 or FLAGS.steps_per_call < 1 or FLAGS.eval_episodes < 1:
    raise GridError('--num_steps, --steps_per_call and --eval_episodes must be >= 1')
  if FLAGS.num_steps % FLAGS.steps_per_call:
    raise GridError(f'--num_steps={FLAGS.num_steps} must be a multiple of --steps_per_call='
                    f'{FLAGS.steps_per_call}')
  tasks = dict(DEFAULT_TASKS)
  for item in filter(None, FLAGS.domain_tasks.split(',')):
    domain, sep, task = item.partition('=')
    if not sep or not task.strip().isdigit():
      raise GridError(f'--domain_tasks: expected domain=task, got {item!r}')
    tasks[domain.strip()] = int(task)
  for domain in FLAGS.domains:
    if domain not in config_lib.OGBENCH_DOMAINS:
      raise GridError(f'--domains: unknown domain {domain!r}; choose from '
                      f'{sorted(config_lib.OGBENCH_DOMAINS)}')
  default = parse_floats(FLAGS.alphas, '--alphas')
  alphas = {a: DEFAULT_AGENT_ALPHAS.get(a, default) for a in FLAGS.agents}
  for item in filter(None, FLAGS.agent_alphas.split(';')):
    agent, sep, values = item.partition('=')
    if not sep or agent.strip() not in alphas:
      raise GridError(f'--agent_alphas: expected agent=a,b,... for an agent of --agents, '
                      f'got {item!r}')
    alphas[agent.strip()] = parse_floats(values, f'--agent_alphas {agent}')
  for agent in FLAGS.agents:
    if agent not in ALPHA_KEYS:
      raise GridError(f'--agents: {agent!r} has no alpha here; choose from {sorted(ALPHA_KEYS)}')
    if not os.path.exists(ogbench_grid.config_path(agent)):
      raise GridError(f'--agents: no config {ogbench_grid.config_path(agent)}')
  bad = [s for s in eval_at if s % FLAGS.steps_per_call or s < 1]
  if bad:
    raise GridError(f'--eval_at {bad} must be positive multiples of --steps_per_call='
                    f'{FLAGS.steps_per_call}')
  for domain in FLAGS.domains:
    ogbench_grid.check_dataset(domain, FLAGS.dataset_dir)
  return ([(d, tasks[d]) for d in FLAGS.domains], alphas, seeds,
          sorted(s for s in eval_at if s < FLAGS.num_steps))


def members_of(agent, alphas, seeds):
  """vmap_sweep members of one program: alphas x seeds, alpha on the agent's key."""
  return [{'seed': seed, f'agent.{ALPHA_KEYS[agent]}': alpha} for alpha in alphas
          for seed in seeds]


# ------------------------------------------------------------------------------ support
def support_distances(agents, transitions, horizon, num_states, num_reference=8192, seed=0):
  """Nearest-dataset-chunk distance of each member's actions -> ([M] policy, data).

  agents [1, M, ...] (one task); transitions of that task. Both distances are RMS per action
  dim: ||a - nearest reference chunk|| / sqrt(D), averaged over num_states dataset states.
  'data' is the same distance for the dataset's own chunks at those states (the data's spread).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lps_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top
  starts = dataset_lib.chunk_starts(np.asarray(transitions['terminals']), horizon)
  starts = np.random.default_rng(seed).permutation(starts)
  num_reference = min(num_reference, len(starts) // 2)
  num_states = min(num_states, len(starts) - num_reference)
  actions = np.asarray(transitions['actions'], np.float32)
  chunk = lambda idx: actions[idx[:, None] + np.arange(horizon)].reshape(len(idx), -1)
  reference = jnp.asarray(chunk(starts[:num_reference]))
  queries = starts[num_reference:num_reference + num_states]
  observations = jnp.asarray(np.asarray(transitions['observations'], np.float32)[queries])
  members = jax.tree.map(lambda x: x[0], agents)

  def nearest(points):   # [Q, D] -> [Q] RMS distance to the nearest reference chunk
    sq = (jnp.sum(points ** 2, -1)[:, None] + jnp.sum(reference ** 2, -1)[None]
          - 2.0 * points @ reference.T)
    return jnp.sqrt(jnp.maximum(jnp.min(sq, axis=1), 0.0) / points.shape[-1])

  @jax.jit
  def policy_distances(members):
    keys = jax.random.split(jax.random.PRNGKey(seed), jax.tree.leaves(members)[0].shape[0])
    return jax.lax.map(lambda mk: nearest(mk[0].sample_actions(observations, mk[1])).mean(),
                       (members, keys))

  data = float(nearest(jnp.asarray(chunk(queries))).mean())
  return np.asarray(policy_distances(members)), data


# ------------------------------------------------------------------------------ outputs
def read_rows(path, numeric=('task', 'seed', 'steps')):
  """Rows of a csv written here: ids to int, other columns but agent / domain to float."""
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    return [{k: (v if k in ('agent', 'domain') else int(v) if k in numeric else float(v))
             for k, v in row.items() if v != ''} for row in csv.DictReader(f)]


def write_rows(path, rows, fields):
  with open(path + '.tmp', 'w', newline='') as f:
    writer = csv.DictWriter(f, fields, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
  os.replace(path + '.tmp', path)


def final_rows(rows):
  """Each member's last evaluation (the most steps): success after training."""
  last = {}
  for r in rows:
    key = (r['agent'], r['domain'], r['task'], r['alpha'], r['seed'])
    if key not in last or r['steps'] > last[key]['steps']:
      last[key] = r
  return list(last.values())


def by_alpha(rows):
  """{alpha: [success per seed]} sorted by alpha."""
  out = {}
  for r in sorted(rows, key=lambda r: (r['alpha'], r['seed'])):
    out.setdefault(r['alpha'], []).append(r['success'])
  return out


def table_markdown(rows, agents, domains):
  """Per domain and agent: success per alpha, best alpha and its neighbours, the paper's."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rows = final_rows(rows)
  lines = ['Success after training (mean over seeds, min..max), per alpha; '
           "paper: the LPS paper's alpha figure (earlier evaluations: alpha.csv)", '']
  for domain in domains:
    mine = [r for r in rows if r['domain'] == domain]
    if not mine:
      continue
    tasks = sorted({r['task'] for r in mine})
    steps = sorted({r['steps'] for r in mine})
    lines += [f"### {domain} (task {','.join(map(str, tasks))}, steps "
              f"{','.join(map(str, steps))})", '',
              '| agent | alpha | seeds | success | min..max |', '|---|---|---|---|---|']
    summary = []
    for agent in agents:
      curve = by_alpha([r for r in mine if r['agent'] == agent])
      for alpha, values in curve.items():
        lines.append(f'| {agent} | {alpha:g} | {len(values)} | {np.mean(values):.2f} | '
                     f'{min(values):.2f}..{max(values):.2f} |')
      if not curve:
        continue
      means = {a: float(np.mean(v)) for a, v in curve.items()}
      best = max(means, key=means.get)
      near = ', '.join(f'{m:g}x: {means[a]:.2f}' for m in (0.1, 10.0) for a in means
                       if math.isclose(a, best * m, rel_tol=1e-6))   # 3 * 0.1 != 0.3
      paper = PAPER_ALPHA.get(domain, {}).get(agent, '')
      summary.append(f'| {agent} | {best:g} | {means[best]:.2f} | {near or "-"} | '
                     f'{min(means.values()):.2f}..{max(means.values()):.2f} | {paper} |')
    lines += ['', '| agent | best alpha | success there | at 1/10 and 10x of it | '
              'min..max over alpha | paper |', '|---|---|---|---|---|---|', *summary, '']
    check = by_alpha([r for r in mine if r['agent'] == 'lps' and r['alpha'] == 1.0])
    if check:
      values = check[1.0]
      verdict = 'yes' if np.mean(values) >= SIZE_CHECK else 'NO: grow data / steps / nets'
      lines += [f"Size check (LPS at alpha 1): success {' / '.join(f'{v:.2f}' for v in values)}"
                f'; learns (mean >= {SIZE_CHECK}): {verdict}', '']
  return '\n'.join(lines) + '\n'


def plot_alpha(path, rows, agents, domains):
  """One panel per domain: success vs alpha (log x), mean line and min..max band per agent."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rows = final_rows(rows)
  domains = [d for d in domains if any(r['domain'] == d for r in rows)]
  if not domains:
    return
  fig, axes = plt.subplots(1, len(domains), figsize=(4.2 * len(domains), 3.4), squeeze=False)
  for ax, domain in zip(axes[0], domains):
    mine = [r for r in rows if r['domain'] == domain]
    for agent in agents:
      curve = by_alpha([r for r in mine if r['agent'] == agent])
      if not curve:
        continue
      alphas = list(curve)
      mean = [np.mean(v) for v in curve.values()]
      low, high = [min(v) for v in curve.values()], [max(v) for v in curve.values()]
      line, = ax.plot(alphas, mean, marker='o', label=agent)
      if len(alphas) > 1:
        ax.fill_between(alphas, low, high, color=line.get_color(), alpha=0.2)
      else:
        ax.errorbar(alphas, mean, yerr=[[m - l for m, l in zip(mean, low)],
                                        [h - m for m, h in zip(mean, high)]],
                    color=line.get_color(), capsize=3)
    ax.set_xscale('log')
    tasks = ','.join(str(t) for t in sorted({r['task'] for r in mine}))
    ax.set_title(f'{domain} (task {tasks})')
    ax.set_xlabel('alpha')
    ax.set_ylim(-0.02, 1.02)
  axes[0][0].set_ylabel('success (mean; seeds min..max)')
  axes[0][-1].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


class AlphaResults(ogbench_grid.Results):
  """Evaluations of ogbench_grid.Results, written as alpha.csv / alpha.png / table.md."""
  step_column = 'steps'

  def __init__(self, workdir, summary, agents, domains):
    super().__init__(workdir, summary, agents)
    self.domains = domains
    path = lambda name: os.path.join(workdir, name)
    self.previous = read_rows(path('alpha.csv'))
    self.support_rows = read_rows(path('support.csv'))
    self.train_rows = read_rows(path('train.csv'))

  def forget(self, agent, domain, task):
    """Drop a program's rows kept from an earlier run (it is about to run again)."""
    other = lambda r: (r.get('agent'), r.get('domain'), r.get('task')) != (agent, domain, task)
    self.previous = list(filter(other, self.previous))
    self.support_rows = list(filter(other, self.support_rows))
    self.train_rows = list(filter(other, self.train_rows))

  def rows(self):
    from lps_jax.envs import eval_pool  # pylint: disable=g-import-not-at-top
    new = [{**dict(zip(FIELDS, tag)), 'success': m['success']}
           for tag, m in sorted(eval_pool.merge(self.done).items())]
    return self.previous + new

  def row_key(self, row):
    return tuple(str(row[k]) for k in FIELDS)

  def write(self, plot=True):
    rows = self.rows()
    self.summary.update(evaluations_done=len(self.done), evaluations_pending=len(self.pending),
                        evaluations_failed=self.failed)
    path = lambda name: os.path.join(self.workdir, name)
    write_rows(path('alpha.csv'), rows, CSV_FIELDS)
    write_rows(path('support.csv'), self.support_rows, SUPPORT_FIELDS)
    ogbench_grid.write_csv(path('train.csv'), self.train_rows)
    with open(path('table.md'), 'w') as f:
      f.write(table_markdown(rows, self.agents, self.domains))
    with open(path('summary.json'), 'w') as f:
      json.dump(self.summary, f, indent=2, default=str)
    try:
      if plot:
        plot_alpha(path('alpha.png'), rows, self.agents, self.domains)
    except Exception as e:  # pylint: disable=broad-except  (a plot must not lose the numbers)
      print(f'plot failed: {e}', file=sys.stderr)
    return rows


def finished(rows, agent, domain, task, members):
  """Whether every (alpha, seed) member of the program already has a success row."""
  have = {(r['alpha'], r['seed']) for r in rows
          if (r['agent'], r['domain'], r['task']) == (agent, domain, task)}
  return all((float(m[k]), m['seed']) in have for m in members for k in m if k != 'seed')


# ------------------------------------------------------------------------------ run
def run(domains, alphas, seeds, eval_at):
  import jax  # pylint: disable=g-import-not-at-top
  from lps_jax.envs import eval_pool  # pylint: disable=g-import-not-at-top
  workdir = FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  wall_start = time.perf_counter()
  log = ogbench_grid.make_log()
  summary = {'flags': {k: FLAGS[k].value for k in (
      'agents', 'domains', 'domain_tasks', 'alphas', 'agent_alphas', 'seeds', 'size', 'set',
      'compute_dtype', 'num_steps', 'eval_at', 'steps_per_call', 'eval_episodes', 'eval_workers',
      'time_budget_s', 'total_time_s', 'reserve_s', 'dataset_dir', 'dataset_episodes',
      'workers')},
      'domain_tasks': dict(domains), 'agent_alphas': alphas,
      'devices': [str(d) for d in jax.devices()], 'agents': [], 'datasets': {}}
  results = AlphaResults(workdir, summary, FLAGS.agents, [d for d, _ in domains])
  programs = [(domain, task, agent, members_of(agent, alphas[agent], seeds))
              for domain, task in domains for agent in FLAGS.agents]
  todo = []
  for domain, task, agent, members in programs:
    if finished(results.previous, agent, domain, task, members):
      log(f'{domain} task {task} {agent}: every member already in alpha.csv, skipped')
    else:
      todo.append((domain, task, agent, members))
  pool = None
  try:
    pool = eval_pool.EvalPool(FLAGS.eval_workers)
    for domain, task in domains:
      mine = [p for p in todo if p[0] == domain]
      if not mine:
        continue
      summary['datasets'][domain] = ogbench_grid.ensure_dataset(domain)
      sparse = ogbench_grid.run_config(mine[0][2], task, domain=domain).sparse_reward
      per_task, info = ogbench_grid.load_tasks([task], sparse, domain, pool=pool)
      summary['datasets'][domain].update(transitions=info['num_transitions'], sparse=sparse)
      log(f"{domain} task {task}: {info['num_transitions']} transitions (sparse={sparse})")
      for _, _, agent, members in mine:
        budget = program_budget(wall_start, len(todo))
        todo = todo[1:]
        summary['agents'].append(train_program(
            agent, domain, task, members, seeds, eval_at, per_task, info, pool, log, results,
            budget))
        results.write()
    eval_start = time.perf_counter()
    results.drain(log)
    summary['eval_tail_seconds'] = time.perf_counter() - eval_start
  finally:
    if pool is not None:
      pool.terminate()
    summary['wall_seconds'] = time.perf_counter() - wall_start
    rows = results.write()
  log(f"done in {summary['wall_seconds']:.0f} s; {len(rows)} rows in {workdir}")
  print(table_markdown(rows, FLAGS.agents, [d for d, _ in domains]))


def program_budget(wall_start, programs_left):
  """Seconds for the next program: --time_budget_s, capped by its share of --total_time_s."""
  budget = FLAGS.time_budget_s
  if FLAGS.total_time_s > 0:
    left = FLAGS.total_time_s - FLAGS.reserve_s - (time.perf_counter() - wall_start)
    share = max(left / max(programs_left, 1), 1.0)
    budget = min(budget, share) if budget > 0 else share
  return budget


def train_program(agent, domain, task, members, seeds, eval_at, per_task, info, pool, log,
                  results, budget):
  """One agent's alphas x seeds on one domain's task, evaluated after training."""
  key = f'agent.{ALPHA_KEYS[agent]}'
  results.forget(agent, domain, task)

  def ident(task, member, step):
    return {'agent': agent, 'domain': domain, 'task': task, 'alpha': member[key],
            'seed': member['seed'], 'steps': step}

  def on_trained(agents, step):
    if FLAGS.support_states <= 0:
      return
    config = ogbench_grid.run_config(agent, task, domain=domain)
    policy, data = support_distances(agents, per_task[0], config.agent.horizon,
                                     FLAGS.support_states)
    for member, distance in zip(members, policy):
      results.support_rows.append({**ident(task, member, step),
                                   'action_nn_dist': float(distance), 'data_nn_dist': data})

  log(f'{domain} task {task} {agent}: {len(members)} members (alphas '
      f"{sorted({m[key] for m in members})} x seeds {seeds}), budget "
      + (f'{budget:.0f} s' if budget > 0 else 'none'))
  summary = ogbench_grid.train_agent(
      agent, [task], seeds, eval_at, per_task, info, pool, log, results, domain=domain,
      members=members, ident=ident, time_budget_s=budget, on_trained=on_trained,
      checkpoints=False)
  summary.update(domain=domain, task=task, alpha_key=ALPHA_KEYS[agent],
                 alphas=sorted({m[key] for m in members}))
  return summary


def merge_runs(run_dirs, workdir):
  """Combine earlier runs' alpha.csv / support.csv / train.csv / summary.json into workdir."""
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  reason = cli.workdir_error(workdir)
  if reason:
    raise GridError(reason)
  rows, support, train, summaries = [], [], [], []
  for run_dir in run_dirs:
    path = lambda name, run_dir=run_dir: os.path.join(run_dir, name)
    if not os.path.exists(path('alpha.csv')):
      raise GridError(f"--merge: {path('alpha.csv')} does not exist")
    rows += read_rows(path('alpha.csv'))
    support += read_rows(path('support.csv'))
    train += read_rows(path('train.csv'))
    if os.path.exists(path('summary.json')):
      with open(path('summary.json')) as f:
        summaries.append(json.load(f))
  keys = [tuple(r[k] for k in FIELDS) for r in rows]
  if len(set(keys)) != len(keys):
    raise GridError('--merge: the runs share (agent, domain, task, alpha, seed, steps) rows')
  os.makedirs(workdir, exist_ok=True)
  agents = list(dict.fromkeys(r['agent'] for r in rows))
  domains = list(dict.fromkeys(r['domain'] for r in rows))
  summary = {'merged_from': list(run_dirs), 'runs': summaries,
             'agents': [a for s in summaries for a in s.get('agents', [])]}
  results = AlphaResults(workdir, summary, agents, domains)
  results.previous, results.support_rows, results.train_rows = rows, support, train
  results.write()
  print(table_markdown(rows, agents, domains))
  return rows


def _exit_on_sigterm(signum, frame):
  del frame
  sys.exit(128 + signum)   # raises SystemExit here, so run()'s finally writes the outputs


def main(argv):
  signal.signal(signal.SIGTERM, _exit_on_sigterm)
  del argv   # cli.run refuses positional arguments
  import warnings  # pylint: disable=g-import-not-at-top
  warnings.simplefilter('ignore')
  from lps_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top
  from lps_jax.data import generate  # pylint: disable=g-import-not-at-top
  try:
    if FLAGS.merge:
      merge_runs(FLAGS.merge, FLAGS.workdir)
    else:
      run(*parse_plan())
  except (GridError, dataset_lib.DatasetError, generate.GenerateError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)
