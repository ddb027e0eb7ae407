"""bench.py: loop-aware FLOP counts, the fused/unfused JSON, the time box, the GPU preset on CPU;
and sweep.py's one-member route to the plain engine."""
import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FULL_OPTIMIZATION, cli_env
from lps_jax import agents as agents_lib
from lps_jax import bench, engine
from lps_jax import vmap_sweep as sweep
from lps_jax.agents import fql
from lps_jax.data import dataset as dataset_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UnrolledFQL(fql.FQLAgent):
  """FQL with its Euler loop written out in Python: XLA sees every step (the reference)."""

  def flow_actions(self, observations, noises, flow_params=None):
    velocity = lambda *xs: self.flow(*xs, params=flow_params)
    zeros = jnp.zeros(noises.shape[:-1] + (1,), noises.dtype)
    x, num_steps = noises, self.config.flow_steps
    for k in range(num_steps):
      x = x + velocity(observations, x, zeros + k / num_steps, zeros) / num_steps
    return jnp.clip(x, -1.0, 1.0)


class RolledFQL(fql.FQLAgent):
  """FQL with its Euler loop as a plain (rolled) lax.scan: XLA counts the body once."""

  def flow_actions(self, observations, noises, flow_params=None):
    velocity = lambda *xs: self.flow(*xs, params=flow_params)
    zeros = jnp.zeros(noises.shape[:-1] + (1,), noises.dtype)
    num_steps = self.config.flow_steps

    def euler_step(x, k):
      return x + velocity(observations, x, zeros + k / num_steps, zeros) / num_steps, None

    x, _ = jax.lax.scan(euler_step, noises, jnp.arange(num_steps, dtype=noises.dtype))
    return jnp.clip(x, -1.0, 1.0)


@pytest.fixture(scope='module')
def tiny_data():
  transitions = bench.synthetic_transitions(2_000)
  return transitions, dataset_lib.to_device(transitions, bench.HORIZON)


def _xla_update_flops(agent, data):
  fn = functools.partial(engine.train_steps, num_steps=1)
  return bench.xla_flops(jax.jit(fn).lower(agent, data).compile())


def test_loop_aware_flops_counts_a_scan_by_its_trip_count():
  n, trips, outer = 32, 7, 3
  w = jnp.ones((n, n))

  def looped(x):
    return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=trips)[0]

  def nested(x):
    return jax.lax.scan(lambda c, _: (looped(c), None), x, None, length=outer)[0]

  matmuls = trips * 2 * n ** 3
  counts = bench.loop_aware_flops(looped, jnp.ones((n, n)))
  assert matmuls <= counts['flops'] < 1.1 * matmuls
  assert counts['xla_body_once'] < 0.2 * matmuls          # what XLA alone reports
  counts = bench.loop_aware_flops(nested, jnp.ones((n, n)))
  assert outer * matmuls <= counts['flops'] < 1.1 * outer * matmuls


@pytest.fixture(scope='module')
def fql_reference_flops(tiny_data):
  """XLA's count of one tiny FQL update whose Euler loop is written out (no loop to miss)."""
  agent = UnrolledFQL.create(0, bench.OBSERVATION_DIM, bench.ACTION_DIM * bench.HORIZON,
                             bench.agent_config('fql', 'tiny'))
  return _xla_update_flops(agent, tiny_data[1])


def test_rolled_scan_flops_match_an_unrolled_copy(tiny_data, fql_reference_flops):
  agent = RolledFQL.create(0, bench.OBSERVATION_DIM, bench.ACTION_DIM * bench.HORIZON,
                           bench.agent_config('fql', 'tiny'))
  counts = bench.update_flops(agent, tiny_data[1])
  assert counts['flops'] == pytest.approx(fql_reference_flops, rel=0.01)
  assert counts['xla_body_once'] < 0.9 * fql_reference_flops   # XLA alone under-counts it


def test_bench_json_has_ratios_and_loop_aware_flops(fql_reference_flops):
  # Timed at XLA's default optimisation level, as the benchmark runs outside the tests.
  report = bench.run(['fql'], ['tiny'], ['float32'], steps=[1, 10], members=[1, 2],
                     sweep_steps=2, rounds=2, window_s=0.05, matmul_size=128, log=lambda m: None,
                     compiler_options=FULL_OPTIMIZATION)
  (entry,) = report['results']
  assert set(entry['fused_over_unfused']) == {'K=1', 'K=10'}
  assert set(entry['sweep_over_unfused']) == {'N=1', 'N=2'}
  assert entry['agent_steps_per_s']['unfused'] > 0 and entry['rounds_timed'] == 2
  for ratio in [*entry['fused_over_unfused'].values(), *entry['sweep_over_unfused'].values()]:
    assert ratio > 0 and np.isfinite(ratio)
  # Tiny nets are dispatch-bound: 10 fused updates per call beat one jit call per update
  # (measured 7-10x on a loaded CPU), whatever the load, since the two are interleaved.
  assert entry['fused_over_unfused']['K=10'] > 1.5
  assert set(entry['share_of_peak']) == {'unfused', 'K=1', 'K=10', 'N=1', 'N=2'}
  # The shipped FQL agent (whatever form its Euler loop takes) is counted in full.
  assert entry['flops_per_update'] == pytest.approx(fql_reference_flops, rel=0.01)
  # Kernels per update from the compiled HLO: fused K and the N-member step alike.
  assert set(entry['kernels_per_update']) == {'K=1', 'K=10', 'N=1', 'N=2'}
  assert all(k > 10 for k in entry['kernels_per_update'].values())
  assert len(report['load_average_at_start']) == 3
  json.dumps(report)


def test_budget_skips_and_records():
  report = bench.run(['lps', 'fql'], ['tiny'], ['float32'], steps=[1], members=[1],
                     budget_s=1e-9, log=lambda m: None)
  assert report['results'] == []
  assert report['skipped'] == ['lps/tiny/float32 (budget)', 'fql/tiny/float32 (budget)']


def test_host_sampler_matches_device_sampler_semantics(tiny_data):
  transitions, data = tiny_data
  sampler = bench.HostSampler(transitions, 64, bench.HORIZON, 0.99, seed=1)
  batch = sampler.sample()
  device_batch = dataset_lib.sample_batch(data, jax.random.PRNGKey(0), 64, bench.HORIZON, 0.99)
  assert {k: v.shape for k, v in batch.items()} == {k: v.shape for k, v in device_batch.items()}
  # rewards are all -1 or 0: a discounted chunk sum stays within [-sum gamma^k, 0]
  assert np.all(batch['rewards'] <= 0) and np.all(batch['rewards'] >= -5)
  # each chunk's first observation is the row of its first action
  row = np.flatnonzero((transitions['observations'] == batch['observations'][0]).all(1))[0]
  np.testing.assert_array_equal(batch['actions'][0, :bench.ACTION_DIM], transitions['actions'][row])


def _dot_shapes(fn, *args):
  return sorted(tuple(eqn.outvars[0].aval.shape) for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns
                for eqn in _walk(eqn) if eqn.primitive.name == 'dot_general')


def _walk(eqn):
  yield eqn
  for value in eqn.params.values():
    for sub in (value if isinstance(value, (tuple, list)) else [value]):
      inner = getattr(sub, 'jaxpr', sub)
      for sub_eqn in getattr(inner, 'eqns', []):
        yield from _walk(sub_eqn)


def test_one_member_sweep_runs_the_plain_engine(tiny_data):
  _, data = tiny_data
  config = bench.agent_config('lps', 'tiny')
  agent = agents_lib.get_agent_class('lps').create(0, bench.OBSERVATION_DIM,
                                                   bench.ACTION_DIM * bench.HORIZON, config)
  stacked = sweep.stack([agent])
  vmapped = sweep.make_vmapped_train_fn(2)
  plain = functools.partial(engine.train_steps, num_steps=2)
  # Same matmuls as the plain engine: no leading member axis of 1 on any of them.
  assert _dot_shapes(vmapped, stacked, data) == _dot_shapes(plain, agent, data)
  new_stacked, metrics = vmapped(jax.tree.map(jnp.copy, stacked), data)
  new_agent, plain_metrics = engine.make_train_fn(2)(jax.tree.map(jnp.copy, agent), data)
  assert jax.tree.leaves(new_stacked)[0].shape[0] == 1
  for name, value in plain_metrics.items():
    assert metrics[name].shape == (1,)
    np.testing.assert_allclose(metrics[name][0], value, rtol=1e-5)


def test_gpu_preset_runs_on_cpu_at_tiny_size(tmp_path):
  out = tmp_path / 'gpu.json'
  # The preset's own 85 s box is the GPU's; here a 30 s box (--budget_s overrides it) still has
  # to finish at least the first (agent, dtype) entry and account for the rest.
  assert bench.GPU_PRESET['budget_s'] == 85.0
  proc = subprocess.run([sys.executable, '-m', 'lps_jax.bench', '--gpu', '--gpu_size=tiny',
                         '--matmul_size=128', '--budget_s=30', f'--output={out}'], cwd=REPO,
                        env=cli_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(out.read_text())
  assert report['settings']['budget_s'] == 30.0
  done = {(e['agent'], e['compute_dtype']) for e in report['results']}
  skipped = report['skipped']
  assert done and len(done) + len(skipped) == 4
  for entry in report['results']:
    assert entry['size'] == 'tiny'
    assert set(entry['fused_over_unfused']) | {s.split(' ')[0] for s in entry['skipped']} >= {'K=100'}
    assert set(entry['sweep_over_unfused']) | {s.split(' ')[0] for s in entry['skipped']} >= {'N=32'}


def test_bad_flags_exit_2_in_one_line():
  proc = subprocess.run([sys.executable, '-m', 'lps_jax.bench', '--sizes=huge'], cwd=REPO,
                        env=cli_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().count('\n') == 0 and 'huge' in proc.stderr


# ---------------------------------------------------------------------------------- kernels
HLO_SNIPPET = '''HloModule jit_f, entry_computation_layout={(f32[4]{0})->f32[4]{0}}

%fused_add (param_0: f32[4]) -> f32[4] {
  %param_0 = f32[4]{0} parameter(0)
  ROOT %add = f32[4]{0} add(%param_0, %param_0)
}

%body (arg: (s32[], f32[4])) -> (s32[], f32[4]) {
  %arg = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%arg), index=0
  %x = f32[4]{0} get-tuple-element(%arg), index=1
  %gemm = f32[4]{0} custom-call(%x), custom_call_target="__cublas$gemm"
  %next = f32[4]{0} fusion(%gemm), kind=kLoop, calls=%fused_add
  %one = s32[] constant(1)
  %j = s32[] add(%i, %one)
  ROOT %t = (s32[], /*index=1*/f32[4]{0}) tuple(%j, %next)
}

%cond (arg.1: (s32[], f32[4])) -> pred[] {
  %arg.1 = (s32[], f32[4]{0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%arg.1), index=0
  %n = s32[] constant(7)
  ROOT %lt = pred[] compare(%i.1, %n), direction=LT
}

ENTRY %main (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0), metadata={op_name="x" source_file="a.py"}
  %copy = f32[4]{0} copy(%p)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4]{0}) tuple(%zero, %copy)
  %loop = (s32[], f32[4]{0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"7"}}
  ROOT %out = f32[4]{0} get-tuple-element(%loop), index=1
}
'''


def test_count_kernels_parses_hlo_and_counts_loop_bodies_per_trip():
  counts = bench.count_kernels(HLO_SNIPPET)
  # entry: 1 copy; body (x7): custom-call, fusion, add; condition (x8): compare.
  assert counts['kernels'] == 1 + 7 * 3 + 8 * 1
  assert counts['by_opcode'] == {'add': 7, 'custom-call': 7, 'fusion': 7, 'copy': 1,
                                 'compare': 8}
  assert counts['loops'] == [{'trip_count': 7, 'body': 3}] and counts['unknown_trip_loops'] == 0
  no_trip_count = HLO_SNIPPET.replace(', backend_config={"known_trip_count":{"n":"7"}}', '')
  assert bench.count_kernels(no_trip_count)['unknown_trip_loops'] == 1


def test_count_kernels_of_a_compiled_scan_grows_by_the_body_per_iteration():
  w = jnp.ones((8, 8))

  def program(length):
    fn = lambda x: jax.lax.scan(lambda c, _: (jnp.tanh(c @ w) + 1.0, None), x, None,
                                length=length)[0]
    return bench.update_kernels(jax.jit(fn).lower(jnp.ones((8, 8))).compile(), length)

  three, seven = program(3), program(7)
  loop3 = [l for l in three['loops'] if l['trip_count'] == 3]
  assert loop3 and loop3[0]['body'] >= 1          # at least the matmul in the body
  per_trip = (seven['kernels'] - three['kernels']) / 4
  assert per_trip >= loop3[0]['body']             # body (+ condition) per iteration
  assert seven['per_update'] == seven['kernels'] / 7


def test_gpu_levers_preset_runs_on_cpu_at_tiny_size(tmp_path):
  """The lever preset at tiny size: an in-process lever beside the base row, and an XLA lever
  in a child process (GPU flags are accepted and ignored on a CPU)."""
  out = tmp_path / 'levers.json'
  proc = subprocess.run([sys.executable, '-m', 'lps_jax.bench', '--gpu_levers', '--gpu_size=tiny',
                         '--agents=lps', '--lever_rows=base,unroll2', '--lever_xla=cmdbuf_off',
                         '--rounds=1', '--min_time=0.05', '--matmul_size=64', '--budget_s=300',
                         f'--output={out}'], cwd=REPO, env=cli_env(), capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(out.read_text())
  rows = {r['lever']: r for r in report['rows']}
  assert set(rows) == {'base', 'unroll2', 'cmdbuf_off:base'}, report['skipped']
  assert rows['unroll2']['over_base'] > 0 and rows['unroll2']['expected']
  assert rows['cmdbuf_off:base']['env'] == {'XLA_FLAGS': '--xla_gpu_enable_command_buffer='}
  assert rows['cmdbuf_off:base']['child_xla_flags'].endswith('--xla_gpu_enable_command_buffer=')
  assert rows['cmdbuf_off:base']['over_base_other_process'] > 0
  for row in rows.values():
    assert row['agent'] == 'lps' and row['agent_steps_per_s'] > 0
    assert row['kernels_per_update'] > 10
    if 'flops_per_update' in row:      # (the FLOP count's compile is left out if time is short)
      assert 0 < row['share_of_peak']
    else:
      assert any(s.endswith('lps flops (budget)') for s in report['skipped'])
  assert '| lps | unroll2 |' in proc.stderr


def test_gpu_levers_bad_names_exit_2_in_one_line():
  proc = subprocess.run([sys.executable, '-m', 'lps_jax.bench', '--gpu_levers',
                         '--lever_rows=base,warp_drive'], cwd=REPO, env=cli_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and proc.stderr.strip().count('\n') == 0
  assert 'warp_drive' in proc.stderr
