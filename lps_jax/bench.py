"""Training and action-sampling throughput of every agent: `python -m lps_jax.bench` -> JSON.

For each agent x size x K (updates fused per jit call by lax.scan) x N (agents vmapped into
one program), on a synthetic dataset shaped like OGBench cube-single (obs 28, action 5,
h = 5 -> D = 25):

  update_steps_per_s   updates per second of each agent (K * calls / s)
  agent_steps_per_s    N * update_steps_per_s (the sweep's total throughput)
  flops_per_update     XLA cost analysis of one update (the K = 1 program / N; XLA counts a
                       while-loop body once, so the K > 1 programs are not used for this)
  achieved_flops_per_s flops_per_update * agent_steps_per_s, and its fraction of
  peak_flops_per_s     a dense f32 matmul timed in the same run
  compile_s            lower + compile of that program

and per agent x size: one-step action sampling latency at batch 1 and actions/s at a large
batch. Sizes: 'paper' = the LPS paper's networks (4x512, batch 256), 'small' = 2x64, batch 64.
Defaults: all sizes on an accelerator, 'small' only on a CPU. `--quick`: small, K in {1, 10},
N in {1, 2}, short timings (a smoke test). Agents that cannot be imported are reported under
"skipped".
"""
import importlib
import json
import os
import statistics
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from lps_jax import agents as agents_lib
from lps_jax import cli, engine
from lps_jax import vmap_sweep as sweep
from lps_jax.data import dataset as dataset_lib

OBSERVATION_DIM, ACTION_DIM, HORIZON = 28, 5, 5       # OGBench cube-single, chunk h = 5
SIZES = {
    # name: (flow/critic hidden, actor hidden or None = the agent's default, batch, dataset rows)
    'small': ((64, 64), (64, 64), 64, 10_000),
    'paper': ((512, 512, 512, 512), None, 256, 100_000),
}
DEFAULT_AGENTS = ('lps', 'fql', 'dsrl', 'lawr')

FLAGS = flags.FLAGS
flags.DEFINE_list('agents', list(DEFAULT_AGENTS), 'Agents to benchmark (registry names).')
flags.DEFINE_list('sizes', [], 'small and/or paper (default: both on an accelerator, small on CPU).')
flags.DEFINE_list('steps', ['1', '100'], 'K: updates fused into one jit call.')
flags.DEFINE_list('members', ['1', '8'], 'N: agents vmapped into one program.')
flags.DEFINE_float('min_time', 1.0, 'Seconds of timed calls per configuration (at least 2 calls).',
                   lower_bound=0.0)
flags.DEFINE_integer('sample_batch', 0, 'Batch for sampling throughput (0: 4096 CPU, 65536 else).',
                     lower_bound=0)
flags.DEFINE_integer('matmul_size', 0, 'n of the n x n peak matmul (0: 2048 CPU, 8192 else).',
                     lower_bound=0)
flags.DEFINE_bool('quick', False, 'Smoke test: small size, K in {1, 10}, N in {1, 2}, short timings.')
flags.DEFINE_string('output', None, 'Also write the JSON here.')


def _positive_ints(values) -> bool:
  return bool(values) and all(v.strip().isdigit() and int(v) >= 1 for v in values)


flags.register_validator('steps', _positive_ints, '--steps must be integers >= 1, e.g. 1,100')
flags.register_validator('members', _positive_ints, '--members must be integers >= 1, e.g. 1,8')
flags.register_validator('min_time', lambda t: t > 0, '--min_time must be > 0 seconds')


def synthetic_dataset(num_rows: int, seed: int = 0) -> dataset_lib.DeviceDataset:
  """Random transitions in OGBench cube-single shapes, episodes of 1000 steps."""
  rng = np.random.default_rng(seed)
  obs = rng.standard_normal((num_rows + 1, OBSERVATION_DIM)).astype(np.float32)
  transitions = {
      'observations': obs[:-1], 'next_observations': obs[1:],
      'actions': rng.uniform(-1, 1, (num_rows, ACTION_DIM)).astype(np.float32),
      'rewards': -(rng.uniform(size=num_rows) < 0.9).astype(np.float32),
      'masks': np.ones(num_rows, np.float32),
      'terminals': (np.arange(num_rows) % 1000 == 999).astype(np.float32),
  }
  return dataset_lib.to_device(transitions, HORIZON, source='synthetic cube-single')


def agent_config(name: str, size: str):
  module = importlib.import_module(agents_lib.AGENT_MODULES[name][0])
  config = module.get_config()
  hidden, actor_hidden, batch_size, _ = SIZES[size]
  config.horizon = HORIZON
  config.batch_size = batch_size
  config.flow_hidden_dims = hidden
  config.critic_hidden_dims = hidden
  if actor_hidden is not None:
    config.actor_hidden_dims = actor_hidden
  if name == 'lawr':
    config.flow_steps = 0       # time phase 2 (critic + planner, flow frozen): the costlier one
  return config


def xla_flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', float('nan')))


def timed_calls(call, min_time: float, min_calls: int = 2):
  """Run call() (it blocks) until min_time has passed -> (calls, seconds)."""
  start, calls = time.perf_counter(), 0
  while calls < min_calls or time.perf_counter() - start < min_time:
    call()
    calls += 1
  return calls, time.perf_counter() - start


def matmul_peak(n: int, repeats: int = 5) -> dict:
  """Best-of-repeats dense f32 n x n matmul rate: the machine's practical peak."""
  x = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(x, x).block_until_ready()
  best = min(_time_once(lambda: dot(x, x).block_until_ready()) for _ in range(repeats))
  return {'matmul_n': n, 'peak_flops_per_s': 2.0 * n ** 3 / best, 'matmul_s': best}


def _time_once(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def bench_training(agent, data, num_steps: int, num_members: int, min_time: float) -> dict:
  """Throughput of K = num_steps fused updates for N = num_members vmapped agents."""
  if num_members == 1:
    fn, state = engine.make_train_fn(num_steps), agent
  else:
    keys = jax.random.split(agent.rng, num_members)
    state = sweep.stack([agent.replace(rng=k) for k in keys])
    fn = sweep.make_vmapped_train_fn(num_steps)
  start = time.perf_counter()
  compiled = fn.lower(state, data).compile()
  compile_s = time.perf_counter() - start
  state = jax.tree.map(jnp.copy, state)            # the compiled program donates its input
  holder = [jax.block_until_ready(compiled(state, data)[0])]   # warm-up call

  def call():
    holder[0], metrics = compiled(holder[0], data)
    jax.block_until_ready(metrics)

  calls, seconds = timed_calls(call, min_time)
  update_rate = num_steps * calls / seconds
  return {'K': num_steps, 'N': num_members, 'compile_s': compile_s, 'calls': calls,
          'seconds': seconds, 'update_steps_per_s': update_rate,
          'agent_steps_per_s': update_rate * num_members, 'xla_flops_per_call': xla_flops(compiled)}


def bench_sampling(agent, sample_batch: int, min_time: float) -> dict:
  sample = jax.jit(lambda a, obs, key: a.sample_actions(obs, key))
  key = jax.random.PRNGKey(0)
  one = jnp.zeros((1, OBSERVATION_DIM), jnp.float32)
  many = jax.random.normal(key, (sample_batch, OBSERVATION_DIM), jnp.float32)
  sample(agent, one, key).block_until_ready()
  sample(agent, many, key).block_until_ready()
  latencies = []
  start = time.perf_counter()
  while len(latencies) < 20 or time.perf_counter() - start < min_time / 2:
    latencies.append(_time_once(lambda: sample(agent, one, key).block_until_ready()))
  calls, seconds = timed_calls(lambda: sample(agent, many, key).block_until_ready(), min_time / 2)
  return {'latency_batch1_ms': 1e3 * statistics.median(latencies),
          'latency_batch1_p90_ms': 1e3 * float(np.percentile(latencies, 90)),
          'throughput_batch': sample_batch,
          'actions_per_s': sample_batch * calls / seconds}


def run(agent_names, sizes, steps, members, min_time, sample_batch, matmul_size, log=None):
  """The whole benchmark as a JSON-able dict."""
  log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
  device = jax.devices()[0]
  on_cpu = device.platform == 'cpu'
  report = {
      'backend': device.platform, 'device_kind': device.device_kind,
      'device_count': jax.device_count(), 'jax_version': jax.__version__,
      'cpu_count': os.cpu_count(),
      'load_average_at_start': list(os.getloadavg()) if hasattr(os, 'getloadavg') else None,
      'shapes': {'observation_dim': OBSERVATION_DIM, 'action_dim': ACTION_DIM,
                 'horizon': HORIZON, 'chunk_dim': ACTION_DIM * HORIZON},
      'sizes': {s: {'hidden': SIZES[s][0], 'actor_hidden': SIZES[s][1] or 'agent default',
                    'batch_size': SIZES[s][2], 'dataset_rows': SIZES[s][3]} for s in sizes},
      'results': [], 'skipped': {},
  }
  report['notes'] = [
      'flops_per_update is XLA cost analysis of the K=1 program divided by N; it counts both '
      'branches of a lax.cond, so it over-counts agents that switch phases with lax.cond '
      '(L-AWR: timed in phase 2, flow_steps=0).',
      'Under vmap a lax.cond whose predicate depends on a per-member leaf becomes a select: '
      'both branches run for N > 1.']
  if on_cpu:
    report['notes'].append('CPU timings; the machine may be shared with other processes '
                           '(see load_average_at_start), so treat them as lower bounds.')
  log(f'peak: timing a {matmul_size}x{matmul_size} matmul')
  report.update(matmul_peak(matmul_size))
  peak = report['peak_flops_per_s']
  datasets = {}
  for name in agent_names:
    try:
      agents_lib.get_agent_class(name)
      importlib.import_module(agents_lib.AGENT_MODULES[name][0]).get_config()
    except (ImportError, AttributeError, ValueError) as e:
      report['skipped'][name] = f'{type(e).__name__}: {e}'
      log(f'{name}: skipped ({e})')
      continue
    for size in sizes:
      if size not in datasets:
        datasets[size] = synthetic_dataset(SIZES[size][3])
      data = datasets[size]
      config = agent_config(name, size)
      agent = agents_lib.get_agent_class(name).create(0, OBSERVATION_DIM, ACTION_DIM * HORIZON,
                                                      config)
      entry = {'agent': name, 'size': size, 'batch_size': config.batch_size,
               'num_params': int(sum(x.size for x in jax.tree.leaves(agent.params()))),
               'train': []}
      flops_per_update = {}
      for num_members in members:
        for num_steps in steps:
          log(f'{name}/{size}: K={num_steps} N={num_members}')
          row = bench_training(agent, data, num_steps, num_members, min_time)
          if num_steps == 1:
            flops_per_update[num_members] = row['xla_flops_per_call'] / num_members
          entry['train'].append(row)
        if num_members not in flops_per_update:     # cost of the K = 1 program only
          fn = (engine.make_train_fn(1) if num_members == 1 else sweep.make_vmapped_train_fn(1))
          state = agent if num_members == 1 else sweep.stack([agent] * num_members)
          flops_per_update[num_members] = xla_flops(fn.lower(state, data).compile()) / num_members
      for row in entry['train']:
        row['flops_per_update'] = flops_per_update[row['N']]
        row['achieved_flops_per_s'] = row['flops_per_update'] * row['agent_steps_per_s']
        row['fraction_of_peak'] = row['achieved_flops_per_s'] / peak
      entry['flops_per_update'] = flops_per_update.get(1, next(iter(flops_per_update.values())))
      log(f'{name}/{size}: sampling')
      entry['sampling'] = bench_sampling(agent, sample_batch, min_time)
      report['results'].append(entry)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  on_cpu = jax.devices()[0].platform == 'cpu'
  sizes = FLAGS.sizes or (['small'] if on_cpu or FLAGS.quick else ['small', 'paper'])
  steps = [int(s) for s in FLAGS.steps]
  members = [int(m) for m in FLAGS.members]
  min_time = FLAGS.min_time
  if FLAGS.quick:
    steps = [1, 10] if FLAGS.steps == ['1', '100'] else steps
    members = [1, 2] if FLAGS.members == ['1', '8'] else members
    min_time = min(min_time, 0.3)
  bad = [s for s in sizes if s not in SIZES]
  unknown = [a for a in FLAGS.agents if a not in agents_lib.AGENT_MODULES]
  if bad or unknown or min(steps) < 1 or min(members) < 1:
    print(f'error: bad --sizes {bad} / --agents {unknown} (choose from {sorted(SIZES)} / '
          f'{sorted(agents_lib.AGENT_MODULES)}), or --steps/--members < 1', file=sys.stderr)
    sys.exit(2)
  sample_batch = FLAGS.sample_batch or (4096 if on_cpu else 65536)
  matmul_size = FLAGS.matmul_size or (2048 if on_cpu else 8192)
  if FLAGS.quick and not FLAGS.matmul_size:
    matmul_size = min(matmul_size, 1024)
  if FLAGS.quick and not FLAGS.sample_batch:
    sample_batch = min(sample_batch, 1024)
  start = time.perf_counter()
  report = run(FLAGS.agents, sizes, steps, members, min_time, sample_batch, matmul_size)
  report['total_s'] = time.perf_counter() - start
  text = json.dumps(report, indent=1)
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      f.write(text + '\n')
  print(text)


if __name__ == '__main__':
  app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, FLAGS, config_flag=None))
