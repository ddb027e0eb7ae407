"""Generator tests (tiny: a few 60-step cube-single-play episodes, one short pointmaze episode)."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from lps_jax.data import generate as gen
from lps_jax.data.ogbench_data import load_ogbench_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = 'cube-single-play-v0'
STEPS = 60
N_TRAIN, N_VAL = 2, 1

warnings.filterwarnings('ignore')


def _load(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope='module')
def gen_w1(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('w1'))
    stats = gen.generate_dataset(NAME, N_TRAIN, out, seed=3, workers=1, steps_per_episode=STEPS,
                                 val_episodes=N_VAL, progress=False)
    return out, stats


@pytest.fixture(scope='module')
def gen_w2(tmp_path_factory):
    """Same seed through the CLI with 2 worker processes."""
    out = str(tmp_path_factory.mktemp('w2'))
    cmd = [sys.executable, '-m', 'lps_jax.data.generate', f'--env={NAME}', f'--episodes={N_TRAIN}', f'--out={out}',
           '--seed=3', '--workers=2', f'--steps_per_episode={STEPS}', f'--val_episodes={N_VAL}', '--no_progress']
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'transitions/s' in res.stdout
    return out


def test_official_format(gen_w1):
    out, stats = gen_w1
    train_path, val_path = gen.output_paths(NAME, out)
    assert stats['train_path'] == train_path and stats['train_steps'] == N_TRAIN * STEPS
    for path, n_eps in ((train_path, N_TRAIN), (val_path, N_VAL)):
        d = _load(path)
        # Keys and dtypes of OGBench's published files (generate_manipspace.py).
        assert set(d) == {'observations', 'actions', 'terminals', 'qpos', 'qvel'}
        assert d['observations'].dtype == np.float32 and d['actions'].dtype == np.float32
        assert d['qpos'].dtype == np.float32 and d['qvel'].dtype == np.float32
        assert d['terminals'].dtype == bool
        n = n_eps * STEPS
        assert d['observations'].shape == (n, 28) and d['actions'].shape == (n, 5)
        assert d['qpos'].shape == (n, 21) and d['qvel'].shape == (n, 20)
        # One terminal at the end of every episode, nowhere else.
        assert np.array_equal(np.flatnonzero(d['terminals']), np.arange(STEPS - 1, n, STEPS))
        assert np.abs(d['actions']).max() <= 1.0
        assert np.isfinite(d['observations']).all()


def test_qpos_is_state_of_same_row(gen_w1):
    """qpos[i] is the simulator state of observations[i] (info['prev_qpos']), as in the official data."""
    d = _load(gen.output_paths(NAME, gen_w1[0])[0])
    block_xyz_from_obs = d['observations'][:, 19:22] / 10.0 + np.array([0.425, 0.0, 0.0])
    np.testing.assert_allclose(block_xyz_from_obs, d['qpos'][:, 14:17], atol=1e-5)


def test_moves_the_cube(gen_w1):
    """The plan oracle actually manipulates the cube (not a no-op policy)."""
    d = _load(gen.output_paths(NAME, gen_w1[0])[0])
    assert np.abs(d['actions']).mean() > 0.01
    assert np.ptp(d['observations'][:, 12:15], axis=0).max() > 0.1  # Effector moves.


def test_deterministic_across_workers(gen_w1, gen_w2):
    for a_path, b_path in zip(gen.output_paths(NAME, gen_w1[0]), gen.output_paths(NAME, gen_w2)):
        a, b = _load(a_path), _load(b_path)
        assert set(a) == set(b)
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_seed_changes_data():
    eps0 = gen.generate_episodes(NAME, 1, seed=3, steps_per_episode=10, progress=False)
    eps1 = gen.generate_episodes(NAME, 1, seed=4, steps_per_episode=10, progress=False)
    assert not np.array_equal(eps0[0]['observations'], eps1[0]['observations'])
    # Same (seed, index) -> same episode; episode seeds are a pure function of (seed, index).
    again = gen.generate_episodes(NAME, 1, seed=3, steps_per_episode=10, progress=False)
    assert np.array_equal(eps0[0]['actions'], again[0]['actions'])
    assert gen.episode_seed(3, 0) != gen.episode_seed(3, 1) != gen.episode_seed(4, 0)


def test_loader_reads_generated(gen_w1):
    out = gen_w1[0]
    ds = load_ogbench_file(gen.output_paths(NAME, out)[0], obs_dim=28, act_dim=5)
    assert ds['observations'].shape == (N_TRAIN * (STEPS - 1), 28)
    assert ds['terminals'].sum() == N_TRAIN


def test_refuses_overwrite(gen_w1, capsys):
    out = gen_w1[0]
    train_path = gen.output_paths(NAME, out)[0]
    before = os.stat(train_path).st_mtime_ns
    rc = gen.main([f'--env={NAME}', '--episodes=1', f'--out={out}', '--workers=1', '--steps_per_episode=5'])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and train_path in err and '--overwrite' in err
    assert os.stat(train_path).st_mtime_ns == before
    with pytest.raises(gen.GenerateError):
        gen.generate_dataset(NAME, 1, out, steps_per_episode=5, progress=False)


def test_bad_names():
    for bad in ('antmaze-large-navigate-v0', 'cube-single-v0', 'cube-single-stitch-v0'):
        with pytest.raises(gen.GenerateError):
            gen.parse_dataset_name(bad)
    assert gen.parse_dataset_name('puzzle-4x4-noisy-v0') == ('puzzle-4x4-v0', 'noisy')
    assert gen.default_settings('puzzle-4x4-v0', 'noisy')['p_random_action'] == 0.2


def test_pointmaze_oracle(tmp_path):
    name = 'pointmaze-medium-navigate-v0'
    stats = gen.generate_dataset(name, 1, str(tmp_path), seed=0, workers=1, steps_per_episode=40, progress=False)
    d = _load(stats['train_path'])
    assert set(d) == {'observations', 'actions', 'terminals', 'qpos', 'qvel'}
    assert d['observations'].shape == (40, 2) and d['actions'].shape == (40, 2)
    assert np.abs(d['actions']).max() <= 1.0 and d['terminals'][-1] and d['terminals'].sum() == 1
    # Noisy BFS follower: the agent drifts consistently (mean action norm well above pure noise's mean direction).
    assert np.linalg.norm(d['actions'].mean(axis=0)) > 0.2 or np.ptp(d['observations'], axis=0).max() > 1.0
    ds = load_ogbench_file(stats['train_path'], obs_dim=2, act_dim=2)
    np.testing.assert_array_equal(ds['next_observations'], d['observations'][1:])


# ---------------------------------------------------------------------------------- bad input
def _no_generation(*args, **kwargs):
  raise AssertionError('episodes were generated before the input was checked')


def test_out_that_is_a_file_is_refused_before_generating(tmp_path, monkeypatch, capsys):
  out = tmp_path / 'data.npz'
  out.write_text('not a directory')
  monkeypatch.setattr(gen, 'generate_episodes', _no_generation)
  rc = gen.main([f'--env={NAME}', '--episodes=1', f'--out={out}', '--workers=1'])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1 and 'is not a directory' in err, err
  assert out.read_text() == 'not a directory'
  with pytest.raises(gen.GenerateError):
    gen.generate_dataset(NAME, 1, str(out / 'sub'), progress=False)


def test_unknown_env_id_is_refused_before_workers_start(tmp_path, monkeypatch, capsys):
  def no_workers(*args, **kwargs):
    raise AssertionError('worker processes were started')
  monkeypatch.setattr(gen.mp, 'get_context', no_workers)
  monkeypatch.setattr(gen, '_worker_init', no_workers)
  rc = gen.main(['--env=cube-quadruple99-play-v0', '--episodes=2', f'--out={tmp_path / "o"}',
                 '--workers=2'])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1, err
  assert "unknown environment 'cube-quadruple99-v0'" in err and 'cube-quadruple-v0' in err
  assert not os.path.exists(tmp_path / 'o')


WORKER_FAILURE = '''
import sys
from lps_jax.data import generate as gen
gen.check_env_registered = lambda name: None   # let the bad env id reach the workers
sys.exit(gen.main(sys.argv[1:]))
'''


def test_a_failing_worker_ends_the_whole_run_with_one_line(tmp_path):
  """Every worker fails to build its env: the run stops at once (no hang, no leaked
  semaphores), one stderr line, nothing written."""
  cmd = [sys.executable, '-c', WORKER_FAILURE, '--env=cube-quadruple99-play-v0', '--episodes=3',
         f'--out={tmp_path / "o"}', '--workers=2', '--steps_per_episode=5', '--no_progress']
  res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
  lines = [line for line in res.stderr.splitlines() if line.strip()]
  assert res.returncode == 1 and len(lines) == 1, res.stderr[-2000:]
  assert lines[0].startswith('error: ') and 'cube-quadruple99' in lines[0]
  assert 'leaked' not in res.stderr and not os.path.exists(tmp_path / 'o')


# ---------------------------------------------------------------------------------- lean step
REFERENCE_STEPS = 150   # one plan of the cube oracle lasts ~90 steps: a new target is set


def _reference_episode(collector, seed):
  """OGBench's data-collection loop stepped through env.step and its gymnasium wrappers (the
  generator before the lean step), on the collector's own env and oracles."""
  env, agents = collector.env, collector.agents
  np.random.seed(seed)
  ob, info = env.reset(seed=seed)
  agent = agents[info['privileged/target_task']]
  agent.reset(ob, info)
  rows = {k: [] for k in ('observations', 'actions', 'terminals', 'qpos', 'qvel')}
  done = False
  while not done:
    np.random.rand()    # the random-action draw (p = 0 for play data) still uses the RNG
    action = np.clip(np.array(agent.select_action(ob, info)), -1, 1)
    next_ob, _, terminated, truncated, info = env.step(action)
    done = terminated or truncated
    if agent.done:
      agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=0.0)
      agent = agents[agent_info['privileged/target_task']]
      agent.reset(agent_ob, agent_info)
    for key, value in (('observations', ob), ('actions', action), ('terminals', done),
                       ('qpos', info['prev_qpos']), ('qvel', info['prev_qvel'])):
      rows[key].append(value)
    ob = next_ob
  return {k: np.asarray(v, dtype=bool if k == 'terminals' else np.float32)
          for k, v in rows.items()}


def test_lean_step_writes_the_rows_of_env_step():
  """Two episodes (with a new oracle target in each) from the lean step are bit-identical to
  OGBench's loop through env.step on the same env and oracles."""
  settings = gen.default_settings('cube-single-v0', 'play')
  collector = gen._Collector('cube-single-v0', 'play', REFERENCE_STEPS, settings, lean=True)
  assert collector.lean
  new_targets = []
  set_new_target = collector.env.unwrapped.set_new_target
  collector.env.unwrapped.set_new_target = lambda **kw: new_targets.append(1) or set_new_target(**kw)
  for index in range(2):
    seed = gen.episode_seed(5, index)
    lean = collector.episode(seed)
    before = len(new_targets)
    reference = _reference_episode(collector, seed)
    assert len(new_targets) > before   # the episode crossed an oracle target switch
    assert set(lean) == set(reference)
    for key in reference:
      assert lean[key].dtype == reference[key].dtype, key
      assert lean[key].shape == (REFERENCE_STEPS, *reference[key].shape[1:]), key
      assert np.array_equal(lean[key], reference[key]), key


# ---------------------------------------------------------------------------------- time budget
class _FakeClock:
  """time.perf_counter stand-in: one second passes per finished (fake) episode."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_time_budget_keeps_the_first_episodes_and_the_val_ones(tmp_path, monkeypatch):
  clock = _FakeClock()

  def fake_episode(seed):
    clock.now += 1.0
    return {'observations': np.full((2, 3), seed % 1000, np.float32),
            'actions': np.zeros((2, 5), np.float32), 'terminals': np.array([False, True])}

  monkeypatch.setattr(gen.time, 'perf_counter', clock)
  monkeypatch.setattr(gen, '_worker_init', lambda *args: None)
  monkeypatch.setattr(gen, '_worker_run', fake_episode)
  stats = gen.generate_dataset(NAME, 10, str(tmp_path), seed=1, workers=1, val_episodes=2,
                               time_budget_s=5.5, progress=False)
  # 2 val episodes (indices 10, 11) first, then train episodes 0, 1, 2, 3 until 5.5 s.
  assert stats['train_episodes'] == 4 and stats['requested_episodes'] == 10
  train, val = (_load(p) for p in gen.output_paths(NAME, str(tmp_path)))
  first = lambda d: d['observations'][::2, 0].astype(int).tolist()
  assert first(train) == [gen.episode_seed(1, i) % 1000 for i in range(4)]
  assert first(val) == [gen.episode_seed(1, i) % 1000 for i in (10, 11)]
  clock.now = 0.0
  with pytest.raises(gen.GenerateError, match='too short'):
    gen.generate_dataset(NAME, 10, str(tmp_path / 'b'), seed=1, workers=1, val_episodes=2,
                         time_budget_s=1.5, progress=False)
