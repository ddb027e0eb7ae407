"""Loader tests on a tiny generated cube-single-play dataset (2 episodes x 50 steps)."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from lps_jax.data import generate as gen
from lps_jax.data.ogbench_data import DatasetError, load_ogbench_dataset, load_ogbench_file, parse_env_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = 'cube-single-play-v0'
TASK = 'cube-single-play-singletask-task1-v0'
STEPS = 50
CONTRACT_KEYS = {'observations', 'actions', 'next_observations', 'rewards', 'masks', 'terminals'}

warnings.filterwarnings('ignore')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('ogb'))
    gen.generate_dataset(DATASET, 2, out, seed=0, workers=1, steps_per_episode=STEPS, val_episodes=1, progress=False)
    return out


@pytest.fixture(scope='module')
def raw(data_dir):
    with np.load(os.path.join(data_dir, f'{DATASET}.npz')) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope='module')
def task_env():
    import gymnasium

    import ogbench  # noqa: F401

    env = gymnasium.make('cube-single-singletask-task1-v0')
    env.reset(seed=0)
    return env


def _write(tmp_path, arrays, name=DATASET):
    path = os.path.join(str(tmp_path), f'{name}.npz')
    np.savez(path, **arrays)
    return path


def test_parse_names():
    assert parse_env_name(TASK) == ('cube-single-singletask-task1-v0', DATASET, True)
    assert parse_env_name('puzzle-4x4-play-singletask-v0') == ('puzzle-4x4-singletask-v0', 'puzzle-4x4-play-v0', True)
    assert parse_env_name(DATASET) == ('cube-single-v0', DATASET, False)


def test_file_conversion_matches_ogbench(data_dir, raw):
    from ogbench.utils import load_dataset

    path = os.path.join(data_dir, f'{DATASET}.npz')
    ds = load_ogbench_file(path, add_info=True)
    ref = load_dataset(path, add_info=True)
    for k in ref:
        np.testing.assert_array_equal(ds[k], ref[k], err_msg=k)
    # Explicit semantics: last row of each episode dropped, next_observations shifted within the episode.
    n = 2 * (STEPS - 1)
    assert ds['observations'].shape == (n, 28) and ds['next_observations'].shape == (n, 28)
    for e in range(2):
        rows = slice(e * (STEPS - 1), (e + 1) * (STEPS - 1))
        np.testing.assert_array_equal(ds['observations'][rows], raw['observations'][e * STEPS:(e + 1) * STEPS - 1])
        np.testing.assert_array_equal(ds['next_observations'][rows], raw['observations'][e * STEPS + 1:(e + 1) * STEPS])
        np.testing.assert_array_equal(ds['actions'][rows], raw['actions'][e * STEPS:(e + 1) * STEPS - 1])
    assert np.array_equal(np.flatnonzero(ds['terminals']), [STEPS - 2, 2 * (STEPS - 1) - 1])
    assert ds['terminals'].dtype == np.float32


def test_dataset_contract(data_dir, task_env):
    tr, info = load_ogbench_dataset(TASK, data_dir, env=task_env)
    assert set(tr) == CONTRACT_KEYS
    n = 2 * (STEPS - 1)
    for k, v in tr.items():
        assert v.dtype == np.float32 and v.shape[0] == n, k
    assert tr['observations'].shape == (n, 28) and tr['actions'].shape == (n, 5)
    assert set(np.unique(tr['rewards'])) <= {-1.0, 0.0} and set(np.unique(tr['masks'])) <= {0.0, 1.0}
    assert info['obs_dim'] == 28 and info['act_dim'] == 5 and info['num_episodes'] == 2
    assert info['eval_max_episode_steps'] == 200
    val, vinfo = load_ogbench_dataset(TASK, data_dir, split='val', env=task_env)
    assert vinfo['num_transitions'] == STEPS - 1 and val['terminals'][-1] == 1.0


def test_rewards_masks_match_env_success(tmp_path, raw, task_env):
    """Relabelled rewards/masks == the single-task env's own reward/success when replaying the stored qpos/qvel."""
    uw = task_env.unwrapped
    task_env.reset(seed=0)
    goal = uw._data.mocap_pos[0].copy()  # Task-1 target of the cube.
    arrays = {k: v.copy() for k, v in raw.items()}
    goal_rows = [4, 17, 18]  # Episode 0 (raw row == transition row there).
    for i in goal_rows:
        arrays['qpos'][i, 14:17] = goal + np.array([0.01, -0.01, 0.0], np.float32)  # Within the 0.04 tolerance.
    arrays['qpos'][30, 14:17] = goal + np.array([0.05, 0.0, 0.0], np.float32)  # Just outside it.
    _write(tmp_path, arrays)
    tr, _ = load_ogbench_dataset(TASK, str(tmp_path), env=task_env)
    sparse, _ = load_ogbench_dataset(TASK, str(tmp_path), env=task_env, sparse=True)

    assert (tr['masks'] == 0).sum() == len(goal_rows)
    for i in [0, 3, 4, 17, 18, 30, 40]:
        uw.set_state(arrays['qpos'][i].astype(np.float64), arrays['qvel'][i].astype(np.float64))
        uw.post_step()  # Recompute the success flag for the replayed state.
        _, reward, terminated, _, info = task_env.step(arrays['actions'][i])
        assert float(info['success']) == 1.0 - tr['masks'][i], i
        assert reward == tr['rewards'][i], i
        assert terminated == (tr['masks'][i] == 0.0)
        assert sparse['rewards'][i] == (-1.0 if tr['rewards'][i] != 0 else 0.0)
    assert tr['rewards'][4] == 0.0 and tr['masks'][4] == 0.0 and tr['rewards'][30] == -1.0


def _bad_variants(raw):
    def drop(k):
        return {kk: v for kk, v in raw.items() if kk != k}

    def modify(k, fn):
        d = {kk: v.copy() for kk, v in raw.items()}
        d[k] = fn(d[k])
        return d

    def set_val(k, idx, val):
        def fn(a):
            a[idx] = val
            return a
        return modify(k, fn)

    return {
        'missing_qpos': (drop('qpos'), 'missing keys'),
        'missing_actions': (drop('actions'), 'missing keys'),
        'mismatched_lengths': (modify('actions', lambda a: a[:-3]), 'mismatched lengths'),
        'nan_obs': (set_val('observations', (7, 2), np.nan), 'NaN'),
        'inf_qvel': (set_val('qvel', (5, 0), np.inf), 'Inf'),
        'action_oob': (set_val('actions', (9, 1), 1.5), 'outside [-1, 1]'),
        'wrong_obs_size': (modify('observations', lambda a: a[:, :27]), 'observation size 27'),
        'truncated_episode': (modify('terminals', lambda a: np.zeros_like(a)), 'episode end'),
    }


@pytest.mark.parametrize('case', ['missing_qpos', 'missing_actions', 'mismatched_lengths', 'nan_obs', 'inf_qvel',
                                  'action_oob', 'wrong_obs_size', 'truncated_episode'])
def test_bad_dataset_raises(case, tmp_path, raw, task_env):
    arrays, expected = _bad_variants(raw)[case]
    path = _write(tmp_path, arrays)
    with pytest.raises(DatasetError) as ei:
        load_ogbench_dataset(TASK, str(tmp_path), env=task_env)
    msg = str(ei.value)
    assert path in msg and expected in msg and '\n' not in msg, msg


def test_small_action_tolerance(tmp_path, raw, task_env):
    arrays = {k: v.copy() for k, v in raw.items()}
    arrays['actions'][2, 0] = 1.0 + 1e-6
    _write(tmp_path, arrays)
    tr, _ = load_ogbench_dataset(TASK, str(tmp_path), env=task_env)
    assert tr['actions'].max() <= 1.0


def test_missing_button_states_for_puzzle(tmp_path, raw):
    path = _write(tmp_path, raw, name='puzzle-3x3-play-v0')
    with pytest.raises(DatasetError) as ei:
        load_ogbench_file(path, add_info=True, required_info=('button_states',))
    assert 'button_states' in str(ei.value) and path in str(ei.value)


def test_missing_and_corrupt_files(tmp_path, task_env):
    with pytest.raises(DatasetError) as ei:
        load_ogbench_dataset(TASK, str(tmp_path), env=task_env)
    msg = str(ei.value)
    assert f'{DATASET}.npz' in msg and 'not found' in msg and 'lps_jax.data.generate' in msg and '--download' in msg
    missing_dir = os.path.join(str(tmp_path), 'nope')
    with pytest.raises(DatasetError) as ei:
        load_ogbench_dataset(TASK, missing_dir, split='val', env=task_env)
    assert f'{DATASET}-val.npz' in str(ei.value) and 'does not exist' in str(ei.value)
    with open(os.path.join(str(tmp_path), f'{DATASET}.npz'), 'wb') as f:
        f.write(b'this is not a zip file')
    with pytest.raises(DatasetError) as ei:
        load_ogbench_dataset(TASK, str(tmp_path), env=task_env)
    assert f'{DATASET}.npz' in str(ei.value)


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'lps_jax.data.ogbench_data', *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_error_exit_2(tmp_path, raw):
    arrays = _bad_variants(raw)['nan_obs'][0]
    path = _write(tmp_path, arrays)
    res = _cli(f'--env={TASK}', f'--dataset_dir={tmp_path}')
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and path in lines[0] and 'NaN' in lines[0], res.stderr
    assert 'Traceback' not in res.stderr
    res = _cli(f'--env={TASK}', f'--dataset_dir={tmp_path}/missing')
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and 'missing' in res.stderr


def test_cli_ok(data_dir):
    res = _cli(f'--env={TASK}', f'--dataset_dir={data_dir}')
    assert res.returncode == 0, res.stderr
    assert 'OK' in res.stdout and 'num_transitions: 98' in res.stdout
