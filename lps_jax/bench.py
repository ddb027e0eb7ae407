"""Training throughput of the fused engine against an unfused loop: `python -m lps_jax.bench` -> JSON.

For each agent x size x compute dtype, on a synthetic dataset shaped like OGBench cube-single
(obs 28, action 5, h = 5 -> D = 25), in ONE process on ONE device, these programs are compiled
and then timed in interleaved rounds (each round times every program once, so a change of
machine load hits all of them alike):

  unfused      the public implementations' loop (e.g. seohongpark/fql): a minibatch sampled
               on the host with numpy, then one jit call of agent.update per step
  fused K      engine.make_train_fn(K): K updates, batches sampled on the device, one call
  sweep N      sweep.make_vmapped_train_fn(K_sweep): N agents vmapped in one program
  matmul       a dense n x n matmul in the compute dtype (the same-run practical peak)

Every timed window dispatches its calls asynchronously and blocks once at the end (as a
training loop does). Reported per entry:

  agent_steps_per_s      median over rounds (N * K * calls / s)
  fused_over_unfused     {K: median over rounds of fused K / unfused, same round}
  sweep_over_unfused     {N: vmapped N agent-steps/s / the unfused single-agent loop's}
  flops_per_update       XLA cost analysis of one fused update with every loop counted by its
                         trip count (the program is re-traced with each lax.scan unrolled;
                         XLA itself counts a loop body once: `flops_per_update_xla_body_once`)
  share_of_peak          flops_per_update * agent_steps_per_s / the same round's matmul rate
  kernels_per_update     kernels of one call / K, counted in the compiled HLO (count_kernels)

Sizes: small = 2x64 nets, batch 64; mid = 2x256, batch 256; paper = the LPS paper's networks
(4x512, batch 256); tiny = 2x16, batch 16 (tests). `--budget_s` time-boxes the run: a program
whose compile + timing would overrun it is skipped and listed under "skipped".

  python -m lps_jax.bench --sizes=small,mid,paper --agents=lps,fql --output=bench.json
  python -m lps_jax.bench --cpu_table --budget_s=2700 --output=t.json --markdown=t.md
                                                            # the CPU table of docs/throughput.md
  python -m lps_jax.bench --quick                           # smoke test (small, 2 short rounds)
  python -m lps_jax.bench --gpu --output=gpu.json          # ~100 s on one H100 / H200
  python -m lps_jax.bench --gpu --gpu_size=tiny ...        # the same preset, tiny, on a CPU
  python -m lps_jax.bench --gpu_levers --output=l.json      # one row per GPU lever, ~8 min
                                                            # (docs/throughput_gpu_plan.md)
"""
import collections
import functools
import importlib
import json
import os
import re
import statistics
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from lps_jax import agents as agents_lib
from lps_jax import cli, engine, networks
from lps_jax import vmap_sweep as sweep
from lps_jax.data import dataset as dataset_lib

OBSERVATION_DIM, ACTION_DIM, HORIZON = 28, 5, 5       # OGBench cube-single, chunk h = 5
SIZES = {
    # name: (flow/critic hidden, actor hidden or None = the agent's default, batch, dataset rows)
    'tiny': ((16, 16), (16, 16), 16, 2_000),
    'small': ((64, 64), (64, 64), 64, 10_000),
    'mid': ((256, 256), (256, 256), 256, 100_000),
    'paper': ((512, 512, 512, 512), None, 256, 100_000),
}
DEFAULT_AGENTS = ('lps', 'fql')
GPU_PRESET = dict(agents=('lps', 'fql'), dtypes=('float32', 'bfloat16'), steps=(100,),
                  members=(32,), sweep_steps=10, rounds=2, window_s=0.3, budget_s=85.0,
                  matmul_size=8192)

# The CPU table of docs/throughput.md: per size (K values, N values, K of the sweeps); the
# paper size first, so that a time box (--budget_s) cuts the cheap sizes. N = 1 is left out at
# mid and paper size: it runs the same program as fused K = sweep K (sweep.py routes it).
CPU_TABLE = {'paper': ((1, 10), (8,), 1),
             'mid': ((1, 10, 100), (8,), 1),
             'small': ((1, 10, 100), (1, 8, 32), 10)}

# One row per lever, each timed against the 'base' row of its agent in the same interleaved
# rounds (in-process rows) or in its own process (XLA_LEVERS: flags are read when the backend
# starts), with its expected gain written down before any GPU run.
LEVERS = {   # id: (settings, expected gain and why)
    'base': (dict(), 'reference: the current code, one agent, fused K = 100, float32'),
    'bf16': (dict(dtype='bfloat16'),
             '1.0-1.15x: bf16 matmuls run at ~2x the float32 rate, but one paper-size agent uses '
             '~5% of the float32 peak (launch-bound), so only the few large matmuls gain'),
    'k1000': (dict(steps=1000),
              '1.0-1.03x: one dispatch per 1000 updates instead of per 100; a K = 100 call '
              'already lasts ~50 ms against ~0.1 ms of dispatch'),
    'unroll2': (dict(unroll=2),
                '1.05-1.3x: half the loop iterations, so half the per-iteration loop control '
                '(the trip-count check that the host reads back), and XLA may fuse across two '
                'updates'),
    'critic_shared_input': (dict(config={'critic_member_batched_input': False}),
                            '0.95-1.0x (the layout before; slower or equal): the critic input '
                            'shared by its 2 members costs a transpose in every forward pass and '
                            'two in every backward pass'),
    'n10': (dict(members=10),
            '4-5x agent-steps/s over base: 10 members vmapped into one program make every '
            'kernel 10x larger at about the same count (measured 4.5x at N = 10 before)'),
    'n10_bf16': (dict(members=10, dtype='bfloat16'),
                 '1.3-1.8x over n10: with 10 members the matmuls are ~20% of the float32 peak, '
                 'so the 2x bf16 matmul rate starts to pay'),
    'n10_unroll2': (dict(members=10, unroll=2), '1.0-1.15x over n10: as unroll2, amortised '
                    'over 10x the work per iteration'),
    'n10_mesh': (dict(members=10, mesh=True),
                 'only with 2+ devices: members split over a mesh axis (one device: the same '
                 'program as n10)'),
}
XLA_LEVERS = {   # id: (environment of the child process, the rows it re-times if the parent
                 # runs them (else base), expected gain and why)
    'cmdbuf_while': ({'XLA_FLAGS': '--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL'},
                     ('base', 'n10'),
                     '1.2-2x at one agent: the scanned loop itself becomes one CUDA graph (a '
                     'conditional while node), so the host stops reading the loop predicate '
                     'back and launching each body'),
    'cmdbuf_while_unrolled': ({'XLA_FLAGS': '--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL '
                               '--xla_gpu_command_buffer_unroll_loops=true'}, ('base', 'n10'),
                              '1.2-2x: as cmdbuf_while, with the loop unrolled inside the graph '
                              '(no conditional node; K bodies in one graph)'),
    'cmdbuf_off': ({'XLA_FLAGS': '--xla_gpu_enable_command_buffer='}, ('base', 'n10'),
                   '0.7-1.0x: no CUDA graphs at all (the default records fusions and library '
                   'calls into graphs); shows what the default graphs already give'),
    'while_double_buffering': ({'XLA_FLAGS': '--xla_gpu_enable_while_loop_double_buffering=true'},
                               ('base', 'n10'), '1.0-1.15x: the loop body unrolled by two, '
                               'as unroll2 but by XLA'),
    'threefry_kernel': ({'JAX_THREEFRY_GPU_KERNEL_LOWERING': 'true'}, ('base', 'n10'),
                        '1.0-1.05x: each random draw (5 per update) one library kernel instead of '
                        'an unrolled hash fusion; the same numbers'),
    'no_triton_gemm': ({'XLA_FLAGS': '--xla_gpu_enable_triton_gemm=false'}, ('base', 'n10'),
                       '0.9-1.1x: every matmul through cuBLAS instead of the autotuned Triton '
                       'choice; the matmuls are small (M = 256)'),
}
LEVER_AGENTS = ('lps', 'qcfql')
LEVERS_BUDGET_S = 480.0      # the whole preset, compiles and child processes included

FLAGS = flags.FLAGS
flags.DEFINE_list('agents', list(DEFAULT_AGENTS), 'Agents to benchmark (registry names).')
flags.DEFINE_list('sizes', ['small'], 'Sizes: tiny, small, mid, paper.')
flags.DEFINE_list('dtypes', ['float32'], 'compute_dtype values: float32, bfloat16.')
flags.DEFINE_list('steps', ['1', '10', '100'], 'K: updates fused into one jit call.')
flags.DEFINE_list('members', ['1', '8', '32'], 'N: agents vmapped into one program.')
flags.DEFINE_integer('sweep_steps', 10, 'K of the vmapped sweep programs.')
flags.DEFINE_integer('rounds', 3, 'Interleaved timing rounds (each times every program once).')
flags.DEFINE_float('min_time', 0.5, 'Seconds of asynchronously dispatched calls per timed window '
                   '(at least one call).')
flags.DEFINE_float('budget_s', 0.0, 'Time box for the whole run in seconds (0: none).')
flags.DEFINE_integer('matmul_size', 0, 'n of the n x n peak matmul (0: 2048 CPU, 8192 else).')
flags.DEFINE_integer('sample_batch', 0, 'If > 0, also time sample_actions at batch 1 (latency) '
                     'and at this batch (actions/s).')
flags.DEFINE_bool('quick', False, 'Smoke test: small size, K in {1, 10}, N in {1, 2}, 2 short '
                  'rounds.')
flags.DEFINE_bool('gpu', False, 'GPU preset: paper size, LPS and FQL, float32 and bfloat16, '
                  'unfused vs fused K=100 vs 32 vmapped agents (K=10), time-boxed to '
                  '--budget_s=85 (about 100 s of wall time with the start-up).')
flags.DEFINE_string('gpu_size', 'paper', 'Size used by --gpu and --gpu_levers (tiny: a CPU check '
                    'of the preset).')
flags.DEFINE_bool('gpu_levers', False, 'GPU levers preset: the paper row\'s LPS and QC-FQL programs '
                  '(experiments/configs, ogbench variant), one row per lever (LEVERS in-process, '
                  'XLA_LEVERS each in a child process), time-boxed to --budget_s (default 480).')
flags.DEFINE_list('lever_rows', list(LEVERS), 'In-process lever rows of --gpu_levers.')
flags.DEFINE_list('lever_xla', list(XLA_LEVERS), 'XLA-flag lever rows of --gpu_levers (each a '
                  'child process).')
flags.DEFINE_float('lever_child_timeout_s', 75.0, 'Time limit of each XLA-lever child process.')
flags.DEFINE_bool('cpu_table', False, 'The CPU table of docs/throughput.md: LPS and FQL at '
                  'small, mid and paper size (K and N per size in CPU_TABLE); prints the '
                  'markdown table to stderr.')
flags.DEFINE_string('markdown', None, 'Also write the markdown table here.')
flags.DEFINE_string('output', None, 'Also write the JSON here.')


def _positive_ints(values) -> bool:
  return bool(values) and all(v.strip().isdigit() and int(v) >= 1 for v in values)


flags.register_validator('steps', _positive_ints, '--steps must be integers >= 1, e.g. 1,100')
flags.register_validator('members', _positive_ints, '--members must be integers >= 1, e.g. 1,8')
flags.register_validator('min_time', lambda t: t > 0, '--min_time must be > 0 seconds')
flags.register_validator('sweep_steps', lambda k: k >= 1, '--sweep_steps must be >= 1')
flags.register_validator('rounds', lambda k: k >= 1, '--rounds must be >= 1')
flags.register_validator('budget_s', lambda t: t >= 0, '--budget_s must be >= 0 (0: none)')
flags.register_validator('matmul_size', lambda n: n >= 0, '--matmul_size must be >= 0')
flags.register_validator('sample_batch', lambda n: n >= 0, '--sample_batch must be >= 0')


# ------------------------------------------------------------------------------ data
def synthetic_transitions(num_rows: int, seed: int = 0) -> dict:
  """Random transitions in OGBench cube-single shapes (host numpy), episodes of 1000 steps."""
  rng = np.random.default_rng(seed)
  obs = rng.standard_normal((num_rows + 1, OBSERVATION_DIM)).astype(np.float32)
  return {
      'observations': obs[:-1], 'next_observations': obs[1:],
      'actions': rng.uniform(-1, 1, (num_rows, ACTION_DIM)).astype(np.float32),
      'rewards': -(rng.uniform(size=num_rows) < 0.9).astype(np.float32),
      'masks': np.ones(num_rows, np.float32),
      'terminals': (np.arange(num_rows) % 1000 == 999).astype(np.float32),
  }


class HostSampler:
  """dataset.sample_batch in numpy on the host (the unfused loop's sampler)."""

  def __init__(self, transitions: dict, batch_size: int, horizon: int, discount: float,
               seed: int = 0):
    self.t = {k: np.asarray(v, np.float32) for k, v in transitions.items()}
    self.starts = dataset_lib.chunk_starts(self.t['terminals'], horizon)
    self.batch_size, self.horizon = batch_size, horizon
    self.discounts = (discount ** np.arange(horizon)).astype(np.float32)
    self.rng = np.random.default_rng(seed)

  def sample(self) -> dict:
    """-> the batch dict of dataset.sample_batch, numpy arrays."""
    b, h, t = self.batch_size, self.horizon, self.t
    start = self.starts[self.rng.integers(0, len(self.starts), b)]
    rows = start[:, None] + np.arange(h)[None]
    step_masks = t['masks'][rows]
    alive = np.cumprod(np.concatenate([np.ones((b, 1), np.float32), step_masks[:, :-1]], 1), 1)
    last = len(t['actions']) - 1
    return {
        'observations': t['observations'][start],
        'actions': t['actions'][rows].reshape(b, -1),
        'rewards': np.sum(self.discounts * alive * t['rewards'][rows], axis=1),
        'masks': np.prod(step_masks, axis=1),
        'next_observations': t['next_observations'][rows[:, -1]],
        'next_actions': t['actions'][np.minimum(rows + h, last)].reshape(b, -1),
    }


def agent_config(name: str, size: str, compute_dtype: str = 'float32'):
  module = importlib.import_module(agents_lib.AGENT_MODULES[name][0])
  config = module.get_config()
  hidden, actor_hidden, batch_size, _ = SIZES[size]
  config.horizon = HORIZON
  config.batch_size = batch_size
  config.flow_hidden_dims = hidden
  config.critic_hidden_dims = hidden
  config.compute_dtype = compute_dtype
  if actor_hidden is not None:
    config.actor_hidden_dims = actor_hidden
  if name == 'lawr':
    config.flow_steps = 0       # time phase 2 (critic + planner, flow frozen): the costlier one
  return config


# ------------------------------------------------------------------------------ FLOPs
def xla_flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', float('nan')))


def _is_literal(var) -> bool:
  return type(var).__name__ == 'Literal'


def _eval_jaxpr_unrolled(jaxpr, consts, args):
  """Evaluate a jaxpr (under a trace), replacing every scan by its unrolled body."""
  env = {}

  def read(var):
    return var.val if _is_literal(var) else env[var]

  def write(var, value):
    if type(var).__name__ != 'DropVar':
      env[var] = value

  for var, value in zip(jaxpr.constvars, consts):
    write(var, value)
  for var, value in zip(jaxpr.invars, args):
    write(var, value)
  for eqn in jaxpr.eqns:
    outs = _eval_eqn_unrolled(eqn, [read(v) for v in eqn.invars])
    for var, value in zip(eqn.outvars, outs):
      write(var, value)
  return [read(v) for v in jaxpr.outvars]


def _eval_closed_unrolled(closed, args):
  return _eval_jaxpr_unrolled(closed.jaxpr, closed.consts, args)


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for item in (value if isinstance(value, (tuple, list)) else [value]):
      inner = getattr(item, 'jaxpr', item)
      if hasattr(inner, 'eqns'):
        yield inner


def _has_scan(jaxpr) -> bool:
  return any(eqn.primitive.name == 'scan' or any(_has_scan(j) for j in _sub_jaxprs(eqn))
             for eqn in jaxpr.eqns)


def _has_rolled_loop(jaxpr) -> bool:
  """Any while loop, or a scan of length > 1 that XLA would see as a loop?"""
  for eqn in jaxpr.eqns:
    params = eqn.params
    if eqn.primitive.name == 'while' or (
        eqn.primitive.name == 'scan' and 1 < params['length'] and params['unroll'] < params['length']):
      return True
    if any(_has_rolled_loop(j) for j in _sub_jaxprs(eqn)):
      return True
  return False


def _unrolled_scan(eqn, invals):
  """Bind the scan with unroll = length: lax.scan then emits no while loop (jax 0.10 / 0.11).

  Only the params `length`, `unroll` and `jaxpr` are touched (the others differ between jax
  versions). A scan nested in the body is unrolled too, by re-tracing the body.
  """
  params = dict(eqn.params)
  params['unroll'] = max(int(params['length']), 1)
  body = params['jaxpr']
  if _has_scan(body.jaxpr):
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type)
              for a in body.in_avals]
    params['jaxpr'] = jax.make_jaxpr(lambda *xs: _eval_closed_unrolled(body, xs))(*shapes)
  return eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))


def _eval_eqn_unrolled(eqn, invals):
  name, params = eqn.primitive.name, eqn.params
  if name == 'scan':
    return _unrolled_scan(eqn, invals)
  inner = None
  if name in ('pjit', 'jit', 'closed_call', 'core_call', 'checkpoint', 'remat'):
    inner = params.get('jaxpr')
  elif name.startswith('custom_jvp_call') or name.startswith('custom_vjp_call'):
    inner = params.get('call_jaxpr', params.get('fun_jaxpr'))
  if inner is not None:
    if hasattr(inner, 'consts'):
      return _eval_closed_unrolled(inner, invals)
    return _eval_jaxpr_unrolled(inner, [], invals)
  out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))
  return out if eqn.primitive.multiple_results else [out]


def unrolled(fn):
  """fn(*args) re-traced with every lax.scan unrolled (same outputs, flat list)."""

  def run(*args):
    leaves = jax.tree.leaves(args)
    closed = jax.make_jaxpr(lambda *xs: fn(*jax.tree.unflatten(jax.tree.structure(args), xs)))(
        *leaves)
    return _eval_closed_unrolled(closed, leaves)

  return run


def loop_aware_flops(fn, *args, compiled=None) -> dict:
  """{'flops': XLA flops with each loop counted by its trip count, 'xla_body_once': plain XLA}.

  XLA's cost analysis counts a while-loop body once whatever its trip count; here fn is
  re-traced with every lax.scan unrolled (lax.fori_loop with static bounds is a scan too)
  and XLA counts that program. A lax.while_loop of unknown trip count is still counted once.
  `compiled`: fn already compiled for args (saves a compile when there is no loop to unroll).
  """
  plain = xla_flops(compiled or jax.jit(fn).lower(*args).compile())
  if not _has_rolled_loop(jax.make_jaxpr(fn)(*args).jaxpr):
    return {'flops': plain, 'xla_body_once': plain}          # nothing to unroll
  flat = xla_flops(jax.jit(unrolled(fn)).lower(*args).compile())
  return {'flops': flat, 'xla_body_once': plain}


def update_flops(agent, data, compiled=None) -> dict:
  """loop_aware_flops of one fused update (K = 1: batch sampling + update)."""
  return loop_aware_flops(functools.partial(engine.train_steps, num_steps=1), agent, data,
                          compiled=compiled)


# ------------------------------------------------------------------------------ kernels
# HLO opcodes that launch no kernel: buffer plumbing, control flow (counted through its bodies)
# and the second halves of asynchronous pairs.
_NO_KERNEL_OPCODES = frozenset({
    'parameter', 'constant', 'get-tuple-element', 'tuple', 'bitcast', 'while', 'call',
    'conditional', 'after-all', 'opt-barrier', 'partition-id', 'replica-id', 'add-dependency',
    'domain', 'async-done', 'async-update', 'copy-done', 'send-done', 'recv-done',
    'all-reduce-done', 'all-gather-done', 'collective-permute-done'})
_HLO_COMPUTATION = re.compile(r'^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_HLO_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*)$')
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


def _hlo_opcode(rhs: str):
  """'f32[2,3]{1,0} fusion(%a), kind=kLoop, ...' -> ('fusion', the attributes text)."""
  if rhs.startswith('('):                          # a tuple shape: skip to its closing paren
    depth = 0
    for i, char in enumerate(rhs):
      depth += {'(': 1, ')': -1}.get(char, 0)
      if depth == 0:
        rhs = rhs[i + 1:]
        break
  else:
    rhs = rhs.split(' ', 1)[1] if ' ' in rhs else ''
  opcode = rhs.strip().split('(', 1)[0].strip()
  return opcode, rhs


def _hlo_computations(hlo_text: str):
  """{name: [(opcode, attributes)]} of every computation, and the entry computation's name."""
  computations, entry, current = {}, None, None
  for line in hlo_text.splitlines():
    line = re.sub(r', metadata=\{[^}]*\}', '', line)
    if current is None:
      match = _HLO_COMPUTATION.match(line)
      if match and '=' not in line.split('(', 1)[0]:
        current = match.group(2)
        computations[current] = []
        entry = current if match.group(1) else entry
      continue
    if line.strip() == '}':
      current = None
      continue
    match = _HLO_INSTRUCTION.match(line)
    if match:
      computations[current].append(_hlo_opcode(match.group(1)))
  return computations, entry


def count_kernels(hlo_text: str) -> dict:
  """Kernels one call of a compiled program launches, from its optimised HLO text.

  A kernel is an instruction of the entry computation, or of a computation it runs (while
  bodies and conditions, called computations, the largest branch of a conditional), other than
  buffer plumbing and control flow: fusions, library calls (custom-call: cuBLAS / cuDNN /
  oneDNN / YNNPACK matmuls), unfused dots, copies, sorts, collectives... A while loop counts
  its body per iteration and its condition per check (trip count + 1), with XLA's
  known_trip_count (a loop without one counts once and is listed in 'unknown_trip_loops').
  On the CPU these are CPU fusions and library calls; on a GPU, GPU kernels and library calls.

  -> {'kernels': per call, 'by_opcode': {opcode: count}, 'loops': [{trip_count, body}],
      'unknown_trip_loops': int}
  """
  computations, entry = _hlo_computations(hlo_text)
  loops, unknown = [], [0]

  def count(name, multiplier, by_opcode):
    total = 0
    for opcode, attributes in computations.get(name, []):
      called = dict(re.findall(r'\b(condition|body|to_apply|calls)=%?([\w.\-]+)', attributes))
      if opcode == 'while':
        trips = _TRIP_COUNT.search(attributes)
        if trips is None and multiplier:
          unknown[0] += 1
        trip_count = int(trips.group(1)) if trips else 1
        body = count(called['body'], multiplier * trip_count, by_opcode)
        total += trip_count * body + (trip_count + 1) * count(
            called['condition'], multiplier * (trip_count + 1), by_opcode)
        if multiplier:            # (0: sizing a conditional's branches)
          loops.append({'trip_count': trip_count, 'body': body})
      elif opcode == 'call' and 'to_apply' in called:
        total += count(called['to_apply'], multiplier, by_opcode)
      elif opcode == 'conditional':
        branches = re.findall(r'%?([\w.\-]+)', ' '.join(re.findall(
            r'(?:branch_computations=\{[^}]*\}|true_computation=\S+|false_computation=\S+)',
            attributes)))
        names = [b for b in branches if b in computations]
        sizes = [count(b, 0, collections.Counter()) for b in names]
        if sizes:
          total += count(names[sizes.index(max(sizes))], multiplier, by_opcode)
      elif opcode not in _NO_KERNEL_OPCODES and not opcode.endswith('-done'):
        total += 1
        by_opcode[opcode] += multiplier
    return total

  by_opcode = collections.Counter()
  kernels = count(entry, 1, by_opcode)
  return {'kernels': kernels, 'by_opcode': dict(by_opcode.most_common()), 'loops': loops,
          'unknown_trip_loops': unknown[0]}


def update_kernels(compiled, num_steps: int) -> dict:
  """count_kernels of a compiled fused K-step program, with 'per_update' = kernels / K."""
  counts = count_kernels(compiled.as_text())
  counts['per_update'] = counts['kernels'] / num_steps
  return counts


# ------------------------------------------------------------------------------ programs
class Program:
  """A compiled, warmed-up program; window(s) times asynchronously dispatched calls."""

  def __init__(self, name, call, state, steps_per_call, flops_per_call=None):
    self.name, self.call, self.state = name, call, state
    self.steps_per_call = steps_per_call          # agent-steps (or flops for the matmul)
    self.rates = []
    jax.block_until_ready(self._run(1))            # warm-up (runs the compiled program)
    start = time.perf_counter()
    jax.block_until_ready(self._run(1))
    self.call_s = time.perf_counter() - start

  def _run(self, calls):
    state = self.state
    for _ in range(calls):
      state = self.call(state)
    self.state = state
    return state

  def window(self, seconds: float) -> float:
    """Dispatch ~seconds of calls, block once at the end -> rate (units per second)."""
    calls = max(1, int(round(seconds / max(self.call_s, 1e-6))))
    start = time.perf_counter()
    jax.block_until_ready(self._run(calls))
    elapsed = time.perf_counter() - start
    self.call_s = elapsed / calls
    rate = calls * self.steps_per_call / elapsed
    self.rates.append(rate)
    return rate


def fused_program(agent, data, num_steps: int, unroll: int = 1, compiler_options=None) -> tuple:
  """(Program, compile_s) of engine.make_train_fn(K) on one agent; program.kernels_per_step =
  kernels of one call / K (count_kernels)."""
  start = time.perf_counter()
  compiled = engine.make_train_fn(num_steps, unroll=unroll).lower(agent, data).compile(
      compiler_options)
  compile_s = time.perf_counter() - start
  state = jax.tree.map(jnp.copy, agent)           # the program donates its input
  program = Program(f'fused K={num_steps}', lambda a: compiled(a, data)[0], state, num_steps)
  program.compiled = compiled
  program.kernels_per_step = update_kernels(compiled, num_steps)['per_update']
  return program, compile_s


def sweep_program(agent, data, num_members: int, num_steps: int, unroll: int = 1,
                  compiler_options=None) -> tuple:
  """(Program, compile_s) of sweep.make_vmapped_train_fn(K) on N stacked agents;
  program.kernels_per_step = kernels of one call / K (one step of all N members)."""
  keys = jax.random.split(agent.rng, num_members)
  stacked = sweep.stack([agent.replace(rng=k) for k in keys])
  start = time.perf_counter()
  compiled = sweep.make_vmapped_train_fn(num_steps, unroll=unroll).lower(stacked, data).compile(
      compiler_options)
  compile_s = time.perf_counter() - start
  program = Program(f'sweep N={num_members}', lambda a: compiled(a, data)[0], stacked,
                    num_members * num_steps)
  program.compiled = compiled
  program.kernels_per_step = update_kernels(compiled, num_steps)['per_update']
  return program, compile_s


def unfused_program(agent, sampler: HostSampler, compiler_options=None) -> tuple:
  """(Program, compile_s) of the public loop: numpy batch on the host, one jit call per update."""
  state = jax.tree.map(jnp.copy, agent)
  start = time.perf_counter()
  update = jax.jit(lambda a, batch: a.update(batch)).lower(state, sampler.sample()).compile(
      compiler_options)
  compile_s = time.perf_counter() - start
  return Program('unfused', lambda a: update(a, sampler.sample())[0], state, 1), compile_s


def matmul_program(n: int, dtype, compiler_options=None) -> Program:
  """x @ x for an n x n x in `dtype`; each call depends on the last (`* 0 + previous`)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  step = jax.jit(lambda a, previous: jnp.dot(a, a) * jnp.zeros((), a.dtype) + previous).lower(
      x, jnp.zeros_like(x)).compile(compiler_options)
  return Program(f'matmul {n} {jnp.dtype(dtype).name}', lambda s: (s[0], step(*s)),
                 (x, jnp.zeros_like(x)), 2.0 * n ** 3)


# ------------------------------------------------------------------------------ run
class Budget:
  """Wall-clock time box; estimate() says whether `seconds` more still fit."""

  def __init__(self, seconds: float):
    self.start, self.seconds = time.perf_counter(), seconds
    self.last_compile_s = 0.0       # the next compile is guessed to take as long

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def fits(self, seconds: float) -> bool:
    return self.seconds <= 0 or self.elapsed() + seconds <= self.seconds


def load_average():
  return [round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None


def bench_entry(name, size, dtype, steps, members, sweep_steps, rounds, window_s, matmul_n,
                budget, data_cache, flops_cache, log, sample_batch=0,
                compiler_options=None) -> dict:
  """Compile every program of one agent x size x dtype, then time them in interleaved rounds."""
  hidden, _, batch_size, rows = SIZES[size]
  if size not in data_cache:
    transitions = synthetic_transitions(rows)
    data_cache[size] = (transitions, dataset_lib.to_device(transitions, HORIZON, 'synthetic'))
  transitions, data = data_cache[size]
  config = agent_config(name, size, dtype)
  agent = agents_lib.create_agent(agents_lib.get_agent_class(name), 0, OBSERVATION_DIM,
                                  ACTION_DIM * HORIZON, config)
  entry = {'agent': name, 'size': size, 'compute_dtype': dtype, 'batch_size': batch_size,
           'hidden': list(hidden), 'actor_hidden': list(config.actor_hidden_dims),
           'num_params': int(sum(x.size for x in jax.tree.leaves(agent.params()))),
           'compile_s': {}, 'skipped': []}
  options = compiler_options
  programs = {'matmul': matmul_program(matmul_n, networks.COMPUTE_DTYPES[dtype], options)}
  builders = [('unfused', lambda: unfused_program(
      agent, HostSampler(transitions, batch_size, HORIZON, config.discount), options))]
  builders += [(f'K={k}', functools.partial(fused_program, agent, data, k, compiler_options=options))
               for k in steps]
  builders += [(f'N={n}', functools.partial(sweep_program, agent, data, n, sweep_steps,
                                                   compiler_options=options))
               for n in members]
  for key, build in builders:
    # A new program costs about the last compile (a guess) plus its timing windows.
    if not budget.fits(budget.last_compile_s + rounds * window_s * 1.5):
      entry['skipped'].append(f'{key} (budget)')
      log(f'{name}/{size}/{dtype}: {key} skipped (budget)')
      continue
    log(f'{name}/{size}/{dtype}: compiling {key}')
    program, budget.last_compile_s = build()
    entry['compile_s'][key] = budget.last_compile_s
    if not budget.fits(rounds * program.call_s):
      entry['skipped'].append(f'{key} (one call takes {program.call_s:.1f} s; budget)')
      continue
    programs[key] = program

  if (name, size) not in flops_cache and budget.fits(0):   # the count does not depend on dtype
    log(f'{name}/{size}/{dtype}: FLOPs (loops unrolled)')
    k1 = programs.get('K=1')
    flops_cache[(name, size)] = update_flops(agent, data, getattr(k1, 'compiled', None))
  if (name, size) in flops_cache:
    entry['flops_per_update'] = flops_cache[(name, size)]['flops']
    entry['flops_per_update_xla_body_once'] = flops_cache[(name, size)]['xla_body_once']
  else:
    entry['skipped'].append('flops (budget)')

  loads = []
  for r in range(rounds):
    if r > 0 and not budget.fits(sum(max(window_s, p.call_s) for p in programs.values())):
      entry['skipped'].append(f'rounds {r + 1}..{rounds} (budget)')
      break
    loads.append(load_average())
    for program in programs.values():
      program.window(window_s)
  log(f'{name}/{size}/{dtype}: ' + ', '.join(
      f'{k} {statistics.median(p.rates):.4g}/s' for k, p in programs.items()))
  entry.update(summarize(programs, entry.get('flops_per_update')))
  # Kernels (fusions, library calls, copies) of one update (K=k) / one step of N members (N=n).
  entry['kernels_per_update'] = {k: p.kernels_per_step for k, p in programs.items()
                                 if hasattr(p, 'kernels_per_step')}
  entry['load_average_per_round'] = loads
  if sample_batch > 0 and budget.fits(budget.last_compile_s * 2 + window_s):
    log(f'{name}/{size}/{dtype}: sampling')
    entry['sampling'] = bench_sampling(agent, sample_batch, window_s)
  return entry


def bench_sampling(agent, sample_batch: int, window_s: float) -> dict:
  """sample_actions: median latency at batch 1 (blocking each call), actions/s at a batch."""
  sample = jax.jit(lambda a, obs, key: a.sample_actions(obs, key))
  key = jax.random.PRNGKey(0)
  one = jnp.zeros((1, OBSERVATION_DIM), jnp.float32)
  many = jax.random.normal(key, (sample_batch, OBSERVATION_DIM), jnp.float32)
  jax.block_until_ready((sample(agent, one, key), sample(agent, many, key)))
  latencies, start = [], time.perf_counter()
  while len(latencies) < 20 or time.perf_counter() - start < window_s:
    tick = time.perf_counter()
    jax.block_until_ready(sample(agent, one, key))
    latencies.append(time.perf_counter() - tick)
  calls, start = 0, time.perf_counter()
  outs = []
  while calls < 2 or time.perf_counter() - start < window_s:
    outs.append(sample(agent, many, key))
    calls += 1
  jax.block_until_ready(outs)
  return {'latency_batch1_ms': 1e3 * statistics.median(latencies),
          'throughput_batch': sample_batch,
          'actions_per_s': sample_batch * calls / (time.perf_counter() - start)}


def _median_ratio(num, den):
  return statistics.median(a / b for a, b in zip(num.rates, den.rates))


def summarize(programs: dict, flops_per_update) -> dict:
  """Median rates, per-round ratios to the unfused loop, and shares of the matmul peak."""
  peak = programs['matmul']
  out = {'peak_flops_per_s': statistics.median(peak.rates), 'agent_steps_per_s': {},
         'fused_over_unfused': {}, 'sweep_over_unfused': {}, 'share_of_peak': {},
         'rounds_timed': len(peak.rates)}
  unfused = programs.get('unfused')
  for key, program in programs.items():
    if key == 'matmul':
      continue
    out['agent_steps_per_s'][key] = statistics.median(program.rates)
    if flops_per_update:
      out['share_of_peak'][key] = statistics.median(
          flops_per_update * a / p for a, p in zip(program.rates, peak.rates))
    if unfused is not None and key != 'unfused':
      table = 'fused_over_unfused' if key.startswith('K=') else 'sweep_over_unfused'
      out[table][key] = _median_ratio(program, unfused)
  return out


def run(agent_names, sizes, dtypes, steps, members, sweep_steps=10, rounds=3, window_s=0.5,
        matmul_size=2048, budget_s=0.0, log=None, sample_batch=0, compiler_options=None) -> dict:
  """The whole benchmark as a JSON-able dict (compiler_options: XLA options of the timed
  training and matmul programs)."""
  log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
  budget = Budget(budget_s)
  device = jax.devices()[0]
  report = {
      'backend': device.platform, 'device_kind': device.device_kind,
      'device_count': jax.device_count(), 'jax_version': jax.__version__,
      'cpu_count': os.cpu_count(), 'load_average_at_start': load_average(),
      'shapes': {'observation_dim': OBSERVATION_DIM, 'action_dim': ACTION_DIM,
                 'horizon': HORIZON, 'chunk_dim': ACTION_DIM * HORIZON},
      'settings': {'agents': list(agent_names), 'sizes': list(sizes), 'dtypes': list(dtypes),
                   'steps': list(steps), 'members': list(members), 'sweep_steps': sweep_steps,
                   'rounds': rounds, 'window_s': window_s, 'matmul_size': matmul_size,
                   'budget_s': budget_s, 'sample_batch': sample_batch},
      'notes': [
          'unfused: numpy minibatch on the host + one jit(agent.update) call per step, no '
          'donation (as seohongpark/fql main.py); fused: engine.make_train_fn(K); sweep N: '
          'sweep.make_vmapped_train_fn(sweep_steps) over N agents (N = 1 runs the plain engine).',
          'Each window dispatches asynchronously and blocks once at its end; rates and ratios '
          'are medians over interleaved rounds.',
          'sweep_over_unfused compares the sweep\'s agent-steps/s with the unfused loop training '
          'one agent (a sequential sweep of N agents runs at that same agent-steps/s).',
          'flops_per_update counts every lax.scan by its trip count (FQL: its flow_steps Euler '
          'loop); flops_per_update_xla_body_once is XLA\'s own count, which counts a loop body '
          'once.'],
      'results': [], 'skipped': [],
  }
  data_cache, flops_cache = {}, {}
  for dtype in dtypes:
    for size in sizes:
      for name in agent_names:
        if not budget.fits(0):
          report['skipped'].append(f'{name}/{size}/{dtype} (budget)')
          continue
        report['results'].append(bench_entry(
            name, size, dtype, steps, members, sweep_steps, rounds, window_s, matmul_size,
            budget, data_cache, flops_cache, log, sample_batch, compiler_options))
  report['load_average_at_end'] = load_average()
  report['total_s'] = budget.elapsed()
  return report


def _ratios(table: dict, prefix: str, values) -> str:
  return ' / '.join(f'{table[f"{prefix}={v}"]:.2f}x' if f'{prefix}={v}' in table else '-'
                    for v in values)


def markdown_table(report: dict) -> str:
  """One row per agent x size x dtype: ratios to the unfused loop and shares of the peak."""
  lines = ['| agent | size | dtype | unfused agent-steps/s | fused K = 1 / 10 / 100 vs unfused | '
           'sweep N = 1 / 8 / 32 vs unfused | share of peak: unfused, fused K = 1 / 10 / 100 | '
           'peak GFLOP/s | load avg (1 min) |',
           '|---|---|---|---|---|---|---|---|---|']
  for e in report['results']:
    share = e.get('share_of_peak', {})
    shares = ' / '.join(f'{100 * share[f"K={k}"]:.0f}%' if f'K={k}' in share else '-'
                        for k in (1, 10, 100))
    unfused_share = f'{100 * share["unfused"]:.0f}%' if 'unfused' in share else '-'
    loads = [l[0] for l in e.get('load_average_per_round', []) if l]
    load = f'{min(loads):.1f}-{max(loads):.1f}' if loads else '-'
    lines.append(
        f'| {e["agent"]} | {e["size"]} | {e["compute_dtype"]} | '
        f'{e["agent_steps_per_s"].get("unfused", float("nan")):.3g} | '
        f'{_ratios(e["fused_over_unfused"], "K", (1, 10, 100))} | '
        f'{_ratios(e["sweep_over_unfused"], "N", (1, 8, 32))} | {unfused_share}, {shares} | '
        f'{e["peak_flops_per_s"] / 1e9:.0f} | {load} |')
  return '\n'.join(lines)


def run_cpu_table(agent_names, budget_s=0.0, rounds=3, window_s=0.5, matmul_size=2048, log=None):
  """run() per size with that size's CPU_TABLE settings, merged into one report."""
  report, start = None, time.perf_counter()
  for size, (steps, members, sweep_steps) in CPU_TABLE.items():
    left = max(budget_s - (time.perf_counter() - start), 1e-9) if budget_s > 0 else 0.0
    part = run(agent_names, [size], ['float32'], list(steps), list(members), sweep_steps, rounds,
               window_s, matmul_size, left, log)
    part['settings']['sizes'] = list(CPU_TABLE)
    if report is None:
      report = part
      report['settings']['per_size'] = {}
    else:
      report['results'] += part['results']
      report['skipped'] += part['skipped']
      report['total_s'] += part['total_s']
      report['load_average_at_end'] = part['load_average_at_end']
    report['settings']['per_size'][size] = {'steps': list(steps), 'members': list(members),
                                            'sweep_steps': sweep_steps}
  report['settings']['budget_s'] = budget_s
  return report


# ------------------------------------------------------------------------------ GPU levers


def lever_agent_config(name: str, size: str, dtype: str = 'float32', overrides=None):
  """The agent config of the paper row's program (experiments/configs/<name>.py, the ogbench
  variant on cube-single) -> ConfigDict; size 'tiny' shrinks it to 2x16 (a CPU check)."""
  from lps_jax import config_lib  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'experiments', 'configs', f'{name}.py')
  config = config_lib.load_config_file(f'{path}:ogbench,domain=cube-single,task=2').agent
  if size == 'tiny':
    hidden, _, batch_size, _ = SIZES['tiny']
    config.flow_hidden_dims = config.critic_hidden_dims = config.actor_hidden_dims = hidden
    config.batch_size = batch_size
    if 'flow_steps' in config:
      config.flow_steps = 2
  config.compute_dtype = dtype
  for key, value in (overrides or {}).items():
    config[key] = value
  return config


def mesh_program(agent, data, num_members: int, num_steps: int) -> tuple:
  """(Program, compile_s) of N members split over a ('sweep', 'data') mesh of every device."""
  from lps_jax import parallel  # pylint: disable=g-import-not-at-top
  sweep_size = max(d for d in range(1, jax.device_count() + 1) if num_members % d == 0)
  mesh = parallel.make_mesh(sweep_size)
  keys = jax.random.split(agent.rng, num_members)
  stacked = parallel.put_agent(sweep.stack([agent.replace(rng=k) for k in keys]), mesh,
                               stacked=True)
  data = parallel.put_dataset(data, mesh)
  fn = parallel.make_train_fn(num_steps, mesh, stacked=True)
  start = time.perf_counter()
  compiled = fn.lower(stacked, data).compile()
  compile_s = time.perf_counter() - start
  program = Program(f'mesh N={num_members}', lambda a: compiled(a, data)[0], stacked,
                    num_members * num_steps)
  program.kernels_per_step = update_kernels(compiled, num_steps)['per_update']
  return program, compile_s


def lever_program(name, size, lever, data) -> tuple:
  """(Program, compile_s, flops agent) of one lever row for agent `name`."""
  settings = LEVERS[lever][0]
  dtype = settings.get('dtype', 'float32')
  config = lever_agent_config(name, size, dtype, settings.get('config'))
  agent = agents_lib.create_agent(agents_lib.get_agent_class(config.agent_name), 0,
                                  OBSERVATION_DIM, ACTION_DIM * HORIZON, config)
  steps, members, unroll = settings.get('steps', 100), settings.get('members', 1), settings.get(
      'unroll', 1)
  if settings.get('mesh'):
    program, compile_s = mesh_program(agent, data, members, steps)
  elif members > 1:
    program, compile_s = sweep_program(agent, data, members, steps, unroll)
  else:
    program, compile_s = fused_program(agent, data, steps, unroll)
  return program, compile_s, agent


def run_levers(agent_names, size, levers, xla_levers, budget_s, rounds=3, window_s=0.3,
               matmul_size=8192, child_timeout_s=90.0, log=None) -> dict:
  """Every lever a row: in-process rows timed in interleaved rounds with the matmul peaks of
  both dtypes, then each XLA lever in a child process (its own peaks). -> JSON-able report."""
  log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
  budget = Budget(budget_s)
  device = jax.devices()[0]
  report = {'preset': 'gpu_levers', 'backend': device.platform, 'device_kind': device.device_kind,
            'device_count': jax.device_count(), 'jax_version': jax.__version__,
            'cpu_count': os.cpu_count(), 'load_average_at_start': load_average(),
            'xla_flags': os.environ.get('XLA_FLAGS', ''),
            'settings': {'agents': list(agent_names), 'size': size, 'levers': list(levers),
                         'xla_levers': list(xla_levers), 'budget_s': budget_s, 'rounds': rounds,
                         'window_s': window_s, 'matmul_size': matmul_size},
            'rows': [], 'skipped': []}
  data = dataset_lib.to_device(synthetic_transitions(SIZES[size][3]), HORIZON, 'synthetic')
  peaks = {dtype: matmul_program(matmul_size, networks.COMPUTE_DTYPES[dtype])
           for dtype in ('float32', 'bfloat16')}
  programs, flops, one_agent = {}, {}, {}
  for lever in levers:
    for name in agent_names:
      key = (name, lever)
      if LEVERS[lever][0].get('mesh') and jax.device_count() < 2:
        report['skipped'].append(f'{name}/{lever} (one device: the same program as n10)')
        continue
      if not budget.fits(budget.last_compile_s + rounds * window_s * 1.5):
        report['skipped'].append(f'{name}/{lever} (budget)')
        continue
      log(f'levers: compiling {name}/{lever}')
      try:
        program, budget.last_compile_s, agent = lever_program(name, size, lever, data)
      except Exception as e:  # pylint: disable=broad-except  (a failed lever must not end the run)
        report['skipped'].append(f'{name}/{lever} (error: {type(e).__name__}: {cli.one_line(e)})')
        continue
      program.compile_s = budget.last_compile_s
      programs[key] = program
      one_agent.setdefault(name, agent)
  for name, agent in one_agent.items():     # FLOPs of one update (the same in every row)
    if budget.fits(budget.last_compile_s):
      flops[name] = update_flops(agent, data)['flops']
    else:
      report['skipped'].append(f'{name} flops (budget)')
  loads = []
  for r in range(rounds):
    if r > 0 and not budget.fits(sum(max(window_s, p.call_s) for p in programs.values())):
      report['skipped'].append(f'rounds {r + 1}..{rounds} (budget)')
      break
    loads.append(load_average())
    for program in (*peaks.values(), *programs.values()):
      program.window(window_s)
  report['load_average_per_round'] = loads
  report['peak_flops_per_s'] = {d: statistics.median(p.rates) for d, p in peaks.items()}
  for (name, lever), program in programs.items():
    settings = LEVERS[lever][0]
    peak = peaks[settings.get('dtype', 'float32')]
    row = {'agent': name, 'lever': lever, 'expected': LEVERS[lever][1],
           'members': settings.get('members', 1), 'steps_per_call': settings.get('steps', 100),
           'compute_dtype': settings.get('dtype', 'float32'),
           'agent_steps_per_s': statistics.median(program.rates),
           'kernels_per_update': program.kernels_per_step, 'compile_s': program.compile_s}
    base = programs.get((name, 'base'))
    if base is not None and base is not program:
      row['over_base'] = _median_ratio(program, base)
    if name in flops:
      row['flops_per_update'] = flops[name]
      row['share_of_peak'] = statistics.median(
          flops[name] * a / p for a, p in zip(program.rates, peak.rates))
    report['rows'].append(row)
    log(f"levers: {name}/{lever}: {row['agent_steps_per_s']:.4g} agent-steps/s, "
        f"{row['kernels_per_update']:.0f} kernels/update, x{row.get('over_base', 1.0):.2f}")
  for lever in xla_levers:
    env, rows, expected = XLA_LEVERS[lever]
    if not budget.fits(min(child_timeout_s, 30.0)):
      report['skipped'].append(f'{lever} (budget)')
      continue
    rows = [r for r in rows if r in levers] or ['base']   # the parent's rows it re-times
    report['rows'] += run_xla_lever(lever, env, rows, expected, agent_names, size, rounds,
                                    window_s, matmul_size, report,
                                    timeout_s=min(child_timeout_s, budget.seconds - budget.elapsed()
                                                  if budget.seconds > 0 else child_timeout_s),
                                    log=log)
  report['load_average_at_end'] = load_average()
  report['total_s'] = budget.elapsed()
  return report


def run_xla_lever(lever, env, rows, expected, agent_names, size, rounds, window_s, matmul_size,
                  report, timeout_s, log) -> list:
  """Time `rows` in a child `python -m lps_jax.bench --gpu_levers` with `env` -> its rows, named
  after the lever, with over_base against this process's base row of the same agent."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'child.json')
    cmd = [sys.executable, '-m', 'lps_jax.bench', '--gpu_levers', f'--gpu_size={size}',
           f'--agents={",".join(agent_names)}', f'--lever_rows={",".join(rows)}',
           '--lever_xla=', f'--rounds={rounds}', f'--min_time={window_s}',
           f'--matmul_size={matmul_size}', f'--budget_s={max(timeout_s - 15, 1):.0f}',
           f'--output={out}']
    child_env = {**os.environ, **env}
    if 'XLA_FLAGS' in env and os.environ.get('XLA_FLAGS'):
      child_env['XLA_FLAGS'] = os.environ['XLA_FLAGS'] + ' ' + env['XLA_FLAGS']
    log(f'levers: {lever} in a child process ({" ".join(f"{k}={v}" for k, v in env.items())})')
    try:
      proc = subprocess.run(cmd, env=child_env, capture_output=True, text=True,
                            timeout=max(timeout_s, 1))
    except subprocess.TimeoutExpired:
      report['skipped'].append(f'{lever} (child timed out after {timeout_s:.0f} s)')
      return []
    if proc.returncode != 0 or not os.path.exists(out):
      last = (proc.stderr.strip().splitlines() or ['no output'])[-1]
      report['skipped'].append(f'{lever} (child exit {proc.returncode}: {last[:300]})')
      return []
    with open(out) as f:
      child = json.load(f)
  base = {r['agent']: r['agent_steps_per_s'] for r in report['rows'] if r['lever'] == 'base'}
  child_rows = []
  for row in child['rows']:
    row = dict(row, lever=f"{lever}:{row['lever']}", xla_lever=lever, env=env,
               child_xla_flags=child['xla_flags'], expected=expected,
               peak_flops_per_s=child['peak_flops_per_s'])
    if row['agent'] in base:
      row['over_base_other_process'] = row['agent_steps_per_s'] / base[row['agent']]
    child_rows.append(row)
  report['skipped'] += [f'{lever}:{s}' for s in child['skipped']]
  return child_rows


def levers_markdown(report: dict) -> str:
  """One line per row: agent, lever, agent-steps/s, x base, share of peak, kernels/update."""
  lines = [f"GPU levers on {report['device_kind']} (jax {report['jax_version']})", '',
           '| agent | lever | members | dtype | agent-steps/s | x base | share of peak | '
           'kernels / update | expected |', '|---|---|---|---|---|---|---|---|---|']
  for r in report['rows']:
    ratio = r.get('over_base', r.get('over_base_other_process'))
    share = r.get('share_of_peak')
    lines.append(f"| {r['agent']} | {r['lever']} | {r['members']} | {r['compute_dtype']} | "
                 f"{r['agent_steps_per_s']:.4g} | {'-' if ratio is None else f'{ratio:.2f}'} | "
                 f"{'-' if share is None else f'{100 * share:.1f}%'} | "
                 f"{r['kernels_per_update']:.0f} | {r['expected']} |")
  return '\n'.join(lines)


def _write_report(report: dict, table: str) -> None:
  report['command'] = ' '.join(['python -m lps_jax.bench'] + sys.argv[1:])
  text = json.dumps(report, indent=1)
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      f.write(text + '\n')
  if FLAGS.markdown:
    with open(FLAGS.markdown, 'w') as f:
      f.write(table + '\n')
  print(table, file=sys.stderr)
  print(text)


def main_levers():
  """--gpu_levers: check the lever names, run them, write the JSON / markdown."""
  agent_names = FLAGS.agents if FLAGS['agents'].present else list(LEVER_AGENTS)
  levers, xla_levers = list(FLAGS.lever_rows), list(FLAGS.lever_xla)
  configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'experiments', 'configs')
  problems = [f'--agents: no config {a}.py in {configs}' for a in agent_names
              if not os.path.exists(os.path.join(configs, f'{a}.py'))]
  problems += [f'--lever_rows: unknown {r!r} (known: {", ".join(LEVERS)})' for r in levers
               if r not in LEVERS]
  problems += [f'--lever_xla: unknown {r!r} (known: {", ".join(XLA_LEVERS)})' for r in xla_levers
               if r not in XLA_LEVERS]
  problems += [f'--gpu_size: unknown {FLAGS.gpu_size!r}'] if FLAGS.gpu_size not in SIZES else []
  if problems:
    print(f'error: {problems[0]}', file=sys.stderr)
    sys.exit(2)
  on_cpu = jax.devices()[0].platform == 'cpu'
  report = run_levers(agent_names, FLAGS.gpu_size, levers, xla_levers,
                      FLAGS.budget_s or LEVERS_BUDGET_S, rounds=FLAGS.rounds,
                      window_s=FLAGS.min_time,
                      matmul_size=FLAGS.matmul_size or (1024 if on_cpu else 8192),
                      child_timeout_s=FLAGS.lever_child_timeout_s)
  _write_report(report, levers_markdown(report))


def main(argv):
  del argv   # cli.run refuses positional arguments
  try:
    steps = [int(s) for s in FLAGS.steps]
    members = [int(m) for m in FLAGS.members]
  except ValueError:
    print('error: --steps and --members must be comma-separated integers', file=sys.stderr)
    sys.exit(2)
  if FLAGS.gpu_levers:
    main_levers()
    return
  on_cpu = jax.devices()[0].platform == 'cpu'
  kwargs = dict(agent_names=FLAGS.agents, sizes=FLAGS.sizes, dtypes=FLAGS.dtypes, steps=steps,
                members=members, sweep_steps=FLAGS.sweep_steps, rounds=FLAGS.rounds,
                window_s=FLAGS.min_time, budget_s=FLAGS.budget_s,
                matmul_size=FLAGS.matmul_size or (2048 if on_cpu else 8192),
                sample_batch=FLAGS.sample_batch)
  if FLAGS.quick:
    kwargs.update(sizes=['small'], steps=[1, 10], members=[1, 2], rounds=2,
                  window_s=min(FLAGS.min_time, 0.2), matmul_size=FLAGS.matmul_size or 1024)
  if FLAGS.gpu:
    preset = dict(GPU_PRESET)
    kwargs.update(agent_names=list(preset['agents']), sizes=[FLAGS.gpu_size],
                  dtypes=list(preset['dtypes']), steps=list(preset['steps']),
                  members=list(preset['members']), sweep_steps=preset['sweep_steps'],
                  rounds=preset['rounds'], window_s=preset['window_s'],
                  budget_s=FLAGS.budget_s or preset['budget_s'],
                  matmul_size=FLAGS.matmul_size or preset['matmul_size'], sample_batch=0)
  problems = [f'--sizes: unknown {s!r}' for s in kwargs['sizes'] if s not in SIZES]
  problems += [f'--agents: unknown {a!r}' for a in kwargs['agent_names']
               if a not in agents_lib.AGENT_MODULES]
  problems += [f'--dtypes: unknown {d!r}' for d in kwargs['dtypes']
               if d not in networks.COMPUTE_DTYPES]
  if min(steps + members + [kwargs['sweep_steps'], kwargs['rounds']]) < 1:
    problems.append('--steps, --members, --sweep_steps and --rounds must be >= 1')
  if not FLAGS.min_time > 0 or FLAGS.sample_batch < 0 or FLAGS.matmul_size < 0:
    problems.append('--min_time must be > 0, --sample_batch and --matmul_size >= 0')
  if problems:
    print(f'error: {problems[0]} (sizes {sorted(SIZES)}, agents '
          f'{sorted(agents_lib.AGENT_MODULES)}, dtypes {sorted(networks.COMPUTE_DTYPES)})',
          file=sys.stderr)
    sys.exit(2)
  if FLAGS.cpu_table:
    report = run_cpu_table(kwargs['agent_names'], kwargs['budget_s'], kwargs['rounds'],
                           kwargs['window_s'], kwargs['matmul_size'])
    report['settings']['sample_batch'] = 0
  else:
    report = run(**kwargs)
  _write_report(report, markdown_table(report))


if __name__ == '__main__':
  cli.run(main, FLAGS)
