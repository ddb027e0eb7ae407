"""Checkpoints: exact round trip, corrupted/partial fallback, exact resume after kill -9/SIGTERM."""
import csv
import glob
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

from absl import logging as absl_logging
import flax.serialization
import jax
import numpy as np
import pytest

from experiments.configs import lps as lps_config
from lps_jax import agents, checkpoint, engine, tasks
from lps_jax.data import dataset as dataset_lib
from conftest import cli_env

REPO = pathlib.Path(__file__).resolve().parents[1]
FAULT_ENV = 'LPS_JAX_FAULT_AT_STEP'




def start_main(args, **env):
  return subprocess.Popen([sys.executable, '-m', 'lps_jax.main', *args], cwd=REPO,
                          env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def finish(proc, timeout=120):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def state_of(agent):
  return jax.device_get(flax.serialization.to_state_dict(agent))


def assert_trees_equal(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------- in process
class absl_logging_captured:
  """Collects absl warnings (the logger the checkpoint module warns through)."""

  def __enter__(self):
    import logging  # pylint: disable=g-import-not-at-top
    self.lines, self._logger = [], absl_logging.get_absl_logger()
    self._handler = logging.Handler()
    self._handler.emit = lambda record: self.lines.append(record.getMessage())
    self._logger.addHandler(self._handler)
    return self.lines

  def __exit__(self, *exc):
    self._logger.removeHandler(self._handler)


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """A tiny LPS agent trained 3 x 2 steps, checkpointed at steps 2, 4, 6 (kept on disk once)."""
  config = lps_config.get_config('test')
  task = tasks.make_task(config)
  make = lambda: agents.get_agent_class('lps').create(0, task.observation_dim, task.action_dim,
                                                      config.agent)
  data = dataset_lib.to_device(task.transitions, 1)
  train_fn = engine.make_train_fn(2)
  directory = str(tmp_path_factory.mktemp('saved') / 'checkpoints')
  agent, states = make(), {}
  # Restore targets share the trained agent's static fields (tx, apply_fn), so the restored
  # agents hit train_fn's jit cache; a copy, since train_fn donates the agent's buffers.
  template = jax.tree.map(jax.numpy.copy, agent)
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=3)
  for step in (2, 4, 6):
    agent, _ = train_fn(agent, data)
    ckpt.save(step, agent)                # async; the next train_fn call donates `agent`
    states[step] = state_of(agent)
  ckpt.close()
  return dict(make=lambda: template, data=data, train_fn=train_fn, directory=directory,
              states=states, last=jax.device_get(agent))


def copy_of(saved, tmp_path):
  directory = str(tmp_path / 'checkpoints')
  shutil.copytree(saved['directory'], directory)
  return directory


def test_restore_is_exact_and_continues_identically(saved, tmp_path):
  restored, step = checkpoint.Checkpointer(copy_of(saved, tmp_path)).restore(saved['make']())
  assert step == 6
  assert type(restored).__name__ == 'LPSAgent' and restored.config.batch_size == 16
  assert_trees_equal(state_of(restored), saved['states'][6])  # params, Adam + lr, targets, rng
  assert int(restored.flow.step) == 6
  assert float(restored.flow.opt_state.hyperparams['learning_rate']) == pytest.approx(3e-4)
  # The restored agent trains on exactly like the original (its rng drives the batch sampler).
  continued, _ = saved['train_fn'](restored, saved['data'])
  original, _ = saved['train_fn'](jax.tree.map(jax.numpy.asarray, saved['last']), saved['data'])
  assert_trees_equal(state_of(continued), state_of(original))


def test_truncated_latest_falls_back_with_warning(saved, tmp_path):
  directory = copy_of(saved, tmp_path)
  files = [f for f in glob.glob(f'{directory}/6/**/*', recursive=True) if os.path.isfile(f)]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.truncate(os.path.getsize(biggest) // 2)
  os.makedirs(f'{directory}/8.orbax-checkpoint-tmp')        # a save killed half-way

  ckpt = checkpoint.Checkpointer(directory)
  with absl_logging_captured() as lines:
    restored, step = ckpt.restore(saved['make']())
  assert step == 4
  assert_trees_equal(state_of(restored), saved['states'][4])
  text = '\n'.join(lines)
  assert 'checkpoints/6 is corrupted or partial' in text and 'falling back' in text
  assert '8.orbax-checkpoint-tmp was never completed' in text
  # Nothing deleted: both moved to checkpoints.bad/.
  assert sorted(b.split('.')[0] for b in os.listdir(tmp_path / 'checkpoints.bad')) == ['6', '8']
  assert sorted(os.listdir(directory)) == ['2', '4']
  # The run saves step 6 again.
  agent, _ = saved['train_fn'](restored, saved['data'])
  ckpt.save(6, agent)
  ckpt.close()
  assert sorted(os.listdir(directory)) == ['2', '4', '6']


def test_fingerprint_mismatch_is_detected(saved, tmp_path):
  """Bytes that orbax reads without complaint but that differ from what was saved."""
  directory = copy_of(saved, tmp_path)
  meta_path = f'{directory}/6/meta/metadata'
  with open(meta_path) as f:
    meta = json.load(f)
  meta['fingerprint'][0] = (meta['fingerprint'][0] + 1) % 2**32
  with open(meta_path, 'w') as f:
    json.dump(meta, f)
  with absl_logging_captured() as lines:
    restored, step = checkpoint.Checkpointer(directory).restore(saved['make']())
  assert step == 4 and any('fingerprint mismatch' in line for line in lines)
  assert_trees_equal(state_of(restored), saved['states'][4])


def test_checkpoint_of_another_agent_is_refused_not_moved(saved, tmp_path):
  directory = copy_of(saved, tmp_path)
  template = saved['make']()
  other = template.replace(hparams={**template.hparams, 'alpha': jax.numpy.float32(1.0)})
  with pytest.raises(checkpoint.IncompatibleCheckpointError,
                     match=r"only in agent \['hparams.alpha'\]"):
    checkpoint.Checkpointer(directory).restore(other)
  assert sorted(os.listdir(directory)) == ['2', '4', '6']
  assert not os.path.exists(tmp_path / 'checkpoints.bad')


def test_all_checkpoints_corrupted_is_an_error(saved, tmp_path):
  directory = copy_of(saved, tmp_path)
  for path in glob.glob(f'{directory}/*/state/_METADATA'):
    with open(path, 'w') as f:
      f.write('{')
  with pytest.raises(checkpoint.CheckpointError, match='no readable checkpoint'):
    checkpoint.Checkpointer(directory).restore(saved['make']())
  assert len(os.listdir(tmp_path / 'checkpoints.bad')) == 3


RESTORE_IN_A_FRESH_PROCESS = """
import sys
from lps_jax import checkpoint
try:                   # no checkpoint is readable, so the template is never filled
  checkpoint.Checkpointer(sys.argv[1]).restore({})
except checkpoint.CheckpointError as e:
  print(f'error: {e}', file=sys.stderr)
"""


def test_unreadable_checkpoints_leave_only_our_lines_on_stderr(saved, tmp_path):
  """Orbax abandons the reads of an unreadable checkpoint; their failures (dozens of 'Event loop
  is closed' tracebacks and asyncio errors) must not reach stderr: one warning per checkpoint
  moved aside, then the error."""
  directory = copy_of(saved, tmp_path)
  for path in glob.glob(f'{directory}/*/state/**/d/*', recursive=True):
    open(path, 'w').close()                 # every array file emptied
  res = subprocess.run([sys.executable, '-c', RESTORE_IN_A_FRESH_PROCESS, directory], cwd=REPO,
                       env=cli_env(), capture_output=True, text=True, timeout=300)
  lines = res.stderr.splitlines()
  assert len(lines) == 4, res.stderr[-3000:]
  assert all('is corrupted or partial' in line for line in lines[:3])
  assert lines[3].startswith('error: no readable checkpoint')


# ---------------------------------------------------------------------------------- CLI
RUN_ARGS = ['--config=experiments/configs/lps.py:test', '--num_steps=40', '--log_interval=2',
            '--eval_interval=20', '--config.checkpoint_interval=8', '--progress=false',
            '--tensorboard=false']


@pytest.fixture(scope='module')
def interrupted(tmp_path_factory):
  """An uninterrupted run, and beside it one run of the same command that gets SIGTERM at step
  14, is resumed, gets SIGKILL at step 26, and is resumed again to the end."""
  root = tmp_path_factory.mktemp('resume')
  ref, run = str(root / 'ref'), str(root / 'run')
  ref_proc = start_main(RUN_ARGS + [f'--workdir={ref}'])
  stages = {'term': finish(start_main(RUN_ARGS + [f'--workdir={run}'], **{FAULT_ENV: '14:TERM'}))}
  stages['term_checkpoints'] = sorted(os.listdir(os.path.join(run, 'checkpoints')))
  stages['kill'] = finish(start_main(RUN_ARGS + [f'--workdir={run}', '--resume'],
                                     **{FAULT_ENV: '26:KILL'}))
  stages['final'] = finish(start_main(RUN_ARGS + [f'--workdir={run}', '--resume']))
  stages['ref'] = finish(ref_proc)
  return ref, run, stages


def _train_rows(workdir):
  with open(os.path.join(workdir, 'train.csv')) as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    del row['steps_per_second']     # wall-clock, differs between runs
  return rows


def test_uninterrupted_reference(interrupted):
  ref, _, stages = interrupted
  rc, _, err = stages['ref']
  assert rc == 0, err
  assert os.path.exists(os.path.join(ref, 'final.json'))


def test_sigterm_saves_a_checkpoint_and_exits_75(interrupted):
  _, _, stages = interrupted
  rc, _, err = stages['term']
  assert rc == 75, err
  lines = [line for line in err.splitlines() if line.strip()]
  assert lines[-1].startswith('preempted: SIGTERM at step 14: saved checkpoint')
  assert stages['term_checkpoints'] == ['14', '8']           # complete, not *-tmp


def test_kill9_mid_run_then_resume(interrupted):
  _, _, stages = interrupted
  rc, out, err = stages['kill']
  assert 'resuming' in err and 'from step 14' in err
  assert rc == -signal.SIGKILL
  assert 'step 20:' in out and 'step 40:' not in out          # killed between the two evals
  rc, _, err = stages['final']
  assert rc == 0, err
  assert 'resuming' in err            # from step 24 or 16, whichever async save had committed
  assert 'taking over the stale lock' in err     # the killed run's <workdir>.lock


def test_resumed_run_is_bit_identical_to_uninterrupted(interrupted):
  ref, run, _ = interrupted
  expected, _ = checkpoint.load_state_dict(os.path.join(ref, 'checkpoints'))
  got, step = checkpoint.load_state_dict(os.path.join(run, 'checkpoints'))
  assert step == 40
  assert_trees_equal(got, expected)          # params, Adam moments + lr, targets, rng, counters
  # Metrics read exactly like the uninterrupted run: rows after the checkpoint were rewritten.
  assert _train_rows(run) == _train_rows(ref)
  with open(os.path.join(run, 'eval.csv')) as a, open(os.path.join(ref, 'eval.csv')) as b:
    assert a.read() == b.read()
  steps = lambda d: [json.loads(line)['step'] for line in open(os.path.join(d, 'metrics.jsonl'))]
  assert steps(run) == steps(ref)


SAVE_ON_TWO_DEVICES = """
import sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from lps_jax import checkpoint
assert jax.device_count() == 2
mesh = Mesh(np.array(jax.devices()), ('data',))
state = {'sharded': jax.device_put(jnp.arange(8.0).reshape(4, 2), NamedSharding(mesh, P('data'))),
         'replicated': jax.device_put(jnp.arange(3, dtype=jnp.uint32), NamedSharding(mesh, P()))}
ckpt = checkpoint.Checkpointer(sys.argv[1])
ckpt._manager.save(7, args=checkpoint.ocp.args.Composite(
    state=checkpoint.ocp.args.StandardSave(state),
    meta=checkpoint.ocp.args.JsonSave({'step': 7, 'fingerprint': checkpoint.fingerprint(state)})))
ckpt.close()
"""


def test_load_state_dict_reads_a_checkpoint_written_on_another_device_count(tmp_path):
  """Written on 2 devices (one array sharded over them), read here on 1: restored onto the
  current devices (no 'Topology mismatch')."""
  env = cli_env(XLA_FLAGS='--xla_force_host_platform_device_count=2')
  res = subprocess.run([sys.executable, '-c', SAVE_ON_TWO_DEVICES, str(tmp_path / 'ckpt')],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-2000:]
  if jax.device_count() == 2:
    pytest.skip('this process has 2 devices too')
  state, step = checkpoint.load_state_dict(str(tmp_path / 'ckpt'))
  assert step == 7
  np.testing.assert_array_equal(state['sharded'], np.arange(8.0).reshape(4, 2))
  np.testing.assert_array_equal(state['replicated'], np.arange(3, dtype=np.uint32))
  assert state['replicated'].dtype == np.uint32
