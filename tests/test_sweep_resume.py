"""Vmapped sweeps survive preemption: SIGTERM and kill -9 at (seeded) random call boundaries of a
4-member sweep, on one device and with the members split over 2 devices (resumed on the other
device count); after --resume every member (every leaf) and every logged row is bit-identical
to an uninterrupted sweep. A member directory is refused by lps_jax.main."""
import csv
import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.configs import lps as lps_config
from lps_jax import checkpoint, main, rundir
from lps_jax import vmap_sweep as sweep_lib
from conftest import cli_env

REPO = pathlib.Path(__file__).resolve().parents[1]
FAULT_ENV = 'LPS_JAX_FAULT_AT_STEP'
NUM_STEPS, EVAL_INTERVAL, CHECKPOINT_INTERVAL = 24, 8, 6     # calls of K = 2 steps
SEEDS = [0, 1, 2, 3]
ARGS = ['--config=experiments/configs/lps.py:test', f'--seeds={",".join(map(str, SEEDS))}',
        f'--num_steps={NUM_STEPS}', f'--config.eval_interval={EVAL_INTERVAL}',
        f'--config.checkpoint_interval={CHECKPOINT_INTERVAL}', '--progress=false']
TWO_DEVICES = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
WALL_CLOCK = ('steps_per_second', 'run')      # columns that differ between two sweeps


def _points():
  """Fault steps drawn once from a fixed seed: (TERM, KILL) for each chain, KILL after TERM."""
  rng = random.Random(29)
  boundaries = list(range(2, NUM_STEPS, 2))
  pick = lambda: sorted(rng.sample(boundaries, 2))
  return pick(), pick()


(TERM_1, KILL_1), (KILL_2, TERM_2) = _points()


def start(workdir, *extra, env=None, fault=None):
  env = cli_env(**(env or {}), **({FAULT_ENV: fault} if fault else {}))
  return subprocess.Popen([sys.executable, '-m', 'lps_jax.vmap_sweep', *ARGS,
                           f'--workdir={workdir}', *extra], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=240):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


@pytest.fixture(scope='module')
def chains(tmp_path_factory):
  """Chain 1 (one device): SIGTERM at TERM_1 -> --resume, kill -9 at KILL_1 -> --resume to the
  end. Chain 2 (members split over 2 devices, --sweep_axis=2): kill -9 at KILL_2 -> --resume on
  ONE device, SIGTERM at TERM_2 -> --resume on 2 devices to the end. The two chains (one
  stage after another) and the uninterrupted reference sweep run side by side."""
  root = tmp_path_factory.mktemp('sweeps')
  one, two = str(root / 'one'), str(root / 'two')
  stages = {
      'one': [dict(fault=f'{TERM_1}:TERM'), dict(resume=True, fault=f'{KILL_1}:KILL'),
              dict(resume=True)],
      'two': [dict(two=True, fault=f'{KILL_2}:KILL'), dict(resume=True, fault=f'{TERM_2}:TERM'),
              dict(two=True, resume=True)],
  }
  results = {'one': [], 'two': []}
  checkpoints = {'one': [], 'two': []}

  def launch(name, stage):
    extra = (['--resume'] if stage.get('resume') else []) + (
        ['--sweep_axis=2'] if stage.get('two') else [])
    return start(one if name == 'one' else two, *extra, fault=stage.get('fault'),
                 env=TWO_DEVICES if stage.get('two') else None)

  running = {name: launch(name, stages[name][0]) for name in stages}
  reference = start(str(root / 'ref'))
  deadline = time.monotonic() + 600
  while running and time.monotonic() < deadline:
    time.sleep(0.2)
    for name, proc in list(running.items()):
      if proc.poll() is None:
        continue
      results[name].append(finish(proc))
      workdir = one if name == 'one' else two
      checkpoints[name].append(checkpoint.latest_step_on_disk(os.path.join(workdir,
                                                                           'checkpoints')))
      del running[name]
      if len(results[name]) < len(stages[name]):
        running[name] = launch(name, stages[name][len(results[name])])
  for proc in running.values():
    proc.kill()
  reference = finish(reference)
  return {'root': root, 'ref': str(root / 'ref'), 'one': one, 'two': two,
          'reference': reference, 'results': results, 'checkpoints': checkpoints}


def _rows(workdir, name):
  """A member's rows without the wall-clock columns: CSV as lists, JSONL as dicts."""
  path = os.path.join(workdir, name)
  if name.endswith('.jsonl'):
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
            for line in open(path)]
  with open(path, newline='') as f:
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in csv.DictReader(f)]


def _assert_same_members_and_rows(chains, name):
  expected, step = checkpoint.load_state_dict(os.path.join(chains['ref'], 'checkpoints'))
  got, got_step = checkpoint.load_state_dict(os.path.join(chains[name], 'checkpoints'))
  assert step == got_step == NUM_STEPS
  leaves, tree = jax.tree.flatten(got)
  expected_leaves, expected_tree = jax.tree.flatten(expected)
  assert tree == expected_tree
  for a, b in zip(leaves, expected_leaves):     # params, Adam moments + lr, targets, hparams,
    np.testing.assert_array_equal(a, b)         # rng, step counters of all 4 members
  for i in range(len(SEEDS)):
    member, ref = (sweep_lib.member_dir(chains[k], i) for k in (name, 'ref'))
    for stream in ('train.csv', 'eval.csv', 'metrics.jsonl'):
      assert _rows(member, stream) == _rows(ref, stream), (member, stream)
    assert [int(r['step']) for r in _rows(member, 'eval.csv')] == [8, 16, 24]
    assert len(_rows(member, 'train.csv')) == NUM_STEPS // 2
    assert rundir.read_final(member)['step'] == NUM_STEPS


def test_fault_points_are_drawn_reproducibly(chains):
  assert chains['reference'][0] == 0, chains['reference'][2]
  assert 2 <= TERM_1 < KILL_1 < NUM_STEPS and 2 <= KILL_2 < TERM_2 < NUM_STEPS
  # Seed chosen so that each kill comes after rows that no checkpoint covers (they must be
  # set aside on resume, then logged again).
  assert (KILL_1 - 2) % CHECKPOINT_INTERVAL and KILL_1 - 2 > TERM_1
  assert (KILL_2 - 2) % CHECKPOINT_INTERVAL


def test_one_device_sigterm_and_kill9_then_resume_is_bit_identical(chains):
  (rc1, _, err1), (rc2, _, err2), (rc3, out3, err3) = chains['results']['one']
  assert rc1 == 75, err1
  last = [line for line in err1.splitlines() if line.strip()][-1]
  assert last.startswith(f'preempted: SIGTERM at step {TERM_1}: saved the sweep checkpoint')
  assert last.endswith('--resume') and 'python -m lps_jax.vmap_sweep' in last
  assert chains['checkpoints']['one'][0] == TERM_1          # saved on SIGTERM, complete
  assert rc2 == -signal.SIGKILL and f'from step {TERM_1}' in err2, err2
  assert rc3 == 0, err3
  assert 'taking over the stale lock' in err3                # the killed run's <workdir>.lock
  assert len(json.loads(out3)) == len(SEEDS)
  _assert_same_members_and_rows(chains, 'one')


def test_two_devices_resumed_on_one_and_back_is_bit_identical(chains):
  (rc1, _, err1), (rc2, _, err2), (rc3, _, err3) = chains['results']['two']
  assert rc1 == -signal.SIGKILL, err1
  assert rc2 == 75 and f'SIGTERM at step {TERM_2}' in err2, err2      # on one device
  assert chains['checkpoints']['two'][1] == TERM_2
  assert rc3 == 0, err3                                                # on two devices
  _assert_same_members_and_rows(chains, 'two')


def test_rows_after_the_restored_step_are_set_aside_not_deleted(chains):
  """The killed stage logged rows after the checkpoint the next stage restored: they were
  moved to member_###/set_aside/, not deleted (and then logged again, identical)."""
  err = chains['results']['one'][2][2]
  restored = int(re.search(r'resuming the sweep \S+ from step (\d+)', err).group(1))
  assert TERM_1 <= restored < KILL_1
  logged_before_kill = list(range(restored + 2, KILL_1, 2))   # killed before logging KILL_1
  for i in range(len(SEEDS)):
    aside = os.path.join(sweep_lib.member_dir(chains['one'], i), 'set_aside')
    moved = [int(r['step']) for d in sorted(os.listdir(aside)) if logged_before_kill
             for r in _rows(os.path.join(aside, d), 'train.csv')] if os.path.isdir(aside) else []
    assert moved == logged_before_kill
  assert ('moved the' in err) == bool(logged_before_kill)


def test_second_sweep_on_the_dir_is_refused_and_member_dir_is_not_a_run(chains, tmp_path):
  config = lps_config.get_config('test')
  with pytest.raises(rundir.RunDirError, match='already holds a sweep; pass --resume'):
    sweep_lib.run_vmapped_sweep(config, [{'seed': s} for s in SEEDS], chains['ref'])
  with pytest.raises(rundir.RunDirError, match='this sweep differs'):
    sweep_lib.run_vmapped_sweep(config, [{'seed': 5}], chains['ref'], resume=True)
  # lps_jax.main on a member directory: refused (resume, fresh and overwrite), naming the
  # sweep and the exact command that resumes it; nothing is written.
  member = sweep_lib.member_dir(chains['one'], 1)
  before = {n: os.path.getmtime(os.path.join(member, n)) for n in os.listdir(member)}
  for kwargs in ({'resume': True}, {}, {'overwrite': True}):
    with pytest.raises(rundir.RunDirError) as error:
      main.train_and_evaluate(config, member, seed=1, **kwargs)
    message = str(error.value)
    assert '\n' not in message and f'member 1 of the vmapped sweep {chains["one"]}' in message
    assert message.endswith(f'--workdir={chains["one"]} --resume')
    assert 'python -m lps_jax.vmap_sweep --config=experiments/configs/lps.py:test' in message
  assert {n: os.path.getmtime(os.path.join(member, n)) for n in os.listdir(member)} == before
  assert not os.path.exists(member + '.lock')
